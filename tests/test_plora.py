"""Partial LoRA (models/plora*.py) on a tiny random Llama (hidden 64, 2 layers, vocab 128).

The key property: the low-rank update touches image positions only, so text-only inputs
give the base model's logits bit for bit, and the mask must follow the query positions
(prefill vs KV-cache decode, beams).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from models.plora import (
    DEFAULT_TARGETS,
    clear_image_mask,
    freeze_base,
    image_mask,
    inject_plora,
    plora_layers,
    plora_parameters,
    remove_plora,
    set_image_mask,
    set_plora_merge,
)
from models.plora_io import load_plora, plora_state_dict, save_plora
from models.plora_layer import PLoRALinear
from models.plora_mask import PLoRAMask
from tests.tiny_models import build_plora_llama

SEQ = 12
IMAGE = slice(4, 8)  # positions 4..7 are image tokens; 0..3 text before, 8..11 text after


def token_ids(batch: int = 1, seq: int = SEQ, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(2, 128, (batch, seq), generator=generator)


def image_positions(batch: int = 1, seq: int = SEQ, where: slice = IMAGE) -> torch.Tensor:
    mask = torch.zeros(batch, seq, dtype=torch.bool)
    mask[:, where] = True
    return mask


def randomize_b(model: nn.Module, seed: int = 2, std: float = 0.05) -> None:
    """Give every Plora_B random values (a trained adapter), so the update is visible."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in plora_layers(model).values():
            weight = layer.Plora_B.weight
            weight.copy_(torch.randn(weight.shape, generator=generator).to(weight.dtype) * std)


def logits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None,
           **options) -> torch.Tensor:
    with torch.no_grad(), image_mask(model, mask):
        return model(ids, **options).logits


@pytest.fixture
def adapted():
    """(base model, adapted model with random B): the same weights, seed 0."""
    base = build_plora_llama()
    model = build_plora_llama()
    inject_plora(model, rank=8, alpha=16, dropout=0.05)
    randomize_b(model)
    return base, model


def test_injects_the_seven_projections_of_every_block_only():
    model = build_plora_llama()
    names = inject_plora(model)
    assert len(names) == 2 * len(DEFAULT_TARGETS)
    assert {name.rsplit(".", 1)[-1] for name in names} == set(DEFAULT_TARGETS)
    assert set(plora_layers(model)) == set(names)
    assert isinstance(model.lm_head, nn.Linear)
    assert isinstance(model.model.embed_tokens, nn.Embedding)
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.Plora_A.weight.shape == (256, 64) and layer.Plora_B.weight.shape == (64, 256)
    assert layer.scale == 1.0 and layer.Plora_A.bias is None and layer.Plora_B.bias is None
    assert torch.count_nonzero(layer.Plora_B.weight) == 0
    assert torch.count_nonzero(layer.Plora_A.weight) > 0
    assert not layer.training  # the eval-mode model's new dropout stays off
    bound = 1 / 64 ** 0.5  # kaiming-uniform with a = sqrt(5): U(-1/sqrt(d_in), 1/sqrt(d_in))
    assert layer.Plora_A.weight.abs().max() <= bound


def test_fresh_adapters_give_the_base_logits_with_a_partly_true_mask():
    base = build_plora_llama()
    model = build_plora_llama()
    inject_plora(model, rank=16, alpha=32, merge=False)
    ids = token_ids()
    expected = logits(base, ids)
    # The low-rank path adds exact zeros: bit for bit.
    assert torch.equal(logits(model, ids, image_positions()), expected)
    # The merged path multiplies the rows in two groups (W1 = W0 exactly): equal up to the
    # rounding of a differently blocked matrix product.
    set_plora_merge(model, True)
    assert torch.allclose(logits(model, ids, image_positions()), expected, atol=1e-5)


def test_text_only_input_is_the_base_model_bit_for_bit(adapted):
    base, model = adapted
    ids = token_ids(batch=2)
    expected = logits(base, ids)
    assert torch.equal(logits(model, ids), expected)
    assert torch.equal(logits(model, ids, torch.zeros(2, SEQ, dtype=torch.bool)), expected)


