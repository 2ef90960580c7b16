"""models/xcomposer2.py: InternLM-XComposer2 checkpoint -> Llama + PLoRA + vision parts.

No real checkpoint is reachable in tests, so tiny random ones are written with the public
key names and shapes (tests/tiny_models.py), and the converted model is checked against a
direct forward of InternLM2 + PLoRA written here in plain torch from the *source* tensors
(fused wqkv read the way the public modeling file reads it: "(h gs d) -> h gs d").
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from models.plora import image_mask, plora_layers
from models.xcomposer2 import (
    convert_folder,
    convert_xcomposer2,
    llama_config_from,
    load_converted,
    load_folder,
    main,
    read_checkpoint,
    split_wqkv,
)
from tests.tiny_models import (
    XCOMPOSER2_TINY_CONFIG,
    XCOMPOSER2_TINY_VISION,
    build_xcomposer2_state,
    write_xcomposer2_folder,
)

CONFIG = XCOMPOSER2_TINY_CONFIG
SEQ = 14
IMAGE = slice(3, 9)  # image-token span; text before and after


# --- a direct reference forward of InternLM2 + PLoRA ------------------------------------


def plora_linear(state, name, x, mask, scale=1.0):
    """XComposer2's PLoRA: W x everywhere, + scale * B A x at the image positions."""
    out = x @ state[f"{name}.weight"].T
    if mask is not None:
        update = (x @ state[f"{name}.Plora_A.weight"].T) @ state[f"{name}.Plora_B.weight"].T
        out = out + scale * update * mask[..., None].to(out.dtype)
    return out


