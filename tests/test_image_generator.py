"""models/image_generator.py and composer/generate_image.py on a tiny random diffusion model.

The pipeline (tests/tiny_diffusion.py) is built from configs, saved to a folder and loaded
back through load_image_generator, as a real model folder would be; it makes 16x16 images
in 2 steps, so the whole file runs in seconds on a CPU.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composer.config import MAX_CAPTION_CHARS
from composer.generate_image import generate_into_library, png_bytes
from composer.types import ComposerError, InputError
from models.image_generator import (
    GenerationCancelled,
    ImageGenerator,
    check_size,
    load_image_generator,
)
from storage.db import Database
from storage.images import ImageStore
from tests.tiny_diffusion import FakeGenerator, build_tiny_pipeline

SIZE = 16
STEPS = 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread while this module runs: the tiny model gains nothing from more, and
    on a busy machine waiting threads spin (restored afterwards for the other tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random pipeline, saved once for the module."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-diffusion") / "model")


@pytest.fixture(scope="module")
def generator(model_dir: Path) -> ImageGenerator:
    """The tiny pipeline loaded by path through the app's loader."""
    return load_image_generator(str(model_dir), device="cpu", dtype="auto", steps=STEPS,
                                size=SIZE)


@pytest.fixture
def store(tmp_path: Path):
    """An ImageStore on a fresh, migrated SQLite database."""
    database = Database(f"sqlite:///{tmp_path / 'composer.db'}")
    database.migrate()
    yield ImageStore(database, tmp_path / "images")
    database.dispose()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# -- loading -----------------------------------------------------------------------------------


def test_loads_a_folder_and_generates_an_image_of_the_configured_size(generator, model_dir):
    image = generator.generate("a stone bridge over a river")
    assert isinstance(generator, ImageGenerator)
    assert generator.name == str(model_dir)
    assert (generator.device, generator.steps, generator.size) == ("cpu", STEPS, SIZE)
    assert isinstance(image, Image.Image)
    assert (image.size, image.mode) == ((SIZE, SIZE), "RGB")


def test_a_missing_folder_says_what_to_do():
    with pytest.raises(ComposerError, match="does not exist"):
        load_image_generator("/no/such/diffusion/model", device="cpu")


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument")
def test_an_unreachable_model_id_says_to_set_a_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ComposerError) as raised:
        load_image_generator("nobody-here/no-such-diffusion-model", device="cpu")
    message = str(raised.value)
    assert "COMPOSER_IMAGE_GENERATOR" in message and "local folder" in message


@pytest.mark.parametrize("size", [30, 100, 4])
def test_a_size_that_is_not_a_multiple_of_8_is_refused_before_loading(size):
    with pytest.raises(ValueError, match="COMPOSER_IMAGE_SIZE"):
        load_image_generator("/never/loaded", device="cpu", size=size)


def test_sizes_and_steps_are_checked():
    assert check_size(512) == 512
    with pytest.raises(InputError, match="multiple of 8"):
        check_size(510)
    with pytest.raises(InputError, match="COMPOSER_IMAGE_STEPS"):
        load_image_generator("/never/loaded", device="cpu", steps=0)


# -- generating --------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_pixels_and_another_seed_others(generator):
    first = pixels(generator.generate("a garden of tomatoes", seed=7))
    again = pixels(generator.generate("a garden of tomatoes", seed=7))
    other = pixels(generator.generate("a garden of tomatoes", seed=8))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_the_negative_prompt_reaches_the_model(generator):
    plain = pixels(generator.generate("a harbor market", seed=1))
    negative = pixels(generator.generate("a harbor market", seed=1, negative_prompt="fog"))
    assert not np.array_equal(plain, negative)


def test_progress_is_reported_once_per_step_with_the_total(generator):
    calls: list[tuple[int, int]] = []
    generator.generate("an old map", progress=lambda step, total: calls.append((step, total)))
    assert calls == [(step, STEPS) for step in range(1, STEPS + 1)]


def test_setting_cancel_stops_at_the_next_step(generator):
    cancel = threading.Event()
    calls: list[int] = []

    def progress(step: int, total: int) -> None:
        calls.append(step)
        cancel.set()

    with pytest.raises(GenerationCancelled, match="cancelled"):
        generator.generate("a moon orbit", progress=progress, cancel=cancel)
    assert calls == [1]


def test_a_cancelled_event_stops_before_any_step(generator):
    cancel = threading.Event()
    cancel.set()
    calls: list[int] = []
    with pytest.raises(GenerationCancelled):
        generator.generate("a moon orbit", progress=lambda s, t: calls.append(s), cancel=cancel)
    assert calls == []


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_an_empty_prompt_is_an_input_error(generator, prompt):
    with pytest.raises(InputError, match="prompt is empty"):
        generator.generate(prompt)