def test_image_positions_change_and_text_before_them_does_not(adapted):
    base, model = adapted
    ids = token_ids()
    expected = logits(base, ids)
    got = logits(model, ids, image_positions())
    # Causal: the text before the images is unaffected, up to float32 rounding. The merged
    # path multiplies the text rows by W0 in a differently blocked product (grouped and
    # batched with the image rows, torch.bmm) than the base model's one F.linear over all
    # rows; how a GEMM is blocked (and so how its sums are rounded) depends on the CPU's
    # kernels (AVX2, AVX-512, AMX), so only a tolerance holds on every machine. Logits here
    # are ~6 at most: 1e-5 is a few float32 ulps accumulated over 2 layers.
    torch.testing.assert_close(got[:, :IMAGE.start], expected[:, :IMAGE.start],
                               rtol=1e-5, atol=1e-5)
    changed = (got - expected).abs().amax(dim=-1)[0]
    # image positions and the text after them: a change 1000x the tolerance above (~0.7-1.4)
    assert (changed[IMAGE.start:] > 1e-2).all()


def test_layer_adds_the_scaled_update_only_at_masked_rows():
    torch.manual_seed(0)
    holder = PLoRAMask()
    layer = PLoRALinear(nn.Linear(6, 5), holder, rank=3, alpha=6, dropout=0.0)
    nn.init.normal_(layer.Plora_B.weight)
    x = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, False, False, True], [False, True, False, False]])
    holder.set(mask)
    expected = layer.base(x) + 2.0 * layer.Plora_B(layer.Plora_A(x)) * mask[..., None]
    assert torch.allclose(layer(x), expected, atol=1e-6)
    holder.clear()
    assert torch.equal(layer(x), layer.base(x))


def test_kv_cache_decode_with_false_masks_matches_one_full_forward(adapted):
    _, model = adapted
    ids = token_ids()
    full_mask = image_positions()
    full = logits(model, ids, full_mask)
    prefill = 9
    with torch.no_grad():
        with image_mask(model, full_mask[:, :prefill]):
            out = model(ids[:, :prefill], use_cache=True)
        assert torch.allclose(out.logits, full[:, :prefill], atol=1e-5)
        cache = out.cache
        for position in range(prefill, SEQ):
            with image_mask(model, torch.zeros(1, 1, dtype=torch.bool)):
                out = model(ids[:, position:position + 1], cache=cache,
                            use_cache=True)
            cache = out.cache
            assert torch.allclose(out.logits[:, 0], full[:, position], atol=1e-5)


def test_a_prefill_mask_left_set_on_a_decode_step_raises_naming_both_lengths(adapted):
    _, model = adapted
    ids = token_ids()
    with torch.no_grad(), image_mask(model, image_positions()):
        cache = model(ids, use_cache=True).cache
        with pytest.raises(ValueError, match="covers 12 positions .* has 1 query positions"):
            model(ids[:, -1:], cache=cache, use_cache=True)


def test_wrong_mask_length_or_batch_or_type_raises(adapted):
    _, model = adapted
    ids = token_ids(batch=2)
    with pytest.raises(ValueError, match="covers 11 positions but .* 12 query positions"):
        logits(model, ids, image_positions(batch=2, seq=SEQ - 1))
    with pytest.raises(ValueError, match="batch 3 .* batch 2.*repeat_interleave"):
        logits(model, ids, image_positions(batch=3))
    with pytest.raises(ValueError, match="dtype torch.int64; it must be torch.bool"):
        set_image_mask(model, image_positions(batch=2).long())
    with pytest.raises(ValueError, match=r"shape \(12,\); it must be \[batch, seq\]"):
        set_image_mask(model, image_positions(batch=1)[0])