def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def reference_logits(state, config, embeds, mask=None, scale=1.0):
    """InternLM2 + PLoRA on inputs_embeds [batch, seq, hidden] (mask: bool [batch, seq])."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config["num_key_value_heads"]
    head_dim, groups = hidden // heads, heads // kv_heads
    eps = config["rms_norm_eps"]
    batch, seq, _ = embeds.shape
    inv_freq = 1.0 / config["rope_theta"] ** (torch.arange(0, head_dim, 2).float() / head_dim)
    freqs = torch.outer(torch.arange(seq).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.full((seq, seq), float("-inf")).triu(1)
    h = embeds
    for i in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{i}."
        x = rms_norm(h, state[f"{prefix}attention_norm.weight"], eps)
        qkv = plora_linear(state, f"{prefix}attention.wqkv", x, mask, scale)
        qkv = qkv.view(batch, seq, kv_heads, groups + 2, head_dim)
        q = qkv[..., :groups, :].reshape(batch, seq, heads, head_dim).transpose(1, 2)
        k = qkv[..., -2, :].transpose(1, 2)
        v = qkv[..., -1, :].transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + causal
        attn = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, hidden)
        h = h + plora_linear(state, f"{prefix}attention.wo", attn, mask, scale)
        x = rms_norm(h, state[f"{prefix}ffn_norm.weight"], eps)
        gate = plora_linear(state, f"{prefix}feed_forward.w1", x, mask, scale)
        up = plora_linear(state, f"{prefix}feed_forward.w3", x, mask, scale)
        h = h + plora_linear(state, f"{prefix}feed_forward.w2", F.silu(gate) * up, mask, scale)
    h = rms_norm(h, state["model.norm.weight"], eps)
    return h @ state["output.weight"].T


def reference_projector(state, features):
    x = features @ state["vision_proj.0.weight"].T + state["vision_proj.0.bias"]
    return F.gelu(x) @ state["vision_proj.2.weight"].T + state["vision_proj.2.bias"]


# --- helpers --------------------------------------------------------------------------------


def inputs(batch=2, seed=3):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, CONFIG["vocab_size"], (batch, SEQ), generator=generator)
    mask = torch.zeros(batch, SEQ, dtype=torch.bool)
    mask[:, IMAGE] = True
    return ids, mask


def embed(state, ids):
    return state["model.tok_embeddings.weight"][ids]


def converted_logits(model, embeds, mask):
    with torch.no_grad(), image_mask(model, mask):
        return model(inputs_embeds=embeds).logits


@pytest.fixture(scope="module")
def state():
    return build_xcomposer2_state()


@pytest.fixture(scope="module")
def loaded(state):
    converted = convert_xcomposer2(state, CONFIG, vision_config=XCOMPOSER2_TINY_VISION)
    return converted, *load_converted(converted)


# --- tests ----------------------------------------------------------------------------------


def test_reference_image_update_is_visible(state):
    """The random adapters really change image positions (else the checks prove little)."""
    ids, mask = inputs()
    embeds = embed(state, ids)
    with_mask = reference_logits(state, CONFIG, embeds, mask)
    text = reference_logits(state, CONFIG, embeds)
    assert (with_mask - text)[:, IMAGE].abs().max() > 0.1
    # causal: before the image, bit for bit: the reference runs the same products on all rows
    # either way and adds update * 0.0 at text rows, which changes no float
    assert torch.equal(with_mask[:, :IMAGE.start], text[:, :IMAGE.start])


def test_converted_model_matches_reference_with_image_span(state, loaded):
    _, model, _, _ = loaded
    ids, mask = inputs()
    embeds = embed(state, ids)
    expected = reference_logits(state, CONFIG, embeds, mask)
    got = converted_logits(model, embeds, mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_converted_model_matches_reference_text_only(state, loaded):
    _, model, _, _ = loaded
    ids, _ = inputs()
    expected = reference_logits(state, CONFIG, embed(state, ids))
    with torch.no_grad():
        got = model(ids).logits  # input ids through the converted embeddings
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    all_false = torch.zeros(ids.shape, dtype=torch.bool)
    assert torch.equal(converted_logits(model, embed(state, ids), all_false),
                       converted_logits(model, embed(state, ids), None))


def test_converted_model_uses_the_adapter_scale(state):
    config = dict(CONFIG, lora_cfg={"lora_alpha": 32})  # rank 16: scale 2
    converted = convert_xcomposer2(state, config)
    assert (converted.plora_rank, converted.plora_alpha) == (16, 32.0)
    model, _, _ = load_converted(converted)
    ids, mask = inputs(batch=1)
    embeds = embed(state, ids)
    torch.testing.assert_close(converted_logits(model, embeds, mask),
                               reference_logits(state, CONFIG, embeds, mask, scale=2.0),
                               atol=1e-5, rtol=1e-5)


def test_config_and_pieces(loaded):
    converted, model, projector, tower = loaded
    config = converted.llama_config
    assert (config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
            config.head_dim, config.intermediate_size) == (64, 8, 2, 8, 128)
    assert config.tie_word_embeddings is False
    assert (config.bos_token_id, config.eos_token_id) == (1, 2)
    assert len(plora_layers(model)) == 2 * 7
    assert converted.plora_rank == 16 and converted.plora_alpha == 16.0  # scale 1
    assert projector is not None and tower is not None
    assert tower.hidden_size == XCOMPOSER2_TINY_VISION["hidden_size"]
    summary = converted.summary()
    assert "rank 16" in summary and "projector: 32 -> 64 -> 64" in summary


def test_rope_scaling_maps_to_llama():
    config = llama_config_from(dict(CONFIG, rope_theta=1e6,
                                    rope_scaling={"type": "dynamic", "factor": 2.0}))
    assert config.rope_parameters["rope_type"] == "dynamic"
    assert config.rope_parameters["factor"] == 2.0
    assert config.rope_parameters["rope_theta"] == 1e6
    with pytest.raises(ValueError, match="rope_scaling"):
        llama_config_from(dict(CONFIG, rope_scaling={"type": "yarn", "factor": 2.0}))
    with pytest.raises(ValueError, match="bias"):
        llama_config_from(dict(CONFIG, bias=True))


def test_wqkv_split_follows_the_group_order():
    """Each fused row encodes its (group, slot, dim); q/k/v rows land in Llama head order."""
    heads, kv_heads, head_dim = 8, 2, 8
    groups = heads // kv_heads
    rows = [[g, s, d] for g in range(kv_heads) for s in range(groups + 2)
            for d in range(head_dim)]
    fused = torch.tensor(rows, dtype=torch.float32)  # [rows, 3]: columns = group, slot, dim
    q, k, v = split_wqkv(fused, heads, kv_heads, head_dim)
    assert q.shape == (heads * head_dim, 3) and k.shape == v.shape == (kv_heads * head_dim, 3)
    for head in range(heads):
        for d in range(head_dim):
            assert q[head * head_dim + d].tolist() == [head // groups, head % groups, d]
    for head in range(kv_heads):
        for d in range(head_dim):
            assert k[head * head_dim + d].tolist() == [head, groups, d]
            assert v[head * head_dim + d].tolist() == [head, groups + 1, d]
    with pytest.raises(ValueError, match="rows"):
        split_wqkv(fused[:-1], heads, kv_heads, head_dim)


def test_plora_a_is_shared_and_b_split(state, loaded):
    converted, *_ = loaded
    a = state["model.layers.1.attention.wqkv.Plora_A.weight"]
    q_b, k_b, v_b = split_wqkv(state["model.layers.1.attention.wqkv.Plora_B.weight"], 8, 2, 8)
    prefix = "model.layers.1.self_attn."
    for name, b in (("q_proj", q_b), ("k_proj", k_b), ("v_proj", v_b)):
        assert torch.equal(converted.plora_state[f"{prefix}{name}.Plora_A.weight"], a)
        assert torch.equal(converted.plora_state[f"{prefix}{name}.Plora_B.weight"], b)
    assert torch.equal(converted.plora_state["model.layers.1.mlp.gate_proj.Plora_B.weight"],
                       state["model.layers.1.feed_forward.w1.Plora_B.weight"])


def test_projector_matches_vision_proj(state, loaded):
    _, _, projector, _ = loaded
    features = torch.randn(2, 4, XCOMPOSER2_TINY_VISION["hidden_size"],
                           generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = projector(features)
    torch.testing.assert_close(got, reference_projector(state, features), atol=1e-6, rtol=1e-6)


def test_vision_tower_weights_carried_over(state, loaded):
    _, _, _, tower = loaded
    weights = tower.model.state_dict()
    for key, value in weights.items():
        assert torch.equal(value, state[f"vit.vision_tower.{key}"]), key
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert tower(pixels).shape == (1, 4, XCOMPOSER2_TINY_VISION["hidden_size"])


def test_missing_keys_are_named(state):
    broken = dict(state)
    del broken["model.layers.1.attention.wqkv.Plora_B.weight"]
    del broken["output.weight"]
    with pytest.raises(ValueError, match=r"lacks 2 keys.*output\.weight"):
        convert_xcomposer2(broken, CONFIG)
    no_bias = {k: v for k, v in state.items() if k != "vision_proj.2.bias"}
    with pytest.raises(ValueError, match=r"vision_proj\.2\.bias"):
        convert_xcomposer2(no_bias, CONFIG)


def test_unexpected_keys_are_named(state):
    extra = dict(state, **{"model.layers.2.attention.wo.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"does not know.*model\.layers\.2\.attention\.wo"):
        convert_xcomposer2(extra, CONFIG)
    with pytest.raises(ValueError, match="lacks"):
        convert_xcomposer2(state, dict(CONFIG, num_hidden_layers=3))


def test_hd_separators_and_position_ids_are_skipped():
    state = build_xcomposer2_state(vision=True, hd=True)
    state["vit.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(5)[None]
    state["model.layers.0.attention.rotary_emb.inv_freq"] = torch.ones(4)
    converted = convert_xcomposer2(state, CONFIG)
    assert set(converted.skipped) == {"plora_glb_GN", "plora_sub_GN",
                                      "vit.vision_tower.vision_model.embeddings.position_ids",
                                      "model.layers.0.attention.rotary_emb.inv_freq"}
    assert converted.vision_config is None and converted.vision_state
    _, _, tower = load_converted(converted)
    assert tower is None  # no vision config: the tower's raw tensors only


def test_text_only_checkpoint_without_vision():
    state = build_xcomposer2_state(vision=False)
    converted = convert_xcomposer2(state, CONFIG)
    model, projector, tower = load_converted(converted)
    assert projector is None and tower is None
    ids, mask = inputs(batch=1)
    embeds = embed(state, ids)
    torch.testing.assert_close(converted_logits(model, embeds, mask),
                               reference_logits(state, CONFIG, embeds, mask),
                               atol=1e-5, rtol=1e-5)


def test_folder_round_trip(state, tmp_path, capsys):
    src = write_xcomposer2_folder(tmp_path / "xc2", state)
    index = json.loads((src / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 2
    read, config = read_checkpoint(src)
    assert set(read) == set(state) and config == CONFIG
    (tmp_path / "clip.json").write_text(json.dumps(XCOMPOSER2_TINY_VISION))
    assert main([str(src), str(tmp_path / "out"), "--vision-config",
                 str(tmp_path / "clip.json")]) == 0
    printed = capsys.readouterr().out
    assert "PLoRA: 14 adapted layers, rank 16" in printed and "CLIPVisionModel" in printed
    for name in ("llm/config.json", "plora/adapter_config.json", "projector.safetensors",
                 "vision_tower/config.json"):
        assert (tmp_path / "out" / name).is_file(), name
    model, projector, tower = load_folder(tmp_path / "out")
    ids, mask = inputs()
    embeds = embed(state, ids)
    torch.testing.assert_close(converted_logits(model, embeds, mask),
                               reference_logits(state, CONFIG, embeds, mask),
                               atol=1e-5, rtol=1e-5)
    features = torch.randn(1, 4, 32)
    with torch.no_grad():
        torch.testing.assert_close(projector(features), reference_projector(state, features))
    assert tower is not None and tower.hidden_size == 32


def test_folder_without_vision_config_writes_raw_tower(state, tmp_path):
    src = write_xcomposer2_folder(tmp_path / "xc2", state)
    converted = convert_folder(src, tmp_path / "out")
    assert (tmp_path / "out" / "vision_tower.safetensors").is_file()
    assert not (tmp_path / "out" / "vision_tower").exists()
    assert "raw tensors" in converted.summary()
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_checkpoint(tmp_path / "nowhere")


def test_bfloat16_load_keeps_float32_rotary(state):
    converted = convert_xcomposer2(state, CONFIG)
    model, _, _ = load_converted(converted, dtype=torch.bfloat16)
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32
    layer = plora_layers(model)["model.layers.0.self_attn.q_proj"]
    assert layer.Plora_B.weight.dtype == torch.bfloat16
    ids, mask = inputs(batch=1)
    embeds = embed(state, ids)
    got = converted_logits(model, embeds.bfloat16(), mask).float()
    expected = reference_logits(state, CONFIG, embeds, mask)
    assert (got - expected).abs().max() < 0.1 * expected.abs().max()
