"""Partial LoRA (PLoRA, from InternLM-XComposer2): a low-rank update on image tokens only.

Each adapted linear layer (models/plora_layer.py) computes `y = W0 x` at text positions and
`y = W0 x + scale * B(A(dropout(x)))` at the positions where the image mask is true, so a
text-only input gives exactly the base language model's output, bit for bit. This module
puts the layers into a model and sets the mask they share (models/plora_mask.py):

    inject_plora(model)                      # rank 256, alpha 256, dropout 0.05
    with image_mask(model, mask):            # mask: bool [batch, seq]
        logits = model(inputs_embeds=embeds).logits

Saving and loading the adapters: models/plora_io.py. A prompt's prefill groups the rows once
for the whole model: models/plora_grouped.py.

With a KV cache the mask must match the *current* query positions: prefill with the image
mask, then decode steps with a [batch, 1] all-false mask (or no mask): those take the base
path. A mask whose length differs from the layer input's raises ValueError naming both
lengths. Beam search needs the mask expanded across beams
(`mask.repeat_interleave(num_beams, dim=0)`). The mask holder is per model, not per thread:
run one masked forward per model at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from models.plora_layer import PLoRALinear, check_hyperparameters
from models.plora_mask import PLoRAMask

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Submodules of a vision-language model that PLoRA never adapts (vision tower, projector).
VISION_PARTS = frozenset({"vision_tower", "vision_model", "visual", "vision_encoder",
                          "multi_modal_projector", "mm_projector", "vision_proj"})


def plora_layers(model: nn.Module) -> dict[str, PLoRALinear]:
    """The model's PLoRA layers by module name (empty when none are injected)."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, PLoRALinear)}


def inject_plora(model: nn.Module, *, rank: int = 256, alpha: float = 256,
                 dropout: float = 0.05, target_modules=DEFAULT_TARGETS,
                 merge: bool = True) -> list[str]:
    """Wrap the model's target linear layers in PLoRALinear; returns their names.

    A layer is a target when the last part of its name is in `target_modules` (Llama family
    by default: attention q/k/v/o and MLP gate/up/down). Embeddings, norms and the output
    head are never adapted, nor anything inside a vision tower or projector. The base layers
    are kept as they are (see freeze_base for training); the new layers take each base
    layer's train / eval mode (dropout acts in train mode only) and share one mask holder.
    """
    check_hyperparameters(rank, alpha, dropout)
    targets = _check_targets(target_modules)
    if plora_layers(model):
        raise ValueError("the model already has PLoRA layers: call remove_plora(model) before "
                         "injecting again")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and module is not head
             and name.rsplit(".", 1)[-1] in targets and not _in_vision_part(name)]
    if not found:
        available = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                            if isinstance(module, nn.Linear)})
        raise ValueError(f"no linear layer of the model is named one of {sorted(targets)}; its "
                         f"linear layers are named {available}: pass target_modules from these")
    holder = PLoRAMask()
    for name, module in found:
        wrapped = PLoRALinear(module, holder, rank=rank, alpha=alpha, dropout=dropout,
                              merge=merge)
        wrapped.train(module.training)  # an eval-mode model keeps its dropout off
        _replace(model, name, wrapped)
    model._plora_holders = [holder]  # set_image_mask finds it without a walk of the model
    return [name for name, _ in found]


def _check_targets(target_modules: object) -> frozenset[str]:
    if isinstance(target_modules, str) or not all(
            isinstance(name, str) for name in target_modules):
        raise ValueError(f"target_modules is {target_modules!r}; it must be a list of layer "
                         f"names such as {list(DEFAULT_TARGETS)}")
    targets = frozenset(target_modules)
    if not targets:
        raise ValueError(f"target_modules is empty; give layer names such as "
                         f"{list(DEFAULT_TARGETS)}")
    if "lm_head" in targets or "embed_tokens" in targets:
        raise ValueError(f"target_modules {sorted(targets)} names the output head or the "
                         "embeddings; PLoRA adapts only decoder linear layers")
    return targets


def _in_vision_part(name: str) -> bool:
    return any(part in VISION_PARTS for part in name.split("."))


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def remove_plora(model: nn.Module) -> list[str]:
    """Put the base layers back in place of the PLoRA layers; returns their names.

    The adapters are dropped; the model is then exactly the base model again.
    """
    layers = plora_layers(model)
    for name, layer in layers.items():
        layer.drop_merged()
        _replace(model, name, layer.base)
    model.__dict__.pop("_plora_holders", None)
    return list(layers)


def set_plora_merge(model: nn.Module, merge: bool) -> int:
    """Turn the merged inference path of every PLoRA layer on or off; returns how many
    layers. Drops the cached merged weights either way (rebuilt lazily when on)."""
    layers = plora_layers(model)
    if not layers:
        raise ValueError("the model has no PLoRA layers: call inject_plora(model) or "
                         "load_plora(model, folder) first")
    for layer in layers.values():
        layer.merge = bool(merge)
        layer.drop_merged()
    return len(layers)


def mask_holders(model: nn.Module, required: bool = True) -> list[PLoRAMask]:
    """The distinct mask holders of the model's PLoRA layers (one per inject_plora call);
    none found raises ValueError when `required`. Cached on the model by inject_plora (a
    walk of every module would cost ~1 ms per decode step on the embedded model)."""
    cached = model.__dict__.get("_plora_holders")
    if cached:
        return cached
    holders: dict[int, PLoRAMask] = {}
    for layer in plora_layers(model).values():
        holders.setdefault(id(layer.holder), layer.holder)
    if not holders and required:
        raise ValueError("the model has no PLoRA layers: call inject_plora(model) or "
                         "load_plora(model, folder) first")
    return list(holders.values())


def set_image_mask(model: nn.Module, mask: torch.Tensor | None) -> None:
    """Use `mask` (bool [batch, seq], true at image tokens) for the model's next forwards.

    The mask may live on the CPU (cheapest: no accelerator sync) or on the model's device.
    None (or clear_image_mask) makes every layer its base layer again. It stays set until
    changed: set the decode steps' mask (or None) before them. A mask for a model without
    PLoRA layers raises ValueError; None is fine (text-only code runs the same on a plain
    model).
    """
    for holder in mask_holders(model, required=mask is not None):
        holder.set(mask)


def clear_image_mask(model: nn.Module) -> None:
    """Remove the image mask: the model computes its base layers only (text-only)."""
    for holder in mask_holders(model, required=False):
        holder.clear()


@contextmanager
def image_mask(model: nn.Module, mask: torch.Tensor | None) -> Iterator[None]:
    """Set the image mask for the forwards inside the block, then clear it (even on error)."""
    set_image_mask(model, mask)
    try:
        yield
    finally:
        clear_image_mask(model)


def plora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapter parameters (every Plora_A and Plora_B weight), e.g. for an optimiser."""
    parameters = []
    for layer in plora_layers(model).values():
        parameters += [layer.Plora_A.weight, layer.Plora_B.weight]
    return parameters


def freeze_base(model: nn.Module) -> int:
    """Make only the adapters trainable; returns how many parameters stay trainable.

    Every parameter of the model stops requiring gradients except Plora_A / Plora_B.
    """
    adapters = {id(parameter) for parameter in plora_parameters(model)}
    if not adapters:
        raise ValueError("the model has no PLoRA layers to train: call inject_plora first")
    trainable = 0
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in adapters)
        trainable += parameter.numel() if id(parameter) in adapters else 0
    return trainable
