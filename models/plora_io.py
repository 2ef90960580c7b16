"""Partial LoRA adapters on disk: adapter_model.safetensors + adapter_config.json.

The weights file holds only the adapters ("<layer name>.Plora_A.weight" / ".Plora_B.weight");
the config records format, rank, alpha, dropout, targets and base model, so `load_plora` can
inject matching layers into a fresh base model and refuse adapters of another shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from models.plora import inject_plora, plora_layers, set_plora_merge

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "plora"
FORMAT_VERSION = 1


def plora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only, keyed "<layer name>.Plora_A.weight" / ".Plora_B.weight"."""
    state = {}
    for name, layer in plora_layers(model).items():
        state[f"{name}.Plora_A.weight"] = layer.Plora_A.weight.detach()
        state[f"{name}.Plora_B.weight"] = layer.Plora_B.weight.detach()
    return state


def plora_config(model: nn.Module) -> dict:
    """What adapter_config.json records: format, rank, alpha, dropout, targets, base model."""
    layers = plora_layers(model)
    if not layers:
        raise ValueError("the model has no PLoRA layers: call inject_plora(model) first")
    first = next(iter(layers.values()))
    if any((layer.rank, layer.alpha) != (first.rank, first.alpha) for layer in layers.values()):
        raise ValueError("the model's PLoRA layers differ in rank or alpha; save_plora needs "
                         "one rank and alpha for all of them")
    dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    config = getattr(model, "config", None)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "rank": first.rank, "alpha": first.alpha, "dropout": dropout,
        "target_modules": sorted({name.rsplit(".", 1)[-1] for name in layers}),
        "layers": list(layers),
        "base_model": getattr(config, "_name_or_path", "") or "",
        "dtype": str(first.Plora_A.weight.dtype).removeprefix("torch."),
    }


def save_plora(model: nn.Module, folder: str | Path) -> Path:
    """Write the adapters to `folder` (created): adapter_model.safetensors (weights only)
    and adapter_config.json. Returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    config = plora_config(model)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.cpu().contiguous() for key, value in plora_state_dict(model).items()}
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def read_plora_config(folder: str | Path) -> dict:
    """adapter_config.json of a saved adapter, checked for format and version."""
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give the folder save_plora wrote")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is format {config.get('format')!r} version "
                         f"{config.get('format_version')!r}; this code reads {FORMAT!r} "
                         f"version {FORMAT_VERSION}")
    return config


def load_plora(model: nn.Module, folder: str | Path, *, merge: bool | None = None) -> list[str]:
    """Load saved adapters into `model`; returns the adapted layers' names.

    Injects PLoRA with the saved rank / alpha / dropout / targets when the model has none;
    a model that already has PLoRA layers must match the saved rank and alpha. Every saved
    tensor must have a layer of the same shape and every layer a saved tensor, else
    ValueError naming the first difference. Weights are cast to the layers' dtype / device.
    merge: when given, set_plora_merge(model, merge) afterwards (None keeps the layers'
    setting; a fresh injection merges).
    """
    from safetensors.torch import load_file

    config = read_plora_config(folder)
    if not plora_layers(model):
        inject_plora(model, rank=config["rank"], alpha=config["alpha"],
                     dropout=config["dropout"], target_modules=config["target_modules"])
    layers = plora_layers(model)
    for name, layer in layers.items():
        if (layer.rank, layer.alpha) != (config["rank"], config["alpha"]):
            raise ValueError(f"layer {name} has rank {layer.rank}, alpha {layer.alpha} but "
                             f"{folder} holds rank {config['rank']}, alpha {config['alpha']}: "
                             "call remove_plora(model) first to inject the saved settings")
    saved = load_file(str(Path(folder) / ADAPTER_WEIGHTS))
    _check_state(plora_state_dict(model), saved, folder)
    with torch.no_grad():
        for key, value in saved.items():
            layer_name, part = key.removesuffix(".weight").rsplit(".", 1)  # "...", "Plora_A"
            target = getattr(layers[layer_name], part).weight
            target.copy_(value.to(dtype=target.dtype, device=target.device))
    if merge is not None:
        set_plora_merge(model, merge)
    return list(layers)


def _check_state(expected: dict[str, torch.Tensor], saved: dict[str, torch.Tensor],
                 folder: str | Path) -> None:
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{folder} does not fit this model: {len(missing)} adapter weights "
                         f"missing (e.g. {missing[:3]}), {len(unexpected)} unknown (e.g. "
                         f"{unexpected[:3]}): load it into the base model it was trained on")
    for key, value in saved.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"{key} in {folder} has shape {tuple(value.shape)} but the model's "
                             f"layer needs {tuple(expected[key].shape)}: load it into the base "
                             "model it was trained on")