def test_a_prompt_longer_than_the_text_encoder_reads_is_truncated(generator):
    long_prompt = " ".join(["a red brick lighthouse on a rocky coast"] * 40)
    assert len(generator.pipeline.tokenizer(long_prompt).input_ids) > 77
    assert generator.generate(long_prompt).size == (SIZE, SIZE)


# -- plugins -----------------------------------------------------------------------------------


def test_a_plugin_factory_gets_the_settings_and_generates():
    plugin = load_image_generator("tests.tiny_diffusion:fake_generator", device="cpu",
                                  dtype="float32", steps=3, size=16)
    assert isinstance(plugin, FakeGenerator)
    assert plugin.options == {"device": "cpu", "dtype": "float32", "steps": 3, "size": 16}
    calls: list[tuple[int, int]] = []
    image = plugin.generate("a bridge", seed=2, progress=lambda s, t: calls.append((s, t)))
    assert image.size == (16, 16) and calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_here:factory", "cannot import module"),
    ("tests.tiny_diffusion:no_such_factory", "no callable"),
    ("tests.tiny_diffusion:write_tokenizer_files", "must take those keyword arguments"),
    ("builtins:dict", "no generate"),
])
def test_a_broken_plugin_says_what_is_wrong(spec, message):
    with pytest.raises(ComposerError, match=message):
        load_image_generator(spec, device="cpu")


# -- into the library --------------------------------------------------------------------------


def test_a_generated_image_is_added_to_the_library(generator, store, model_dir):
    calls: list[tuple[int, int]] = []
    image = generate_into_library(generator, store, "  a stone bridge at dawn ", owner=None,
                                  seed=3, progress=lambda s, t: calls.append((s, t)))
    stored = store.get(image.id)
    assert (stored.caption, stored.source, stored.caption_source) == (
        "a stone bridge at dawn", "generated", "user")
    assert stored.license == f"generated by {model_dir}"
    assert stored.attribution == f"{model_dir}, seed 3"
    assert (stored.format, stored.width, stored.height, stored.owner) == ("PNG", SIZE, SIZE, None)
    expected = generator.generate("a stone bridge at dawn", seed=3)
    with Image.open(store.path(image.id)) as opened:
        assert np.array_equal(pixels(opened.convert("RGB")), pixels(expected))
    assert calls == [(1, STEPS), (2, STEPS)]
    assert store.count(source="generated") == 1


def test_the_same_caption_and_seed_give_the_same_library_image(generator, store):
    first = generate_into_library(generator, store, "a quiet harbor", owner="ana", seed=5)
    again = generate_into_library(generator, store, "a quiet harbor", owner="ana", seed=5)
    assert again.id == first.id and first.owner == "ana"
    assert store.count() == 1


def test_another_persons_private_copy_is_not_reused_nor_mentioned(generator, store):
    ana = generate_into_library(generator, store, "a quiet harbor", owner="ana", seed=5)
    ben = generate_into_library(generator, store, "a quiet harbor", owner="ben", seed=5)
    assert ben.id != ana.id and ben.owner == "ben" and store.count() == 2


class PatternGenerator:
    """A gradient with a dark square and one pixel set by the seed: every seed gives a near
    duplicate of seed 0 (other bytes, the same picture to the eye)."""

    name = "pattern"

    def generate(self, prompt, *, seed=0, negative_prompt="", progress=None, cancel=None):
        ramp = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
        ramp[8:28, 36:56] = 20
        image = Image.fromarray(np.stack([ramp] * 3, axis=-1))
        image.putpixel((seed % 64, 0), (128, 0, 0))
        return image


def test_a_near_duplicate_returns_the_library_image_its_owner_sees(store):
    first = generate_into_library(PatternGenerator(), store, "a grey ramp", owner=None, seed=0)
    look_alike = generate_into_library(PatternGenerator(), store, "a grey ramp", owner="ana",
                                       seed=1)
    assert look_alike.id == first.id and store.count() == 1


def test_a_near_duplicate_of_someone_elses_private_image_is_stored_anyway(store):
    private = generate_into_library(PatternGenerator(), store, "a grey ramp", owner="ana", seed=0)
    own = generate_into_library(PatternGenerator(), store, "a grey ramp", owner="ben", seed=1)
    assert own.id != private.id and own.owner == "ben"
    assert store.count() == 2


@pytest.mark.parametrize("caption, message", [
    ("  ", "empty"), ("x" * (MAX_CAPTION_CHARS + 1), "longer than the limit")])
def test_a_bad_caption_is_refused_before_generating(store, caption, message):
    class Unused:
        name = "unused"

        def generate(self, *args, **kwargs):
            raise AssertionError("generated for a refused caption")

    with pytest.raises(InputError, match=message):
        generate_into_library(Unused(), store, caption, owner=None)


def test_png_bytes_round_trip():
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    with Image.open(io.BytesIO(png_bytes(image))) as decoded:
        assert decoded.format == "PNG" and decoded.getpixel((0, 0)) == (1, 2, 3)
