"""The Partial LoRA layer: a base nn.Linear plus a low-rank update at image rows only.

`y = W0 x` at text positions and `y = W0 x + scale * B(A(dropout(x)))` at the positions the
model's mask holder (models/plora_mask.py) marks as image rows. Three ways to apply it:

* merged (inference, the default): the update of an image row is the fixed linear map
  scale * B @ A, so each layer keeps a merged weight W1 = W0 + scale * B @ A beside W0 and
  computes the text rows with W0 and the image rows with W1 (one `index_select` grouping
  the text rows then the image rows, the products into one buffer, one `index_select`
  putting the rows back). W0 and W1 sit in one [2, out, in] tensor, so m text rows and m
  image rows, m = min(text, image), are multiplied by one batched product (torch.bmm)
  and only the rows left over on one side by a second product (`_grouped_products`). Used
  only when the layer is in eval mode, gradients are off (no_grad / inference_mode), its
  base is a plain nn.Linear (quantized bases keep the low-rank path) and merging is on
  (inject_plora(..., merge=True), the default; set_plora_merge(model, False) turns it
  off). Results equal the low-rank path up to float rounding.
* low-rank (training, grad enabled, other bases, merge off): the image rows are gathered,
  run through A and B, scaled and added back with `index_add_`.
* grouped (a prompt's prefill, models/plora_grouped.py): the rows come already grouped,
  so the layer multiplies two contiguous slices (`grouped_forward`) and moves no rows.

Memory: merging keeps one extra copy of every adapted weight (W1, in W0's dtype and on its
device). The base layer's weight Parameter is moved into the first half of the pair tensor
(same object, same values), so W0 is not kept twice; dropping the cache gives the weight
storage of its own again, and W1 is freed. Base weights that are inference tensors cannot be
moved: theirs is W1 alone and two products. The cache is built lazily, at the first masked
inference forward, keyed on (data_ptr, version) of W0, A and B and on the scale, so loading
adapters, reset_adapter, optimiser steps and in-place edits rebuild it; moving or casting
the model drops it. Inference tensors have no version counter: after editing such weights in
place call `drop_merged()` (or set_plora_merge, which drops the caches).

The costs of each path are measured by bench/bench_plora.py (bench/results/plora.json).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.plora_mask import PLoRAMask


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
        its weight on its own (bench/bench_plora.py, "grouped" vs "grouped-split"). Base
        weights that are inference tensors (W1 cached alone) take two products.
        """
        bias = self.base._parameters["bias"]
        stacked = self._merged_pair()
        weight, merged = self.base._parameters["weight"], self._merged[1]
        total = rows.shape[0]
        if torch.is_autocast_enabled(rows.device.type):  # out= does not autocast
            return torch.cat([nn.functional.linear(rows[:text], weight, bias),
                              nn.functional.linear(rows[text:], merged, bias)])
        out = rows.new_empty(total, self.out_features)
        paired = min(text, total - text) if stacked is not None else 0
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
