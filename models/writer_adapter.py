"""Load `train-dpo` LoRA adapters onto the writer (COMPOSER_WRITER_ADAPTER).

The adapters (composer/train_dpo.py) are ordinary peft LoRA on the text tokens. They are
loaded with PeftModel.from_pretrained and merged into the weights (merge_and_unload), so
writing costs exactly what the base model costs. The folder's dpo.json names the base model
and holds a fingerprint of its weights; a folder trained on another base is refused before
anything is loaded.

Quantisation: the embedded model runs int4 on the CPU by default (models/quantize.py). LoRA
cannot be merged into packed int4 weights, so the writer is loaded in float, the adapters are
merged, and only then is it quantised (load_adapted_writer); the merged weights are quantised
like any others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer.types import ComposerError

DPO_RECORD = "dpo.json"  # composer.train_dpo.DPO_RECORD, without importing the trainer
DPO_FORMAT = "writer-dpo/1"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class AdapterError(ComposerError, ValueError):
    """A COMPOSER_WRITER_ADAPTER folder that cannot be used with this writer."""


def read_adapter_folder(folder: str | Path) -> dict[str, Any]:
    """dpo.json of an adapter folder ({} when the folder has none), after checking that the
    folder holds peft LoRA adapters; AdapterError saying what is missing otherwise."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AdapterError(f"COMPOSER_WRITER_ADAPTER={str(folder)!r}: no such folder; give "
                           "the --out folder of `python -m composer train-dpo`")
    if not (folder / ADAPTER_CONFIG).is_file() or \
            not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise AdapterError(f"{folder} is not a writer adapter folder: it needs "
                           f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS[0]} (written by "
                           "`python -m composer train-dpo --out FOLDER`)")
    config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{folder} holds {config.get('peft_type')} adapters; the writer "
                           "loads LoRA adapters from `train-dpo`")
    path = folder / DPO_RECORD
    if not path.is_file():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("format") != DPO_FORMAT:
        raise AdapterError(f"{path} has format {record.get('format')!r}, expected "
                           f"{DPO_FORMAT!r}: retrain with this version's `train-dpo`")
    return record


def check_base(record: dict[str, Any], model: Any, base_name: str, folder: str | Path) -> None:
    """AdapterError when the adapters were trained on another base model than `model`.

    Compares the recorded weight fingerprint and shape (the name alone can differ for the
    same weights: "embedded" vs the converted folder); without a fingerprint, the names.
    """
    recorded = record.get("base") or {}
    trained_on = record.get("base_model", "?")
    if recorded.get("fingerprint"):
        from composer.train_dpo import base_description

        here = base_description(model)
        keys = ("model_type", "hidden_size", "vocab_size", "num_hidden_layers", "fingerprint")
        differing = [key for key in keys if key in recorded and recorded[key] != here[key]]
        if differing:
            raise AdapterError(
                f"the writer adapter {folder} was trained on {trained_on!r}, but the writer is "
                f"{base_name!r} (different {', '.join(differing)}): set COMPOSER_MODEL to "
                f"{trained_on!r}, or train adapters for this model with `train-dpo --model`")
    elif record and trained_on != base_name:
        raise AdapterError(f"the writer adapter {folder} was trained on {trained_on!r}, but the "
                           f"writer is {base_name!r}: set COMPOSER_MODEL to {trained_on!r}")


def apply_writer_adapter(model: Any, folder: str | Path, base_name: str = "") -> Any:
    """`model` with the folder's LoRA adapters merged in (a plain transformers model again).

    Checks the folder and the base first (AdapterError); the model must be in float (not
    quantised by models/quantize.py).
    """
    from peft import PeftModel

    folder = Path(folder).expanduser()
    record = read_adapter_folder(folder)
    check_base(record, model, base_name, folder)
    try:
        adapted = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as error:
        raise AdapterError(f"could not load the writer adapter {folder} onto {base_name!r} "
                           f"({type(error).__name__}: {str(error)[:300]}): was it trained on "
                           "another model?") from error
    return adapted.merge_and_unload().eval()


def load_adapted_writer(name: str, settings: Any) -> Any:
    """The writer of settings.model (embedded, hub id or folder) with the adapters of
    settings.writer_adapter merged in, then quantised as the writer would be without them."""
    from models.lm import TransformersLM, resolve_device

    device = resolve_device(settings.device)
    if name == "embedded":
        from models.embedded import EMBEDDED_NAME, embedded_quantize, ensure_converted

        source: str | Path = ensure_converted(settings.cache_dir)
        quantize = embedded_quantize(settings.quantize, device)
        label, gguf = EMBEDDED_NAME, None
    else:
        source, gguf = name, settings.gguf_file
        quantize = "none" if settings.quantize == "auto" else settings.quantize
        label = name
    try:
        lm = TransformersLM(source, gguf_file=gguf, dtype=settings.dtype, device=settings.device,
                            quantize="none", threads=settings.threads, name=label)
    except (OSError, ValueError) as error:
        raise ComposerError(f"could not load the language model {name!r} "
                            f"({type(error).__name__}: {error})") from error
    lm.model = apply_writer_adapter(lm.model, settings.writer_adapter, name)
    if quantize != "none":
        from models.lm import resolve_dtype
        from models.quantize import quantize_model

        quantize_model(lm.model, quantize, float_dtype=resolve_dtype(settings.dtype, device))
        lm.quantize = quantize
    lm.name = f"{label} + {Path(settings.writer_adapter).expanduser().name}"
    return lm
