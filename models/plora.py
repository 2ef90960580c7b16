"""Partial LoRA (PLoRA, from InternLM-XComposer2): a low-rank update on image tokens only.

Each adapted linear layer computes `y = W0 x` at text positions and
`y = W0 x + scale * B(A(dropout(x)))` at the positions where the image mask is true, so a
text-only input gives exactly the base language model's output, bit for bit.

The mask is a boolean [batch, seq] aligned with the current query positions. Hugging Face
models call their linear layers as `layer(x)`, so the mask cannot travel as an argument: all
wrapped layers of one model share a `PLoRAMask` holder, set before the model's forward:

    inject_plora(model)                      # rank 256, alpha 256, dropout 0.05
    with image_mask(model, mask):            # mask: bool [batch, seq]
        logits = model(inputs_embeds=embeds).logits

Setting a mask splits the flat positions (batch * seq + position) into text rows and image
rows once (one host read of the image count, the only device-to-host sync of the whole
forward, and one stable argsort on the mask's device). No layer looks at the mask's values,
so no layer syncs. Two ways to apply the update:

* merged (inference, the default): the update of an image row is the fixed linear map
  scale * B @ A, so each layer keeps a merged weight W1 = W0 + scale * B @ A beside W0 and
  computes the text rows with W0 and the image rows with W1 (one `index_select` grouping
  the text rows then the image rows, the products into one buffer, one `index_select`
  putting the rows back). W0 and W1 sit in one [2, out, in] tensor, so m text rows and m
  image rows, m = min(text, image), are multiplied by one batched product (torch.bmm)
  and only the rows left over on one side by a second product (`_grouped_products`). An
  image token then costs the same multiply-adds as a text token; what remains is the two
  gathers and reading W1. Used only when the layer is in eval mode, gradients are off
  (no_grad / inference_mode), its base is a plain nn.Linear (quantized bases keep the
  low-rank path) and merging is on (inject_plora(..., merge=True), the default;
  set_plora_merge(model, False) turns it off). Results equal the low-rank path up to
  float rounding (dropout is inactive in eval mode).
* low-rank (training, grad enabled, other bases, merge off): the image rows are gathered,
  run through A and B, scaled and added back with `index_add_`.

Memory: merging keeps one extra copy of every adapted weight (W1, in W0's dtype and on its
device: about the size of the adapted layers of the base model, e.g. ~+80% of SmolLM2-135M's
weights). The pair tensor holds W0 and W1: the base layer's weight Parameter is moved into
its first half (same object, same values: `weight.data` points there), so W0 is not kept
twice; dropping the cache gives the weight storage of its own again (one copy of W0), and
W1 is freed. Base weights that are inference tensors cannot be moved: theirs is W1 alone
and two products. The cache is built lazily, at the first masked inference forward of each
layer, and kept on the layer keyed on (data_ptr, version) of W0, A and B and on the scale,
so loading adapters (copy_), reset_adapter, optimiser steps and in-place edits rebuild it;
moving or casting the model (.to / .half / .cuda) drops it. Inference tensors (weights
created or modified inside torch.inference_mode) have no version counter: for them the key
is the data_ptr only, so after editing such weights in place call `drop_merged()` on the layers
(or set_plora_merge(model, ...), which drops the caches). `drop_merged()` / remove_plora /
set_plora_merge free the copies.

A prompt's prefill in the app does better than either per-layer design: it groups the rows
once for the whole model (models/plora_grouped.py; `PLoRAMask.set_grouped`), so each layer
multiplies two contiguous slices (`grouped_forward`) and moves no rows.

bench/bench_plora.py measures all three on a SmolLM2-135M-shaped model with rank 256 on all 7
projections, a 512-token prefill and 2 CPU threads, side by side (bench/results/plora.json;
the figures are summed up in models/plora_grouped.py). Rank 256 is 0.44x the hidden size of
this model; on the low-rank path it costs 0.74x the base layers' multiply-adds per image
token (~35% at 50% image tokens). At InternLM-XComposer2's size (hidden 4096) the same rank
is 1/16 of the hidden size.

With a KV cache the mask must match the *current* query positions: prefill with the image
mask, then decode steps with a [batch, 1] all-false mask (or no mask): those take the base
path. A mask whose length differs from the layer input's raises ValueError naming both
lengths. Beam search needs the mask expanded across beams
(`mask.repeat_interleave(num_beams, dim=0)`).

The update applies per position, so it cannot be folded into W0 itself: it is merged into
the second weight W1 used for image rows only. The holder is per model, not per thread: run
one masked forward per model at a time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Submodules of a vision-language model that PLoRA never adapts (vision tower, projector).
VISION_PARTS = frozenset({"vision_tower", "vision_model", "visual", "vision_encoder",
                          "multi_modal_projector", "mm_projector", "vision_proj"})
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "plora"
FORMAT_VERSION = 1


class PLoRAMask:
    """The image mask of the current forward, shared by every PLoRALinear of one model.

    `shape` is the mask's [batch, seq] (None: no mask, every layer is its base layer);
    `rows` holds the flat indices (batch * seq + position) of the image positions and
    `text_rows` those of the text positions (both ascending), `order` the text rows then
    the image rows and `inverse` its inverse permutation (the merged path gathers with
    `order` and puts the rows back with `inverse`), all found once per `set` so that the
    layers never read the mask's values.
    """

    def __init__(self) -> None:
        self.shape: tuple[int, int] | None = None
        self.rows: torch.Tensor | None = None
        self.text_rows: torch.Tensor | None = None
        # order: the text rows then the image rows; inverse: where each row went in order.
        self.order: torch.Tensor | None = None
        self.inverse: torch.Tensor | None = None
        # grouped: the layer inputs' rows are already grouped, text rows [0, grouped_text)
        # then image rows (models/plora_grouped.py); None: rows in their own order.
        self.grouped_text: int | None = None
        self._rows_by_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def set(self, mask: torch.Tensor | None) -> None:
        """Use `mask` (bool [batch, seq]) for the following forwards; None clears it.

        Splits the positions here, once, on the mask's device: the image count is read to
        the host (a mask on the CPU costs no accelerator sync at all, one on a GPU a single
        sync) and a stable argsort puts the text rows first, the image rows after, each in
        ascending order.
        """
        if mask is None:
            self.clear()
            return
        check_mask(mask)
        flat = mask.reshape(-1)
        count = int(flat.sum().item())
        total = flat.numel()
        if count == 0:
            self.order = self.inverse = self.text_rows = torch.arange(total, device=flat.device)
        else:
            self.order = torch.argsort(flat.to(torch.uint8), stable=True)
            self.inverse = torch.empty_like(self.order).scatter_(
                0, self.order, torch.arange(total, device=flat.device))
        self.text_rows, self.rows = self.order[:total - count], self.order[total - count:]
        self._rows_by_device = {self.rows.device: (self.rows, self.text_rows, self.order,
                                                   self.inverse)}
        self.shape = (mask.shape[0], mask.shape[1])
        self.grouped_text = None

    def set_grouped(self, length: int, text: int) -> None:
        """The next forwards get one sequence of `length` rows already grouped: its `text`
        text rows first, its image rows after (models/plora_grouped.py moves the rows once
        for the whole model). The layers then multiply two contiguous slices and move no
        rows at all."""
        if not 0 <= text <= length:
            raise ValueError(f"text rows {text} must be between 0 and the length {length}")
        self.clear()
        self.shape = (1, length)
        self.rows = torch.arange(text, length)  # only its count is read in grouped mode
        self.grouped_text = text

    def clear(self) -> None:
        """Forget the mask: every layer computes its base layer only."""
        self.shape = None
        self.rows = None
        self.text_rows = None
        self.order = None
        self.inverse = None
        self.grouped_text = None
        self._rows_by_device = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(rows, text_rows, order, inverse) on `device`."""
        rows = self._rows_by_device.get(device)
        if rows is None:
            order = self.order.to(device, non_blocking=True)
            text = order.shape[0] - self.rows.shape[0]
            rows = self._rows_by_device[device] = (
                order[text:], order[:text], order, self.inverse.to(device, non_blocking=True))
        return rows

    def rows_on(self, device: torch.device) -> torch.Tensor:
        """The image rows on `device`, copied there once per mask (a model split across
        devices gets one copy per device; a copy to a GPU does not sync)."""
        return self._on(device)[0]

    def text_rows_on(self, device: torch.device) -> torch.Tensor:
        """The text rows on `device`, copied there once per mask (as rows_on)."""
        return self._on(device)[1]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError when the layer input's [batch, seq] differs from the mask's."""
        if self.shape is None or tuple(x.shape[:-1]) == self.shape:
            return
        if x.dim() != 3:
            raise ValueError(f"a PLoRA layer got an input of shape {tuple(x.shape)}; with an "
                             "image mask set it must be [batch, seq, features]")
        batch, seq = self.shape
        if x.shape[1] != seq:
            raise ValueError(
                f"the image mask covers {seq} positions but the layer input has {x.shape[1]} "
                "query positions: the mask must match the current query positions (with a "
                "KV cache, decode steps need a [batch, 1] all-false mask, or clear the mask)")
        raise ValueError(
            f"the image mask has batch {batch} but the layer input has batch {x.shape[0]}: "
            "expand the mask the same way as the inputs (beam search: "
            "mask.repeat_interleave(num_beams, dim=0))")


def check_mask(mask: object) -> None:
    """Raise TypeError / ValueError unless `mask` is a bool tensor of shape [batch, seq]."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"the image mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"the image mask has dtype {mask.dtype}; it must be torch.bool: "
                         "pass mask.bool() (true at image positions)")
    if mask.dim() != 2:
        raise ValueError(f"the image mask has shape {tuple(mask.shape)}; it must be "
                         "[batch, seq], aligned with the input ids / embeddings")