def test_a_mask_expanded_across_beams_matches_separate_runs(adapted):
    _, model = adapted
    ids = token_ids(batch=2)
    masks = torch.stack([image_positions()[0], image_positions(where=slice(2, 9))[0]])
    separate = [logits(model, ids[i:i + 1], masks[i:i + 1]) for i in range(2)]
    beams = 3
    expanded = logits(model, ids.repeat_interleave(beams, dim=0),
                      masks.repeat_interleave(beams, dim=0))
    for row in range(2 * beams):
        assert torch.allclose(expanded[row], separate[row // beams][0], atol=1e-5)


def test_gradients_reach_the_adapters_only(adapted):
    _, model = adapted
    trainable = freeze_base(model)
    adapters = plora_parameters(model)
    assert trainable == sum(parameter.numel() for parameter in adapters)
    assert all(parameter.requires_grad for parameter in adapters)
    model.train()
    with image_mask(model, image_positions()):
        loss = model(token_ids()).logits.square().mean()
    loss.backward()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0
               for parameter in adapters)
    adapter_ids = {id(parameter) for parameter in adapters}
    assert all(parameter.grad is None for parameter in model.parameters()
               if id(parameter) not in adapter_ids)


def test_no_grad_and_inference_mode_give_the_same_logits(adapted):
    _, model = adapted
    ids, mask = token_ids(), image_positions()
    expected = logits(model, ids, mask)
    with torch.inference_mode(), image_mask(model, mask):
        assert torch.equal(model(ids).logits, expected)


def test_adapters_follow_the_base_dtype_and_device():
    model = build_plora_llama(dtype=torch.bfloat16)
    inject_plora(model, rank=8, alpha=8)
    randomize_b(model)
    for layer in plora_layers(model).values():
        assert layer.Plora_A.weight.dtype == layer.Plora_B.weight.dtype == torch.bfloat16
    out = logits(model, token_ids(), image_positions())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(4, 4))
    meta_model = nn.Module()
    meta_model.q_proj = meta[0]
    inject_plora(meta_model, rank=2, alpha=2)
    assert meta_model.q_proj.Plora_A.weight.device.type == "meta"
    assert meta_model.q_proj.Plora_B.weight.device.type == "meta"


