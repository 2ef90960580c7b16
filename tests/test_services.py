"""composer/services.py builds the configured retrieval parts from Settings."""

from __future__ import annotations

import pytest

from composer.config import Settings
from composer.services import Services
from composer.retrieval.web.openverse import OpenverseSearch
from composer.retrieval.web.wikimedia import WikimediaSearch
from tests.fakes import ScriptedLM
from tests.support_storage import photo_bytes
from tests.tiny_models import tiny_clip_dir  # noqa: F401  (fixture)


def _services(tmp_path, **settings) -> Services:
    return Services(Settings.from_env({}, home=tmp_path / "home", **settings), lm=ScriptedLM())


def test_defaults_use_captions_only_and_no_web_search(tmp_path):
    services = _services(tmp_path)
    try:
        assert services.clip is None and services.web_search is None
        assert not services.captions.configured
        retriever = services.retriever
        assert retriever.clip is None and retriever.weights.text_penalty == 3.0
        assert services.images.count() > 0  # the default library was seeded
        assert (tmp_path / "home" / "cache" / "index").is_dir()  # the saved caption index
        assert services.composer().web_search is None
    finally:
        services.db.dispose()


def test_a_configured_clip_model_indexes_pixels(tmp_path, tiny_clip_dir):  # noqa: F811
    services = _services(tmp_path, clip_model=str(tiny_clip_dir), device="cpu")
    try:
        image, _ = services.images.add(photo_bytes("horse.png"))  # no caption
        retriever = services.retriever
        assert retriever.clip is services.clip
        assert image.id in retriever.store.embeddings(retriever.image_model)[0]
        assert image.id in [c.image_id for c in retriever.search("a horse", k=50)]
    finally:
        services.db.dispose()


@pytest.mark.parametrize("kind, expected", [("openverse", OpenverseSearch),
                                            ("wikimedia", WikimediaSearch)])
def test_web_search_is_built_when_turned_on(tmp_path, kind, expected):
    services = _services(tmp_path, web_images=kind, web_images_url="http://127.0.0.1:9")
    try:
        assert isinstance(services.web_search, expected)
        assert isinstance(services.composer(with_images=False).web_search, type(None))
    finally:
        services.db.dispose()


def test_unknown_web_search_is_refused_at_start():
    with pytest.raises(ValueError, match="COMPOSER_WEB_IMAGES='flickr' is not one of"):
        Settings.from_env({"COMPOSER_WEB_IMAGES": "flickr"})
    with pytest.raises(ValueError, match="COMPOSER_TEXT_PENALTY='lots' is not a number"):
        Settings.from_env({"COMPOSER_TEXT_PENALTY": "lots"})


class _HeldGenerator:
    """A test generator that holds its slot until `release` is set; counts who ran at once."""

    def __init__(self):
        import threading

        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.running = 0
        self.most_at_once = 0

    def generate(self, prompt, **options):
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.started.release()
        self.release.wait(10)
        self.running -= 1
        return prompt


def test_images_are_generated_one_at_a_time_and_a_waiting_one_can_be_stopped(tmp_path):
    import threading

    from models.image_generator import GenerationCancelled

    services = _services(tmp_path, image_generator="some/diffusion-model")
    held = _HeldGenerator()
    services.provide("generator", held)
    generator = services.editor().generator
    results: dict[str, object] = {}

    def run(name, cancel=None):
        try:
            results[name] = generator.generate(name, cancel=cancel)
        except GenerationCancelled as error:
            results[name] = error

    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert held.started.acquire(timeout=10)
    stop = threading.Event()
    second = threading.Thread(target=run, args=("second", stop))
    third = threading.Thread(target=run, args=("third",))
    second.start()
    third.start()
    stop.set()  # the second one is still waiting for the slot: Stop ends its wait
    second.join(10)
    assert isinstance(results["second"], GenerationCancelled)
    held.release.set()
    first.join(10)
    third.join(10)
    assert results["first"] == "first" and results["third"] == "third"
    assert held.most_at_once == 1


@pytest.mark.parametrize("value, words", [("0", "at least 1"), ("two", "not a number")])
def test_concurrency_settings_name_the_variable(value, words):
    for name in ("COMPOSER_IMAGE_CONCURRENCY", "COMPOSER_MODEL_CONCURRENCY"):
        with pytest.raises(ValueError, match=f"{name}.*{words}"):
            Settings.from_env({name: value})