class PLoRALinear(nn.Module):
    """A base nn.Linear plus a low-rank update applied only at image positions.

    The base layer is kept as given (freeze_base makes it frozen for training). With no
    mask set, or no image position in it, the output is the base layer's, bit for bit.

    Plora_A: in_features -> rank (kaiming-uniform, as peft initialises lora_A), Plora_B:
    rank -> out_features (zeros, so a fresh adapter changes nothing), no biases, both in the
    base weight's dtype and on its device; scale = alpha / rank. The names follow the public
    InternLM-XComposer2 checkpoints (`Plora_A` / `Plora_B` beside the base weight).
    """

    def __init__(self, base: nn.Linear, holder: PLoRAMask, *, rank: int, alpha: float,
                 dropout: float, merge: bool = True) -> None:
        super().__init__()
        check_hyperparameters(rank, alpha, dropout)
        self.base = base
        self.holder = holder
        # A plain nn.Linear is computed with F.linear directly (what its forward does),
        # saving a module call per layer; subclasses (quantized layers) keep their forward.
        self.plain_base = type(base) is nn.Linear
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        options = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.Plora_A = nn.Linear(base.in_features, rank, bias=False, **options)
        self.Plora_B = nn.Linear(rank, base.out_features, bias=False, **options)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Inference merges the update into a second weight W1 for the image rows (see the
        # module docstring); a plain attribute, so not in the state dict.
        self.merge = bool(merge)
        # (key, W1, the [2, out, in] pair of W0 and W1 or None); see merged_weight.
        self._merged: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None
        # Merged path: multiply paired text / image rows in one batched product where it
        # can (see _grouped_products); False: two products (kept to compare both).
        self.paired = True
        self.reset_adapter()

    def reset_adapter(self) -> None:
        """A kaiming-uniform (a = sqrt 5, peft's lora_A init), B zeros: the base output."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.Plora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.Plora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The dictionaries are read directly: nn.Module.__getattr__ costs ~1 us a lookup,
        # which over 210 layers is ~1% of a decode step of the embedded model.
        base = self._modules["base"]
        holder = self.holder
        if holder.shape is not None:
            holder.check_input(x)
            if holder.rows.numel():  # a shape, known on the host: no sync
                if holder.grouped_text is not None:
                    return self.grouped_forward(x, holder.grouped_text)
                if self.merge and self.plain_base and not self.training \
                        and not torch.is_grad_enabled():
                    return self.merged_forward(x)
                return self.add_update(self._base_forward(base, x), x,
                                       holder.rows_on(x.device))
        return self._base_forward(base, x)

    def _base_forward(self, base: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.plain_base:
            return nn.functional.linear(x, base._parameters["weight"], base._parameters["bias"])
        return base(x)

    def merged_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Text rows through W0, image rows through the merged W1 = W0 + scale * B @ A.

        One gather (index_select) puts the text rows first and the image rows after; the
        products (`_grouped_products`) write into one buffer, and one more index_select
        puts the rows back in place. An all-image input is one F.linear with W1.
        """
        image, _, order, inverse = self.holder._on(x.device)
        flat = x.reshape(-1, self.in_features)
        rows = flat.shape[0]
        if image.shape[0] == rows:
            return nn.functional.linear(x, self.merged_weight(), self.base._parameters["bias"])
        grouped = flat.index_select(0, order)
        out = self._grouped_products(grouped, rows - image.shape[0])
        return out.index_select(0, inverse).view(*x.shape[:-1], self.out_features)

    def grouped_forward(self, x: torch.Tensor, text: int) -> torch.Tensor:
        """The update on input rows already grouped (text rows [0, text), image rows after):
        contiguous slices, no row moved. Merged when the merged path applies (W0 on the
        text slice, W1 on the image slice), else the base layer on all rows plus the
        low-rank update added to the image slice."""
        base = self._modules["base"]
        flat = x.reshape(-1, self.in_features)
        shape = (*x.shape[:-1], self.out_features)
        if self.merge and self.plain_base and not self.training and not torch.is_grad_enabled():
            return self._grouped_products(flat, text).view(shape)
        out = self._base_forward(base, x).reshape(-1, self.out_features)
        picked = flat[text:].to(self.Plora_A.weight.dtype)
        update = self.Plora_B(self.Plora_A(self.dropout(picked)))
        if self.scale != 1.0:
            update = update * self.scale
        return torch.cat([out[:text], out[text:] + update.to(out.dtype)]).view(shape)

    def _grouped_products(self, rows: torch.Tensor, text: int) -> torch.Tensor:
        """[n, out]: rows [0, text) times W0, rows [text, n) times W1 (2-d, grouped input).

        With W0 and W1 in one [2, out, in] tensor (see merged_weight), the last m text rows
        and the first m image rows, m = min(text, image), go through one batched product
        (torch.bmm, one call: on the CPU each thread multiplies one of the two, on a GPU one
        strided-batched kernel), and only the rows left over on one side through a second
        product. Two separate products cost more: each is split over all threads and reads
        its weight on its own (bench/bench_plora.py, "grouped" vs "grouped-split").
        """
        bias = self.base._parameters["bias"]
        stacked = self._merged_pair()
        weight, merged = self.base._parameters["weight"], self._merged[1]
        total = rows.shape[0]
        if torch.is_autocast_enabled(rows.device.type):  # out= does not autocast
            return torch.cat([nn.functional.linear(rows[:text], weight, bias),
                              nn.functional.linear(rows[text:], merged, bias)])
        out = rows.new_empty(total, self.out_features)
        paired = min(text, total - text) if stacked is not None and self.paired else 0
        start = text - paired  # the paired rows: [start, text + paired)
        if paired:
            pair_in = rows[start:text + paired].reshape(2, paired, self.in_features)
            pair_out = out[start:text + paired].view(2, paired, self.out_features)
            if bias is None:
                torch.bmm(pair_in, stacked.transpose(1, 2), out=pair_out)
            else:
                torch.baddbmm(bias.expand(2, paired, -1), pair_in, stacked.transpose(1, 2),
                              out=pair_out)
        if start:
            _linear_into(rows[:start], weight, bias, out[:start])
        if text + paired < total:
            _linear_into(rows[text + paired:], merged, bias, out[text + paired:])
        return out

    def _merge_key(self) -> tuple:
        return (_tensor_key(self.base._parameters["weight"]),
                _tensor_key(self.Plora_A._parameters["weight"]),
                _tensor_key(self.Plora_B._parameters["weight"]), self.scale)

    def merged_weight(self) -> torch.Tensor:
        """W1 = W0 + scale * B @ A in W0's dtype and on its device (computed in at least
        float32), cached until W0, A, B or the scale change (see the module docstring).

        Where it can, the cache is one [2, out, in] tensor holding W0 and W1, and the base
        layer's weight is moved into its first half (same values, same Parameter object):
        the batched product of `_grouped_products` needs both in one tensor, and W0 is not
        kept twice. Base weights that cannot be moved (inference tensors) keep their place
        and W1 is cached alone."""
        key = self._merge_key()
        cached = self._merged
        if cached is not None and cached[0] == key:
            return cached[1]
        self.drop_merged()  # free the stale copy before building the new one
        weight = self.base.weight
        work = torch.promote_types(weight.dtype, torch.float32)
        # inference_mode(False): a normal tensor, usable inside and outside inference mode.
        with torch.inference_mode(False), torch.no_grad():
            merged = torch.addmm(weight.to(work), self.Plora_B.weight.to(work),
                                 self.Plora_A.weight.to(work), alpha=self.scale)
            stacked = None
            if not weight.is_inference():
                stacked = weight.new_empty((2, *weight.shape))
                stacked[0].copy_(weight)
                stacked[1].copy_(merged)
                weight.data = stacked[0]
                merged = stacked[1]
            else:
                merged = merged.to(weight.dtype)
        self._merged = (self._merge_key(), merged, stacked)
        return merged

    def _merged_pair(self) -> torch.Tensor | None:
        """The [2, out, in] tensor of W0 and W1 (building the cache if needed), or None when
        W1 is cached alone. The cache key holds W0's data_ptr, so a valid pair is the one
        the base weight lives in."""
        self.merged_weight()
        return self._merged[2]

    def drop_merged(self) -> None:
        """Free the cached merged weight (rebuilt at the next masked inference forward).

        A base weight living in the first half of the cached pair is given storage of its
        own again (one copy), so the second half, W1, is freed with the cache."""
        cached, self._merged = self._merged, None
        if cached is None or cached[2] is None:
            return
        weight = self.base._parameters["weight"]
        if weight.untyped_storage().data_ptr() == cached[2].untyped_storage().data_ptr():
            with torch.inference_mode(False), torch.no_grad():
                weight.data = weight.data.clone()

    def _apply(self, fn, *args, **kwargs):
        # .to / .half / .cuda replace the weights: the merged copy would be stale (and keep
        # the old device's memory alive).
        self.drop_merged()
        return super()._apply(fn, *args, **kwargs)

    def add_update(self, out: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Add scale * B(A(dropout(x))) to `out` at the flat positions `rows`.

        In place for a plain nn.Linear base (F.linear keeps its input, not its output, for
        backward, so autograd allows it and no copy of `out` is made); out of place otherwise.
        """
        picked = x.reshape(-1, self.in_features).index_select(0, rows)
        picked = picked.to(self.Plora_A.weight.dtype)
        update = self.Plora_B(self.Plora_A(self.dropout(picked)))
        if self.scale != 1.0:
            update = update * self.scale
        update = update.to(out.dtype)
        if self.plain_base:
            out.view(-1, self.out_features).index_add_(0, rows, update)
            return out
        return out.reshape(-1, self.out_features).index_add(0, rows, update).view(out.shape)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, merge={self.merge}"


def _linear_into(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 out: torch.Tensor) -> None:
    """F.linear(x, weight, bias) written into `out` (what F.linear runs for 2-d inputs)."""
    if bias is None:
        torch.mm(x, weight.t(), out=out)
    else:
        torch.addmm(bias, x, weight.t(), out=out)


def _tensor_key(tensor: torch.Tensor) -> tuple:
    """(data_ptr, version counter) of a weight; inference tensors have no version counter,
    so theirs is (data_ptr, None): in-place edits of those need an explicit drop_merged()."""
    if tensor.is_inference():
        return (tensor.data_ptr(), None)
    return (tensor.data_ptr(), tensor._version)


def check_hyperparameters(rank: object, alpha: object, dropout: object) -> None:
    """Raise ValueError naming the first of rank / alpha / dropout out of range."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank is {rank!r}; it must be a whole number >= 1 (reference: 256)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha is {alpha!r}; it must be a number > 0 (reference: 256)")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0 <= dropout < 1:
        raise ValueError(f"dropout is {dropout!r}; it must be in [0, 1) (reference: 0.05)")


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


def _holders(model: nn.Module, required: bool = True) -> list[PLoRAMask]:
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
    for holder in _holders(model, required=mask is not None):
        holder.set(mask)


def clear_image_mask(model: nn.Module) -> None:
    """Remove the image mask: the model computes its base layers only (text-only)."""
    for holder in _holders(model, required=False):
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
