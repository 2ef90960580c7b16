"""models/plora_grouped.py: the prefill with rows grouped once for the whole model.

It must give what the per-layer path gives (one masked forward): the last position's
logits, and a KV cache from which decoding continues with the same logits, for interleaved
masks, any attention function transformers registers, a quantized-style (non-plain) base,
merging off, and it must step aside where it does not apply.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import DynamicCache

from models.plora import image_mask, inject_plora, plora_layers, set_plora_merge
from models.plora_grouped import plan_grouping, prefill_last_logits
from models.plora_layer import PLoRALinear
from tests.tiny_models import build_plora_llama

# A multiple of 16: torch 2.13's compiled flex_attention on the CPU returns wrong values for
# sequence lengths that are not (seen on an AVX2-only AMD EPYC machine, 24 and 40 positions
# with 8-wide heads, for the plain base model too: compiled flex_attention against sdpa).
SEQ = 32


def interleaved_mask(seq: int = SEQ) -> torch.Tensor:
    """Two image blocks between text: positions 3..8 and 14..19."""
    mask = torch.zeros(1, seq, dtype=torch.bool)
    mask[0, 3:9] = True
    mask[0, 14:20] = True
    return mask


def adapted_model(attention: str = "sdpa") -> nn.Module:
    model = build_plora_llama()
    model.config._attn_implementation = attention
    inject_plora(model, rank=8, alpha=16, dropout=0.05)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in plora_layers(model).values():
            weight = layer.Plora_B.weight
            weight.copy_(torch.randn(weight.shape, generator=generator) * 0.05)
    return model


def embeds_for(model: nn.Module, seed: int = 1) -> torch.Tensor:
    ids = torch.randint(2, 128, (1, SEQ), generator=torch.Generator().manual_seed(seed))
    return model.get_input_embeddings()(ids).detach()


def per_layer_run(model, embeds, mask, steps):
    """Reference: one masked forward (per-layer path), then decode `steps` tokens."""
    cache = DynamicCache(config=model.config)
    with torch.no_grad(), image_mask(model, mask):
        out = model(inputs_embeds=embeds, cache=cache, use_cache=True)
    return out.logits[:, -1], decode(model, cache, out.logits[:, -1], steps)


def decode(model, cache, last, steps):
    logits = []
    with torch.no_grad():
        for _ in range(steps):
            token = last.argmax(-1, keepdim=True)
            last = model(token, cache=cache, use_cache=True).logits[:, -1]
            logits.append(last)
    return logits


def grouped_run(model, embeds, mask, steps, **options):
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        last = prefill_last_logits(model, embeds, mask, cache=cache, use_cache=True, **options)
    return last, decode(model, cache, last, steps)


@pytest.mark.parametrize("attention", ["sdpa", "flex_attention"])
def test_grouped_prefill_and_decode_match_the_per_layer_path(attention):
    model = adapted_model(attention)
    embeds, mask = embeds_for(model), interleaved_mask()
    assert plan_grouping(model, mask, None) is not None
    reference, reference_steps = per_layer_run(model, embeds, mask, steps=5)
    last, steps = grouped_run(model, embeds, mask, steps=5)
    assert torch.allclose(last, reference, atol=1e-5)
    for got, expected in zip(steps, reference_steps, strict=True):
        assert torch.allclose(got, expected, atol=1e-5)
    # the adapters act: without the mask the logits differ
    with torch.no_grad():
        plain = model(inputs_embeds=embeds).logits[:, -1]
    assert not torch.allclose(plain, reference, atol=1e-4)
    # the model is left as it was: its attention function, no mask on the layers
    assert model.config._attn_implementation == attention
    assert all(layer.holder.shape is None for layer in plora_layers(model).values())


def test_full_logits_and_an_explicit_mask_and_positions_give_the_same():
    model = adapted_model()
    embeds, mask = embeds_for(model, seed=3), interleaved_mask()
    reference, _ = per_layer_run(model, embeds, mask, steps=0)
    with torch.no_grad():
        last = prefill_last_logits(model, embeds, mask, keep_last=False,
                                   attention_mask=torch.ones(1, SEQ, dtype=torch.long),
                                   position_ids=torch.arange(SEQ).unsqueeze(0))
    assert torch.allclose(last, reference, atol=1e-5)


def test_low_rank_layers_take_the_grouped_rows_too():
    """Merging off (and so a quantized base, which never merges) adds the low-rank update
    to the image slice: the same logits."""
    model = adapted_model()
    set_plora_merge(model, False)
    embeds, mask = embeds_for(model), interleaved_mask()
    reference, reference_steps = per_layer_run(model, embeds, mask, steps=3)
    last, steps = grouped_run(model, embeds, mask, steps=3)
    assert torch.allclose(last, reference, atol=1e-5)
    assert torch.allclose(steps[-1], reference_steps[-1], atol=1e-5)


def test_layers_move_no_rows_in_a_grouped_forward(monkeypatch):
    """The per-layer gathers (index_select on the layer input) never run."""
    model = adapted_model()
    embeds, mask = embeds_for(model), interleaved_mask()
    calls = []

    def refuse(self, x):
        calls.append(1)
        raise AssertionError("the per-layer gather path ran")

    monkeypatch.setattr(PLoRALinear, "merged_forward", refuse)
    monkeypatch.setattr(PLoRALinear, "add_update", refuse)
    with torch.no_grad():
        prefill_last_logits(model, embeds, mask)
    assert calls == []


def test_grouping_steps_aside_where_it_does_not_apply():
    model = adapted_model()
    mask = interleaved_mask()
    assert plan_grouping(model, torch.zeros(1, SEQ, dtype=torch.bool), None) is None
    assert plan_grouping(model, torch.ones(1, SEQ, dtype=torch.bool), None) is None
    assert plan_grouping(model, mask.expand(2, -1), None) is None  # a batch
    padded = torch.ones(1, SEQ, dtype=torch.long)
    padded[0, 0] = 0
    assert plan_grouping(model, mask, padded) is None
    assert plan_grouping(build_plora_llama(), mask, None) is None  # no adapters
    eager = adapted_model("eager")
    assert plan_grouping(eager, mask, None) is None
    # where it steps aside the per-layer path gives the answer
    embeds = embeds_for(eager)
    reference, _ = per_layer_run(eager, embeds, mask, steps=0)
    with torch.no_grad():
        assert torch.allclose(prefill_last_logits(eager, embeds, mask), reference, atol=1e-6)
    model.config.sliding_window = SEQ // 2
    assert plan_grouping(model, mask, None) is None
    # a model without adapters runs its plain forward
    plain = build_plora_llama()
    embeds = embeds_for(plain)
    with torch.no_grad():
        expected = plain(inputs_embeds=embeds).logits[:, -1]
        assert torch.allclose(prefill_last_logits(plain, embeds, mask), expected, atol=1e-6)


def test_a_mask_that_is_not_bool_is_refused_by_name():
    model = adapted_model()
    with pytest.raises(ValueError, match="must be torch.bool"), torch.no_grad():
        prefill_last_logits(model, embeds_for(model), interleaved_mask().long())


def test_an_error_inside_the_forward_leaves_the_model_as_it_was(monkeypatch):
    model = adapted_model()
    embeds, mask = embeds_for(model), interleaved_mask()

    def broken(self, x, text):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(PLoRALinear, "grouped_forward", broken)
    with pytest.raises(RuntimeError, match="out of memory"), torch.no_grad():
        prefill_last_logits(model, embeds, mask)
    assert model.config._attn_implementation == "sdpa"
    assert all(layer.holder.shape is None for layer in plora_layers(model).values())