class OpCounter(TorchDispatchMode):
    """Counts the aten operators run inside it, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


# Operators that read a tensor's values back to the host (or need to, to size their output).
SYNC_OPS = ("_local_scalar_dense", "item", "is_nonzero", "nonzero", "masked_select", "any",
            "all", "equal")


def test_a_masked_forward_adds_no_host_sync_in_the_layers(adapted):
    _, model = adapted
    ids = token_ids()
    set_image_mask(model, image_positions())  # one nonzero, here, outside the forward
    try:
        with torch.no_grad(), OpCounter() as masked:
            model(ids)
    finally:
        clear_image_mask(model)
    with torch.no_grad(), OpCounter() as plain:
        model(ids)
    assert masked.counts["index_select"] >= 14  # the adapters ran, in all 14 layers
    for op in SYNC_OPS:
        assert masked.counts[op] == plain.counts[op], op


def test_save_and_load_round_trip_gives_identical_outputs(adapted, tmp_path):
    _, model = adapted
    model.config._name_or_path = "tiny-plora-llama"
    folder = save_plora(model, tmp_path / "adapter")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["rank"], config["alpha"], config["dropout"]) == (8, 16, 0.05)
    assert config["target_modules"] == sorted(DEFAULT_TARGETS)
    assert config["base_model"] == "tiny-plora-llama" and config["format_version"] == 1
    from safetensors.torch import load_file

    assert set(load_file(folder / "adapter_model.safetensors")) == set(plora_state_dict(model))
    fresh = build_plora_llama()
    assert load_plora(fresh, folder) == list(plora_layers(model))
    ids, mask = token_ids(), image_positions()
    assert torch.equal(logits(fresh, ids, mask), logits(model, ids, mask))


def test_load_refuses_other_ranks_and_other_shapes(adapted, tmp_path):
    _, model = adapted
    folder = save_plora(model, tmp_path / "adapter")
    other_rank = build_plora_llama()
    inject_plora(other_rank, rank=4, alpha=16)
    with pytest.raises(ValueError, match="rank 4, alpha 16 but .* rank 8, alpha 16"):
        load_plora(other_rank, folder)
    from transformers import LlamaConfig, LlamaForCausalLM

    wider = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=96, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2))
    with pytest.raises(ValueError, match=r"has shape \(\d+, \d+\) but the model's layer needs"):
        load_plora(wider, folder)
    deeper = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                                          num_hidden_layers=3, num_attention_heads=4,
                                          num_key_value_heads=2))
    with pytest.raises(ValueError, match="14 adapter weights missing"):
        load_plora(deeper, folder)


def test_remove_restores_the_exact_base_model(adapted):
    base, model = adapted
    removed = remove_plora(model)
    assert len(removed) == 14 and not plora_layers(model)
    assert model.state_dict().keys() == base.state_dict().keys()
    ids = token_ids()
    assert torch.equal(logits(model, ids), logits(base, ids))
    with pytest.raises(ValueError, match="no PLoRA layers: call inject_plora"):
        set_image_mask(model, image_positions())


def test_the_mask_context_clears_even_after_an_error(adapted):
    _, model = adapted
    with pytest.raises(RuntimeError, match="boom"), image_mask(model, image_positions()):
        raise RuntimeError("boom")
    holder = next(iter(plora_layers(model).values())).holder
    assert holder.shape is None and holder.rows is None


def test_inject_explains_what_it_cannot_do():
    model = build_plora_llama()
    with pytest.raises(ValueError, match=r"named one of \['wqkv'\].*'down_proj'.*'q_proj'"):
        inject_plora(model, target_modules=["wqkv"])
    with pytest.raises(ValueError, match="output head or the embeddings"):
        inject_plora(model, target_modules=["q_proj", "lm_head"])
    with pytest.raises(ValueError, match="rank is 0"):
        inject_plora(model, rank=0)
    with pytest.raises(ValueError, match="dropout is 1.5"):
        inject_plora(model, dropout=1.5)
    inject_plora(model, rank=4, alpha=4)
    with pytest.raises(ValueError, match="already has PLoRA layers"):
        inject_plora(model)


def test_vision_towers_are_never_adapted():
    model = nn.Module()
    model.vision_tower = nn.Module()
    model.vision_tower.q_proj = nn.Linear(4, 4)
    model.language_model = nn.Module()
    model.language_model.q_proj = nn.Linear(4, 4)
    assert inject_plora(model, rank=2, alpha=2) == ["language_model.q_proj"]


# --- the merged inference path ---------------------------------------------------------


def mixed_masks() -> list[torch.Tensor]:
    """Batch-2 masks: blocks, scattered positions, a row all image, a row all text."""
    generator = torch.Generator().manual_seed(5)
    masks = [torch.stack([image_positions()[0], image_positions(where=slice(2, 9))[0]]),
             torch.rand(2, SEQ, generator=generator) < 0.5,
             torch.stack([torch.ones(SEQ, dtype=torch.bool), torch.zeros(SEQ, dtype=torch.bool)]),
             torch.ones(2, SEQ, dtype=torch.bool)]
    single = torch.zeros(2, SEQ, dtype=torch.bool)
    single[1, SEQ - 1] = True
    return masks + [single]


def merged_layers(model: nn.Module) -> int:
    return sum(layer._merged is not None for layer in plora_layers(model).values())


def test_the_holder_splits_text_and_image_rows_in_order():
    holder = PLoRAMask()
    mask = torch.tensor([[False, True, True, False], [True, False, False, True]])
    holder.set(mask)
    assert holder.rows.tolist() == [1, 2, 4, 7]
    assert holder.text_rows.tolist() == [0, 3, 5, 6]
    holder.set(torch.zeros(1, 3, dtype=torch.bool))
    assert holder.rows.numel() == 0 and holder.text_rows.tolist() == [0, 1, 2]
    holder.clear()
    assert holder.rows is None and holder.text_rows is None


def test_merged_path_equals_the_low_rank_path_on_mixed_masks(adapted):
    base, model = adapted
    ids = token_ids(batch=2)
    for mask in mixed_masks():
        set_plora_merge(model, False)
        low_rank = logits(model, ids, mask)
        assert merged_layers(model) == 0
        set_plora_merge(model, True)
        merged = logits(model, ids, mask)
        assert merged_layers(model) == 14
        assert torch.allclose(merged, low_rank, atol=1e-5), mask
        assert not torch.allclose(merged, logits(base, ids), atol=1e-3)  # adapters acted
        with torch.inference_mode(), image_mask(model, mask):
            assert torch.allclose(model(ids).logits, low_rank, atol=1e-5)


def test_merged_layer_output_matches_the_formula():
    torch.manual_seed(0)
    holder = PLoRAMask()
    layer = PLoRALinear(nn.Linear(6, 5), holder, rank=3, alpha=6, dropout=0.1).eval()
    nn.init.normal_(layer.Plora_B.weight)
    x = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, False, False, True], [False, True, True, False]])
    holder.set(mask)
    expected = layer.base(x) + 2.0 * layer.Plora_B(layer.Plora_A(x)) * mask[..., None]
    with torch.no_grad():
        got = layer(x)
    assert layer._merged is not None
    assert torch.allclose(got, expected, atol=1e-5)
    assert layer.merged_weight().dtype == layer.base.weight.dtype


def merged_layer(bias: bool, seed: int = 0) -> PLoRALinear:
    torch.manual_seed(seed)
    layer = PLoRALinear(nn.Linear(6, 5, bias=bias), PLoRAMask(), rank=3, alpha=6,
                        dropout=0.0).eval()
    nn.init.normal_(layer.Plora_B.weight)
    return layer


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("text", [0, 2, 4, 5, 7, 9])
def test_grouped_products_pair_text_and_image_rows(bias, text):
    layer = merged_layer(bias)
    rows = torch.randn(9, 6)
    w0 = layer.base.weight.detach().clone()
    w1 = w0 + 2.0 * layer.Plora_B.weight.detach() @ layer.Plora_A.weight.detach()
    b = layer.base.bias.detach() if bias else torch.zeros(5)
    expected = torch.cat([rows[:text] @ w0.t(), rows[text:] @ w1.t()]) + b
    with torch.no_grad():
        paired = layer._grouped_products(rows, text)
    assert torch.allclose(paired, expected, atol=1e-5)


def test_the_base_weight_lives_in_the_merged_pair_until_it_is_dropped():
    layer = merged_layer(bias=True)
    before = layer.base.weight.detach().clone()
    parameter = layer.base.weight
    with torch.no_grad():
        merged = layer.merged_weight()
    pair = layer._merged_pair()
    assert pair is not None and pair.shape == (2, 5, 6)
    assert layer.base.weight is parameter  # the same Parameter, its data moved
    assert layer.base.weight.data_ptr() == pair.data_ptr()  # W0 is not kept twice
    assert merged.data_ptr() == pair[1].data_ptr()
    assert torch.equal(layer.base.weight, before)
    assert layer.base.weight.requires_grad
    layer.drop_merged()
    assert layer._merged is None
    assert layer.base.weight is parameter and torch.equal(layer.base.weight, before)
    storage = layer.base.weight.untyped_storage()
    assert storage.nbytes() == before.numel() * before.element_size()  # W1 freed with it


def test_remove_plora_leaves_base_weights_with_their_own_storage(adapted):
    base, model = adapted
    ids, mask = token_ids(), image_positions()
    logits(model, ids, mask)
    layers = plora_layers(model)
    assert all(layer._merged_pair() is not None for layer in layers.values())
    remove_plora(model)
    for layer in layers.values():
        weight = layer.base.weight
        assert weight.untyped_storage().nbytes() == weight.numel() * weight.element_size()
    assert torch.equal(logits(model, ids), logits(base, ids))


def test_inference_tensor_base_weights_keep_their_place():
    with torch.inference_mode():
        layer = merged_layer(bias=False)
    weight = layer.base.weight
    rows = torch.randn(8, 6)
    with torch.inference_mode():
        out = layer._grouped_products(rows, 3)
    assert layer._merged_pair() is None  # W1 cached alone; two products
    assert layer.base.weight is weight and layer.base.weight.data_ptr() == weight.data_ptr()
    w1 = layer.merged_weight()
    assert torch.allclose(out, torch.cat([rows[:3] @ weight.t(), rows[3:] @ w1.t()]),
                          atol=1e-5)


def test_the_merged_weight_follows_adapter_changes(adapted, tmp_path):
    _, model = adapted
    ids, mask = token_ids(batch=2), mixed_masks()[0]

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        set_plora_merge(model, False)
        low_rank = logits(model, ids, mask)
        for layer in plora_layers(model).values():
            layer.merge = True  # keep the cache: only the weights' changes may rebuild it
        return logits(model, ids, mask), low_rank

    set_plora_merge(model, True)
    before = logits(model, ids, mask)
    layer = model.model.layers[0].self_attn.q_proj
    cached = layer.merged_weight()
    assert layer.merged_weight() is cached  # no change: the same tensor
    with torch.no_grad():  # B changed in place
        for each in plora_layers(model).values():
            each.Plora_B.weight.mul_(3.0)
    merged, low_rank = both()
    assert layer.merged_weight() is not cached
    assert torch.allclose(merged, low_rank, atol=1e-5)
    assert not torch.allclose(merged, before, atol=1e-3)
    other = build_plora_llama()  # load_plora copies other adapters into the same tensors
    inject_plora(other, rank=8, alpha=16)
    randomize_b(other, seed=7)
    load_plora(model, save_plora(other, tmp_path / "other"))
    merged, low_rank = both()
    assert torch.allclose(merged, low_rank, atol=1e-5)
    assert torch.allclose(merged, logits(other, ids, mask), atol=1e-5)
    for each in plora_layers(model).values():  # reset_adapter: B zeros, the base weights
        each.reset_adapter()
    merged, _ = both()
    assert torch.allclose(merged, logits(build_plora_llama(), ids), atol=1e-5)


def test_moving_removing_or_switching_off_drops_the_merged_weights(adapted):
    base, model = adapted
    ids, mask = token_ids(), image_positions()
    logits(model, ids, mask)
    assert merged_layers(model) == 14
    model.to(torch.float64)
    assert merged_layers(model) == 0
    assert logits(model, ids, mask).dtype == torch.float64
    layer = model.model.layers[0].mlp.down_proj
    assert layer.merged_weight().dtype == torch.float64
    layer.drop_merged()
    assert layer._merged is None
    set_plora_merge(model, False)
    assert merged_layers(model) == 0
    logits(model, ids, mask)
    assert merged_layers(model) == 0  # merge off: the low-rank path, nothing cached
    set_plora_merge(model, True)
    logits(model, ids, mask)
    layers = list(plora_layers(model).values())
    remove_plora(model)
    assert all(layer._merged is None for layer in layers)


def test_merge_off_gives_the_low_rank_path(adapted):
    _, model = adapted
    assert set_plora_merge(model, False) == 14
    assert all(not layer.merge for layer in plora_layers(model).values())
    ids, mask = token_ids(batch=2), mixed_masks()[1]
    with torch.no_grad(), image_mask(model, mask), OpCounter() as ops:
        off = model(ids).logits
    assert ops.counts["index_add_"] >= 14 and ops.counts["index_select"] == 14
    set_plora_merge(model, True)
    with torch.no_grad(), image_mask(model, mask), OpCounter() as ops:
        on = model(ids).logits
    # Each layer: gather grouped rows, put them back (index_select twice), no index_add_.
    assert ops.counts["index_select"] == 28 and ops.counts["index_add_"] == 0
    assert torch.allclose(on, off, atol=1e-5)
    fresh = build_plora_llama()
    inject_plora(fresh, rank=4, alpha=4, merge=False)
    assert all(not layer.merge for layer in plora_layers(fresh).values())


def test_training_and_grad_enabled_forwards_never_merge(adapted):
    _, model = adapted
    freeze_base(model)
    ids, mask = token_ids(batch=2), mixed_masks()[0]
    with torch.no_grad(), image_mask(model, mask):
        expected = model(ids).logits
    model.train()  # train mode, gradients off: dropout acts, so no merge
    with torch.no_grad(), image_mask(model, mask):
        model(ids)
    model.eval()
    set_plora_merge(model, True)  # drop what the eval forward cached
    with image_mask(model, mask):  # eval mode, gradients on: the low-rank path
        out = model(ids).logits
    assert merged_layers(model) == 0
    assert torch.allclose(out, expected, atol=1e-5)
    out.square().mean().backward()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0
               for parameter in plora_parameters(model))
    model.train()
    with image_mask(model, mask):
        model(ids).logits.square().mean().backward()
    assert merged_layers(model) == 0


def test_text_only_stays_the_base_model_bit_for_bit_with_merging(adapted):
    base, model = adapted
    ids = token_ids(batch=2)
    expected = logits(base, ids)
    logits(model, ids, mixed_masks()[0])  # merged weights built
    assert merged_layers(model) == 14
    assert torch.equal(logits(model, ids), expected)
    assert torch.equal(logits(model, ids, torch.zeros(2, SEQ, dtype=torch.bool)), expected)
    with torch.no_grad():  # a decode step with an all-false [batch, 1] mask: the base path
        cache = base(ids, use_cache=True).cache
        step = base(ids[:, -1:], cache=cache, use_cache=True).logits
        cache = model(ids, use_cache=True).cache
        with image_mask(model, torch.zeros(2, 1, dtype=torch.bool)), OpCounter() as ops:
            got = model(ids[:, -1:], cache=cache, use_cache=True).logits
    assert torch.equal(got, step)
    assert ops.counts["index_select"] == ops.counts["index_add_"] == 0


def test_weights_made_in_inference_mode_still_merge():
    with torch.inference_mode():
        holder = PLoRAMask()
        layer = PLoRALinear(nn.Linear(6, 5), holder, rank=3, alpha=3, dropout=0.0).eval()
        nn.init.normal_(layer.Plora_B.weight)
        x = torch.randn(1, 4, 6)
        holder.set(torch.tensor([[False, True, True, False]]))
        got = layer(x)
        layer.merge = False
        expected = layer(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert layer._merge_key()[0][1] is None  # no version counter: data_ptr only
