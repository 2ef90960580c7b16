"""Load `train-dpo` LoRA adapters onto the writer (COMPOSER_WRITER_ADAPTER).

The adapters (composer/train_dpo.py) are ordinary peft LoRA on the text tokens. They are
loaded with PeftModel.from_pretrained and merged into the weights (merge_and_unload), so
writing costs exactly what the base model costs. The folder's dpo.json names the base model
and holds a fingerprint of its weights; a folder trained on another base is refused before
anything is loaded (the folder's checks: models/adapters.py).

Quantisation: the embedded model runs int4 on the CPU by default (models/quantize.py). LoRA
cannot be merged into packed int4 weights, so the writer is loaded in float, the adapters are
merged, and only then is it quantised (load_adapted_writer); the merged weights are quantised
like any others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from composer.types import ComposerError
from models.adapters import AdapterError, check_base, read_adapter_folder


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
    from models.devices import resolve_device, resolve_dtype
    from models.lm import TransformersLM

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
        from models.quantize import quantize_model

        quantize_model(lm.model, quantize, float_dtype=resolve_dtype(settings.dtype, device))
        lm.quantize = quantize
    lm.name = f"{label} + {Path(settings.writer_adapter).expanduser().name}"
    return lm
