"""Trained adapters on disk: what a checkpoint folder holds, which bases it fits, loading it.

Training (composer/train_plora.py, composer/train_dpo.py) writes these folders and loading
(models/vision_writer.py, models/writer_adapter.py) reads them; both take the file names,
the records' formats, the fingerprints and the checks from here, so the two sides cannot
drift apart (as peft keeps save / load apart from its trainers).

Two kinds of folder:

- `train-plora` (image-grounded writer): plora/ (models/plora_io.py save_plora),
  vision_adapter.safetensors (ImageEncoder.save_adapter) and train.json (settings, steps,
  loss history, base model and vision ids, and the description of both bases).
- `train-dpo` (text writer): adapter_config.json + adapter_model.safetensors (peft's
  save_pretrained) and dpo.json (settings, statistics, base model name and description).

A base is described by its shape and a fingerprint of its weights (`base_description`,
`tower_description`); a folder is refused before anything is loaded when the bases differ.
torch is imported inside the functions, so reading a record stays cheap.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from composer.types import ComposerError

# train-plora
PLORA_DIR = "plora"
VISION_ADAPTER = "vision_adapter.safetensors"
TRAIN_JSON = "train.json"
TRAIN_FORMAT = "plora-train/1"
# train-dpo
DPO_RECORD = "dpo.json"
DPO_FORMAT = "writer-dpo/1"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_WEIGHT_FILES = (ADAPTER_WEIGHTS, "adapter_model.bin")  # what peft may have written

FINGERPRINT_VALUES = 1 << 20  # values sampled from a weight for its fingerprint
LM_KEYS = ("model_type", "hidden_size", "vocab_size", "num_hidden_layers", "fingerprint")


class AdapterError(ComposerError, ValueError):
    """A COMPOSER_WRITER_ADAPTER folder that cannot be used with this writer."""


# --- describing a base ------------------------------------------------------------------


def fingerprint(weight: Any) -> str:
    """A short hash of (up to 2**20 evenly spaced values of) a weight tensor, rounded to
    bfloat16, so the same base loaded in float32 or bfloat16 gives the same fingerprint."""
    import torch

    flat = weight.detach().reshape(-1)
    stride = max(1, flat.numel() // FINGERPRINT_VALUES)
    sample = flat[::stride][:FINGERPRINT_VALUES].to("cpu", torch.bfloat16).view(torch.int16)
    digest = hashlib.sha256(sample.contiguous().numpy().tobytes())
    digest.update(str(tuple(weight.shape)).encode())
    return digest.hexdigest()[:16]


def base_description(model: Any) -> dict[str, Any]:
    """Shape and a weight fingerprint of a base language model (what an adapter is tied to)."""
    config = getattr(model, "config", None)
    embeddings = model.get_input_embeddings().weight
    return {"model_type": getattr(config, "model_type", ""),
            "hidden_size": int(embeddings.shape[1]), "vocab_size": int(embeddings.shape[0]),
            "num_hidden_layers": getattr(config, "num_hidden_layers", None),
            "fingerprint": fingerprint(embeddings)}


def tower_description(tower: Any) -> dict[str, Any]:
    """Shape and a weight fingerprint of a vision tower (models/vision_tower.py)."""
    return {"family": tower.family, "hidden_size": tower.hidden_size,
            "image_size": tower.image_size, "patch_size": tower.patch_size,
            "fingerprint": fingerprint(tower.model.embeddings.patch_embedding.weight)}


def write_record(folder: Path, name: str, record: dict[str, Any]) -> None:
    """Write a record as indented JSON to folder/name, atomically (a .partial file first)."""
    partial = folder / (name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    partial.replace(folder / name)


# --- train-plora folders ----------------------------------------------------------------


def plora_bases(model: Any, encoder: Any) -> dict[str, Any]:
    """The two frozen bases of a train-plora run, as train.json records them."""
    return {"lm": base_description(model), "vision": tower_description(encoder.tower)}


def read_train_record(folder: str | Path) -> dict:
    """train.json of a checkpoint folder, checked for its format."""
    folder = Path(folder)
    path = folder / TRAIN_JSON
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(folder)!r} does not exist: give the "
                                "--out folder of `train-plora`")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {folder} is not a train-plora "
                                "checkpoint (it needs plora/, vision_adapter.safetensors and "
                                "train.json)")
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("format") != TRAIN_FORMAT:
        raise ValueError(f"{path} has format {record.get('format')!r}, expected "
                         f"{TRAIN_FORMAT!r}")
    return record


def check_plora_bases(record: dict, folder: Path, lm_model: Any, encoder: Any) -> None:
    """ValueError saying which base differs (and what it was trained on) when `lm_model` or
    `encoder` is not built from the bases recorded in train.json."""
    expected = record.get("bases", {})
    found = plora_bases(lm_model, encoder)
    names = {"lm": f"language model {record.get('base_model')!r}",
             "vision": f"vision tower {record.get('vision')!r}"}
    for part in ("lm", "vision"):
        for key, value in expected.get(part, {}).items():
            if found[part].get(key) != value:
                what = "weights" if key == "fingerprint" else key
                raise ValueError(
                    f"{folder} was trained on the {names[part]}, but the given "
                    f"{'model' if part == 'lm' else 'encoder'} differs in its {what} "
                    f"({found[part].get(key)!r}, trained with {value!r}): build it from the "
                    "same base it was trained on")


def load_trained(folder: str | Path, lm_model: Any, encoder: Any) -> dict:
    """Load a checkpoint's PLoRA adapters onto `lm_model` and its projector / skip / newline
    embeddings onto `encoder`; returns the train.json record.

    Both must be built from the same bases as in training: a language model or vision tower
    of another shape, or with other weights (fingerprints), raises ValueError saying which
    and what the checkpoint was trained on, before anything is loaded.
    """
    from models.plora_io import load_plora

    record = read_train_record(folder)
    folder = Path(folder)
    check_plora_bases(record, folder, lm_model, encoder)
    for name in (PLORA_DIR, VISION_ADAPTER):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name} is missing: the checkpoint is incomplete")
    encoder.load_adapter(folder / VISION_ADAPTER)
    load_plora(lm_model, folder / PLORA_DIR)
    return record


# --- train-dpo folders ------------------------------------------------------------------


def read_adapter_folder(folder: str | Path) -> dict[str, Any]:
    """dpo.json of an adapter folder ({} when the folder has none), after checking that the
    folder holds peft LoRA adapters; AdapterError saying what is missing otherwise."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AdapterError(f"COMPOSER_WRITER_ADAPTER={str(folder)!r}: no such folder; give "
                           "the --out folder of `python -m composer train-dpo`")
    if not (folder / ADAPTER_CONFIG).is_file() or \
            not any((folder / name).is_file() for name in ADAPTER_WEIGHT_FILES):
        raise AdapterError(f"{folder} is not a writer adapter folder: it needs "
                           f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} (written by "
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
        here = base_description(model)
        differing = [key for key in LM_KEYS if key in recorded and recorded[key] != here[key]]
        if differing:
            raise AdapterError(
                f"the writer adapter {folder} was trained on {trained_on!r}, but the writer is "
                f"{base_name!r} (different {', '.join(differing)}): set COMPOSER_MODEL to "
                f"{trained_on!r}, or train adapters for this model with `train-dpo --model`")
    elif record and trained_on != base_name:
        raise AdapterError(f"the writer adapter {folder} was trained on {trained_on!r}, but the "
                           f"writer is {base_name!r}: set COMPOSER_MODEL to {trained_on!r}")
