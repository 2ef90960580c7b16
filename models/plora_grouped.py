"""A prompt's prefill with its rows grouped once for the whole model (Partial LoRA, fast).

Every layer of a decoder block except attention treats the positions independently: the
linear layers, the norms, the activations and the residual additions. So the rows of one
sequence can be put in any order for them, as long as attention sees them in their real
order and each row keeps its real position for the rotary embedding. This prefill

1. moves the rows once, before the first block: the text rows first, the image rows after
   (`inputs_embeds.index_select`), with `position_ids` moved the same way;
2. lets every PLoRA layer multiply two contiguous slices, the text rows by W0 and the image
   rows by the merged W1 (models/plora_layer.py `grouped_forward`): no row is moved per layer;
3. puts the query, key and value rows back in their real order inside attention (a
   wrapper around the model's attention function, registered with transformers'
   AttentionInterface as "plora-grouped-<name>") and the attention output rows back in the
   grouped order after it: two moves per block instead of two per linear layer;
4. keeps the logits of the real last position only (`logits_to_keep` given that index).

The KV cache then holds the prompt's keys in the grouped order, each rotated by its real
position. Decode steps attend to every cached key of the prompt, so the order does not
change their result (attention over a set of keys does not depend on their order).

It applies to one sequence (batch 1) without padding, a model whose attention function
transformers registers by name (sdpa, flash attention, flex: not "eager", whose function
each model file defines itself) and no sliding window shorter than the prompt; anything
else, or a prompt that is all text or all image, takes the per-layer path
(`image_mask` + one forward), with the same result up to float rounding.

Each layer multiplies the paired text and image rows in one batched product
(`PLoRALinear._grouped_products`): on the CPU each thread then multiplies one half with its
own weight instead of both threads sharing each of two products.

Its cost against the base model and against the per-layer paths is measured by
bench/bench_plora_target.py and bench/bench_plora.py (bench/results/plora_target.json,
bench/results/plora.json).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.plora import image_mask, mask_holders
from models.plora_mask import check_mask

PREFIX = "plora-grouped-"


@dataclass(frozen=True)
class Grouping:
    """How the rows of the current grouped forward were moved.

    length: the prompt's positions; text: how many of them are text; order[j]: the real
    position of grouped row j (text rows first, then image rows, each ascending);
    inverse[p]: the grouped row of real position p. Both on the model's device.
    """

    length: int
    text: int
    order: torch.Tensor
    inverse: torch.Tensor


# The grouping of the forward running in this thread (None outside a grouped prefill).
_CURRENT: ContextVar[Grouping | None] = ContextVar("plora_grouping", default=None)


def prefill_last_logits(model: nn.Module, inputs_embeds: torch.Tensor,
                        mask: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                        position_ids: torch.Tensor | None = None, keep_last: bool = True,
                        **kwargs: Any) -> torch.Tensor:
    """Run a prompt's forward under the image `mask`; the logits of its last position.

    Returns [batch, vocab] in the model's dtype; `kwargs` go to the model's forward (the
    cache, use_cache): the cache is filled. Grouped (see the module docstring) when it
    applies, else the per-layer path. keep_last: the model's forward takes
    `logits_to_keep` (computes the output head on the kept position only). A mask that is
    not a bool [batch, seq] tensor raises TypeError / ValueError. A model without PLoRA
    layers runs its plain forward (the mask has nothing to act on).
    """
    check_mask(mask)
    grouping = plan_grouping(model, mask, attention_mask)
    if grouping is None:
        extra = {"logits_to_keep": 1} if keep_last else {}
        adapted = bool(mask_holders(model, required=False))
        with image_mask(model, mask if adapted else None):
            output = model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                           position_ids=position_ids, **extra, **kwargs)
        return output.logits[:, -1, :]
    device = inputs_embeds.device
    length = grouping.length
    if position_ids is None:
        position_ids = torch.arange(length, device=device).unsqueeze(0)
    last = grouping.inverse[-1:]
    extra = {"logits_to_keep": last} if keep_last else {}
    config = model.config.get_text_config()
    original = config._attn_implementation
    token = _CURRENT.set(grouping)
    holders = mask_holders(model)
    try:
        for holder in holders:
            holder.set_grouped(length, grouping.text)
        config._attn_implementation = grouped_attention_name(original)
        output = model(inputs_embeds=inputs_embeds.index_select(1, grouping.order),
                       attention_mask=attention_mask,
                       position_ids=position_ids.index_select(1, grouping.order),
                       **extra, **kwargs)
    finally:
        config._attn_implementation = original
        _CURRENT.reset(token)
        for holder in holders:
            holder.clear()
    logits = output.logits
    return logits[:, -1, :] if keep_last else logits.index_select(1, last)[:, 0, :]


def plan_grouping(model: nn.Module, mask: torch.Tensor,
                  attention_mask: torch.Tensor | None) -> Grouping | None:
    """The row order of a grouped prefill, or None when it does not apply (the reasons in
    the module docstring). Reads the image count to the host: the one sync of a prefill."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if mask.dim() != 2 or mask.shape[0] != 1 or not mask_holders(model, required=False):
        return None
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "get_text_config"):
        return None
    config = config.get_text_config()
    name = config._attn_implementation
    if not name or name.startswith(PREFIX) or name not in ALL_ATTENTION_FUNCTIONS:
        return None
    length = mask.shape[1]
    window = getattr(config, "sliding_window", None)
    if isinstance(window, int) and window < length:
        return None
    if attention_mask is not None and not bool(attention_mask.all()):
        return None
    flat = mask[0]
    images = int(flat.sum())
    if images in (0, length):
        return None
    device = model.get_input_embeddings().weight.device
    order = torch.argsort(flat.to(torch.uint8), stable=True).to(device)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(length, device=device))
    return Grouping(length=length, text=length - images, order=order, inverse=inverse)


def grouped_attention_name(original: str) -> str:
    """Register (once) the grouped wrapper of attention function `original`; its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = PREFIX + original
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _wrap(ALL_ATTENTION_FUNCTIONS[original]))
        if original in ALL_MASK_ATTENTION_FUNCTIONS:
            AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
    return name


def _wrap(attention: Callable) -> Callable:
    """`attention` with the rows of a grouped forward put back in their real order."""

    def grouped_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                          value: torch.Tensor, attention_mask: torch.Tensor | None,
                          **kwargs: Any):
        grouping = _CURRENT.get()
        if grouping is None or query.shape[2] != grouping.length:
            return attention(module, query, key, value, attention_mask, **kwargs)
        real = grouping.inverse
        query = query.index_select(2, real)
        earlier = key.shape[2] - grouping.length  # keys cached before this prompt, if any
        if earlier:
            real = torch.cat([torch.arange(earlier, device=real.device), real + earlier])
        key, value = key.index_select(2, real), value.index_select(2, real)
        positions = kwargs.get("position_ids")
        if isinstance(positions, torch.Tensor) and positions.shape[-1] == grouping.length:
            kwargs["position_ids"] = positions.index_select(-1, grouping.inverse)
        output, weights = attention(module, query, key, value, attention_mask, **kwargs)
        return output.index_select(1, grouping.order), weights  # output: [b, seq, heads, d]

    return grouped_attention
