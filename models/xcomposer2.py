"""Convert an InternLM-XComposer2 checkpoint into this project's Llama + PLoRA + vision parts.

The public internlm-xcomposer2-7b / -vl-7b weights need `trust_remote_code` (their InternLM2
modeling file). Their language model is a Llama in all but key names and one fused matrix,
so the conversion is exact up to float rounding and the weights then run on the stock
`LlamaForCausalLM` with `models.plora` adapters:

    XComposer2 key (per block i: model.layers.{i}.)      ->  Llama key
    model.tok_embeddings.weight                          ->  model.embed_tokens.weight
    attention.wqkv.weight (fused, see below)             ->  self_attn.{q,k,v}_proj.weight
    attention.wo.weight                                  ->  self_attn.o_proj.weight
    feed_forward.w1 / w3 / w2                            ->  mlp.gate_proj / up_proj / down_proj
    attention_norm.weight / ffn_norm.weight              ->  input_ / post_attention_layernorm
    model.norm.weight, output.weight                     ->  model.norm.weight, lm_head.weight
    <layer>.Plora_A.weight / Plora_B.weight              ->  adapter of the same Llama layer
    vit.vision_tower.<CLIPVisionModel key>               ->  vision tower (CLIPVisionModel)
    vision_proj.0.* / vision_proj.2.*                    ->  Projector 0.* / 2.*

wqkv is fused in grouped-query order: its rows are [num_kv_heads, q_per_kv + 2, head_dim]
(each key/value group holds its q_per_kv query heads, then one key head, then one value
head; InternLM2 reads it with rearrange "(h gs d) -> h gs d"). Query head g * q_per_kv + j
is slot j of group g, key / value head g slots q_per_kv / q_per_kv + 1: exactly Llama's
head order for q_proj / k_proj / v_proj with repeat_kv. InternLM2 applies rotary embedding
the same way as Llama (rotate_half on the two halves of each head), so no row permutation
is needed beyond this split. Plora_B rows are split the same way; Plora_A (input side) is
shared by q, k and v, so each of the three gets a copy. The update on an image token is
then B_q A x, B_k A x, B_v A x: the rows of B A x, so the split is exact.

XComposer2 hard-codes PLoRA rank 256, alpha 256 (scale 1), dropout 0.05 in its modeling file
(they are not in config.json); `convert_xcomposer2` reads the rank from the Plora_A shapes and
takes alpha from `lora_alpha` / `lora_cfg` in the config when present, else alpha = rank
(XComposer2's scale alpha / rank = 1).

Not converted (reported in `Converted.skipped`): the HD variants' `plora_glb_GN` /
`plora_sub_GN` separator embeddings (the 4KHD image layout is not this project's tiling),
CLIP's saved `position_ids` buffer and any saved rotary `inv_freq` buffer. The tokenizer
(InternLM2's sentencepiece tokenizer, also remote code) is not converted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.plora import inject_plora
from models.plora_io import plora_state_dict, save_plora
from models.vision import Projector

XCOMPOSER2_RANK = 256
XCOMPOSER2_ALPHA = 256
XCOMPOSER2_DROPOUT = 0.05
VISION_PREFIX = "vit.vision_tower."
PROJECTOR_PREFIX = "vision_proj."
HD_KEYS = ("plora_glb_GN", "plora_sub_GN")
# Per-block XComposer2 linear layers -> Llama module path under model.layers.{i}.
LINEAR_MAP = {
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w3": "mlp.up_proj",
    "feed_forward.w2": "mlp.down_proj",
}
NORM_MAP = {"attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
PROJECTOR_KEYS = ("0.weight", "0.bias", "2.weight", "2.bias")
LLM_FOLDER, PLORA_FOLDER, VISION_FOLDER = "llm", "plora", "vision_tower"
PROJECTOR_FILE = "projector.safetensors"
RAW_VISION_FILE = "vision_tower.safetensors"


@dataclass
class Converted:
    """The pieces of a converted XComposer2 checkpoint (all tensors on the CPU as given)."""

    llama_config: Any  # transformers.LlamaConfig
    llama_state: dict[str, torch.Tensor]  # LlamaForCausalLM keys, no adapters
    plora_state: dict[str, torch.Tensor]  # plora_state_dict keys of the injected Llama
    plora_rank: int
    plora_alpha: float
    plora_dropout: float
    projector_state: dict[str, torch.Tensor]  # Projector keys 0.* / 2.* (empty: none)
    vision_state: dict[str, torch.Tensor]  # CLIPVisionModel keys (empty: none)
    vision_config: Any = None  # transformers.CLIPVisionConfig, when one was given
    skipped: list[str] = field(default_factory=list)  # source keys deliberately not used

    def summary(self) -> str:
        """A few lines for a command line: sizes of each piece and what was skipped."""
        config = self.llama_config
        lines = [
            (f"language model: Llama, {config.num_hidden_layers} layers, hidden "
             f"{config.hidden_size}, {config.num_attention_heads} heads / "
             f"{config.num_key_value_heads} key-value heads, vocab {config.vocab_size}"),
            (f"PLoRA: {len(self.plora_state) // 2} adapted layers, rank {self.plora_rank}, "
             f"alpha {self.plora_alpha:g}"),
        ]
        if self.projector_state:
            weight = self.projector_state["0.weight"]
            lines.append(f"projector: {weight.shape[1]} -> {weight.shape[0]} -> "
                         f"{self.projector_state['2.weight'].shape[0]}")
        else:
            lines.append("projector: none in the checkpoint")
        if self.vision_state:
            how = "CLIPVisionModel" if self.vision_config is not None else \
                "raw tensors (no vision config given)"
            lines.append(f"vision tower: {len(self.vision_state)} tensors, {how}")
        else:
            lines.append("vision tower: none in the checkpoint")
        if self.skipped:
            lines.append(f"skipped: {', '.join(self.skipped)}")
        return "\n".join(lines)


# --- the conversion ----------------------------------------------------------------------


def llama_config_from(config: dict) -> Any:
    """The LlamaConfig equivalent to an InternLM2 / XComposer2 config.json dict."""
    from transformers import LlamaConfig

    needed = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
              "vocab_size")
    missing = [name for name in needed if name not in config]
    if missing:
        raise ValueError(f"the XComposer2 config lacks {missing}: give the checkpoint's "
                         "config.json")
    if config.get("bias"):
        raise ValueError("the config has bias=true (biases on wqkv / wo); XComposer2 has none "
                         "and this converter does not map them")
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported; InternLM2 "
                         "uses silu")
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    if config["hidden_size"] % heads or heads % kv_heads:
        raise ValueError(f"hidden_size {config['hidden_size']}, num_attention_heads {heads}, "
                         f"num_key_value_heads {kv_heads} do not divide evenly")
    options = {}
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if name in config:
            options[name] = config[name]
    return LlamaConfig(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"], num_attention_heads=heads,
        num_key_value_heads=kv_heads, num_hidden_layers=config["num_hidden_layers"],
        head_dim=config["hidden_size"] // heads, hidden_act="silu",
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        rope_scaling=_rope_scaling(config.get("rope_scaling")),
        max_position_embeddings=config.get("max_position_embeddings", 2048),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        attention_bias=False, mlp_bias=False, **options)


def _rope_scaling(scaling: dict | None) -> dict | None:
    """InternLM2's rope_scaling {"type": "dynamic" | "linear", "factor": f} in Llama's form."""
    if not scaling:
        return None
    kind = scaling.get("type", scaling.get("rope_type"))
    if kind not in ("dynamic", "linear") or "factor" not in scaling:
        raise ValueError(f"rope_scaling {scaling!r} is not supported: InternLM2 uses "
                         "{'type': 'dynamic' or 'linear', 'factor': f}")
    return {"rope_type": kind, "factor": float(scaling["factor"])}


def split_wqkv(weight: torch.Tensor, num_heads: int, num_kv_heads: int,
               head_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of a fused wqkv weight (or Plora_B) -> (q, k, v) rows in Llama head order.

    The fused rows are [num_kv_heads, q_per_kv + 2, head_dim]: per group its query heads,
    one key head, one value head. Works on any tensor whose first dimension is the rows.
    """
    groups = num_heads // num_kv_heads
    rows = num_kv_heads * (groups + 2) * head_dim
    if weight.shape[0] != rows:
        raise ValueError(f"wqkv has {weight.shape[0]} rows; {num_heads} query heads and "
                         f"{num_kv_heads} key/value heads of {head_dim} need {rows}")
    fused = weight.reshape(num_kv_heads, groups + 2, head_dim, *weight.shape[1:])
    rest = weight.shape[1:]
    q = fused[:, :groups].reshape(num_heads * head_dim, *rest)
    k = fused[:, groups].reshape(num_kv_heads * head_dim, *rest)
    v = fused[:, groups + 1].reshape(num_kv_heads * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def convert_xcomposer2(state_dict: dict[str, torch.Tensor], config: dict, *,
                       vision_config: Any = None) -> Converted:
    """Map an XComposer2 state dict (+ its config.json dict) to Llama + PLoRA + vision parts.

    `vision_config` (a CLIPVisionConfig or its dict), when given, describes the
    `vit.vision_tower.*` weights (XComposer2 uses openai/clip-vit-large-patch14-336 with
    its positions interpolated to 224 px: image_size 224). Raises ValueError naming missing
    and unexpected keys; every source key must be used or knowingly skipped.
    """
    llama_config = llama_config_from(config)
    layers = llama_config.num_hidden_layers
    heads, kv_heads = llama_config.num_attention_heads, llama_config.num_key_value_heads
    head_dim = llama_config.hidden_size // heads
    source = dict(state_dict)
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        used.add(key)
        return source[key]

    expected = _expected_keys(layers)
    missing = [key for key in expected if key not in source]
    if missing:
        raise ValueError(f"the XComposer2 checkpoint lacks {len(missing)} keys, e.g. "
                         f"{missing[:5]}: is it an InternLM-XComposer2 (InternLM2 + PLoRA) "
                         f"checkpoint with {layers} layers?")
    llama: dict[str, torch.Tensor] = {}
    adapters: dict[str, torch.Tensor] = {}
    llama["model.embed_tokens.weight"] = take("model.tok_embeddings.weight")
    llama["model.norm.weight"] = take("model.norm.weight")
    llama["lm_head.weight"] = take("output.weight")
    ranks = set()
    for i in range(layers):
        src, dst = f"model.layers.{i}.", f"model.layers.{i}."
        for old, new in NORM_MAP.items():
            llama[f"{dst}{new}.weight"] = take(f"{src}{old}.weight")
        wqkv = f"{src}attention.wqkv"
        shared_a = take(f"{wqkv}.Plora_A.weight")
        ranks.add(shared_a.shape[0])
        parts = zip(split_wqkv(take(f"{wqkv}.weight"), heads, kv_heads, head_dim),
                    split_wqkv(take(f"{wqkv}.Plora_B.weight"), heads, kv_heads, head_dim),
                    strict=True)
        for name, (base, b) in zip(("q_proj", "k_proj", "v_proj"), parts, strict=True):
            llama[f"{dst}self_attn.{name}.weight"] = base
            adapters[f"{dst}self_attn.{name}.Plora_A.weight"] = shared_a.clone()
            adapters[f"{dst}self_attn.{name}.Plora_B.weight"] = b
        for old, new in LINEAR_MAP.items():
            llama[f"{dst}{new}.weight"] = take(f"{src}{old}.weight")
            a = take(f"{src}{old}.Plora_A.weight")
            ranks.add(a.shape[0])
            adapters[f"{dst}{new}.Plora_A.weight"] = a
            adapters[f"{dst}{new}.Plora_B.weight"] = take(f"{src}{old}.Plora_B.weight")
    if len(ranks) != 1:
        raise ValueError(f"the Plora_A weights have different ranks {sorted(ranks)}; one "
                         "rank is needed for all layers")

    projector = {}
    if any(key.startswith(PROJECTOR_PREFIX) for key in source):
        absent = [PROJECTOR_PREFIX + key for key in PROJECTOR_KEYS
                  if PROJECTOR_PREFIX + key not in source]
        if absent:
            raise ValueError(f"the checkpoint's vision_proj lacks {absent}: XComposer2's "
                             "projector is Linear, GELU, Linear (keys vision_proj.0.* / .2.*)")
        projector = {key: take(PROJECTOR_PREFIX + key) for key in PROJECTOR_KEYS}
    vision, skipped = {}, []
    for key, value in source.items():
        if key.startswith(VISION_PREFIX):
            used.add(key)
            if key.endswith("embeddings.position_ids"):
                skipped.append(key)
            else:
                vision[key.removeprefix(VISION_PREFIX)] = value
        elif key in HD_KEYS or key.endswith("rotary_emb.inv_freq"):
            used.add(key)  # inv_freq: a buffer some exports save, recomputed by Llama
            skipped.append(key)
    unexpected = sorted(set(source) - used)
    if unexpected:
        raise ValueError(f"the XComposer2 checkpoint has {len(unexpected)} keys this converter "
                         f"does not know, e.g. {unexpected[:5]}: a different architecture or "
                         "layer count than the config says?")
    if vision_config is not None and not hasattr(vision_config, "to_dict"):
        from transformers import CLIPVisionConfig

        vision_config = CLIPVisionConfig(**vision_config)
    rank = ranks.pop()
    return Converted(llama_config=llama_config, llama_state=llama, plora_state=adapters,
                     plora_rank=rank, plora_alpha=_lora_alpha(config, rank),
                     plora_dropout=XCOMPOSER2_DROPOUT, projector_state=projector,
                     vision_state=vision, vision_config=vision_config if vision else None,
                     skipped=skipped)


def _expected_keys(layers: int) -> list[str]:
    keys = ["model.tok_embeddings.weight", "model.norm.weight", "output.weight"]
    for i in range(layers):
        src = f"model.layers.{i}."
        keys += [f"{src}{norm}.weight" for norm in NORM_MAP]
        for layer in ("attention.wqkv", *LINEAR_MAP):
            keys += [f"{src}{layer}.{part}" for part in
                     ("weight", "Plora_A.weight", "Plora_B.weight")]
    return keys


def _lora_alpha(config: dict, rank: int) -> float:
    """lora_alpha from the config (top level or lora_cfg), else the rank: XComposer2 has
    alpha = rank = 256, scale 1 (a smaller test checkpoint keeps that scale)."""
    lora = config.get("lora_cfg") or {}
    alpha = config.get("lora_alpha", lora.get("lora_alpha", lora.get("alpha")))
    return float(alpha) if alpha is not None else float(rank)


# --- building the models -----------------------------------------------------------------


def load_converted(converted: Converted, *, dtype: torch.dtype | None = None):
    """(LlamaForCausalLM with PLoRA injected and loaded, Projector or None, tower or None).

    The model is in eval mode; `dtype` None keeps the tensors' dtype. The tower is a
    VisionTower around a CLIPVisionModel, built only when a vision config was given.
    """
    from transformers import LlamaForCausalLM

    dtype = dtype or converted.llama_state["model.embed_tokens.weight"].dtype
    with torch.device("meta"):
        model = LlamaForCausalLM(converted.llama_config)
    model.load_state_dict(converted.llama_state, strict=True, assign=True)
    model = model.to(dtype).eval()
    _fix_rotary(model)
    inject_plora(model, rank=converted.plora_rank, alpha=converted.plora_alpha,
                 dropout=converted.plora_dropout)
    target = plora_state_dict(model)
    missing = sorted(set(target) - set(converted.plora_state))
    unexpected = sorted(set(converted.plora_state) - set(target))
    if missing or unexpected:
        raise ValueError(f"the adapter weights do not fit the model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    with torch.no_grad():
        for key, value in converted.plora_state.items():
            target[key].copy_(value.to(dtype))
    projector = None
    if converted.projector_state:
        weight = converted.projector_state["0.weight"]
        projector = Projector(int(weight.shape[1]), int(weight.shape[0]), dtype=dtype)
        projector.load_state_dict(converted.projector_state, strict=True)
        projector.eval()
    tower = None
    if converted.vision_state and converted.vision_config is not None:
        tower = _build_tower(converted.vision_state, converted.vision_config, dtype)
    return model, projector, tower


def _fix_rotary(model) -> None:
    """Rebuild the rotary embedding on the CPU in float32: a meta-device build leaves its
    inv_freq buffers uninitialised."""
    rotary = model.model.rotary_emb
    model.model.rotary_emb = type(rotary)(model.config)


def _build_tower(state: dict[str, torch.Tensor], config: Any, dtype: torch.dtype):
    from transformers import CLIPVisionModel

    from models.vision_tower import VisionTower

    model = CLIPVisionModel(config)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"the vision tower weights do not fit the vision config: missing "
                         f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}")
    return VisionTower(model.to(dtype), name="xcomposer2-vit")


# --- checkpoint folders ------------------------------------------------------------------


def read_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, config dict) of a checkpoint folder: config.json plus
    model.safetensors(.index.json) or pytorch_model.bin(.index.json) shards."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist: give the XComposer2 "
                                "checkpoint folder")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
            break
    else:
        files = [name for name in ("model.safetensors", "pytorch_model.bin")
                 if (folder / name).is_file()][:1]
        if not files:
            raise FileNotFoundError(f"{folder} holds no model.safetensors(.index.json) or "
                                    "pytorch_model.bin(.index.json)")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"shard {path} named by the index does not exist")
        state.update(_read_shard(path))
    return state, config


def _read_shard(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def convert_folder(src: str | Path, dst: str | Path, *, vision_config: Any = None,
                   dtype: torch.dtype | None = None) -> Converted:
    """Convert the checkpoint folder `src` and write the pieces under `dst`:

    llm/ (a Hugging Face Llama folder, save_pretrained), plora/ (save_plora),
    projector.safetensors (Projector keys), and vision_tower/ (CLIPVisionModel
    save_pretrained) when a vision config is given, else vision_tower.safetensors (raw
    CLIPVisionModel keys). Returns the Converted pieces (`.summary()` describes them).
    """
    from safetensors.torch import save_file

    state, config = read_checkpoint(src)
    converted = convert_xcomposer2(state, config, vision_config=vision_config)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    model, projector, tower = load_converted(converted, dtype=dtype)
    save_plora(model, dst / PLORA_FOLDER)
    from models.plora import remove_plora

    remove_plora(model)
    model.save_pretrained(dst / LLM_FOLDER)
    if projector is not None:
        save_file({key: value.contiguous() for key, value in projector.state_dict().items()},
                  str(dst / PROJECTOR_FILE), metadata={"format": "pt"})
    if tower is not None:
        tower.model.save_pretrained(dst / VISION_FOLDER)
    elif converted.vision_state:
        save_file({key: value.contiguous() for key, value in converted.vision_state.items()},
                  str(dst / RAW_VISION_FILE), metadata={"format": "pt"})
    return converted


def load_folder(folder: str | Path, *, dtype: torch.dtype | None = None):
    """Load what convert_folder wrote: (Llama + PLoRA, Projector or None, tower or None)."""
    from safetensors.torch import load_file
    from transformers import CLIPVisionModel, LlamaForCausalLM

    from models.plora_io import load_plora
    from models.vision_tower import VisionTower

    folder = Path(folder)
    options = {"dtype": dtype} if dtype is not None else {}
    model = LlamaForCausalLM.from_pretrained(folder / LLM_FOLDER, **options).eval()
    load_plora(model, folder / PLORA_FOLDER)
    projector = None
    if (folder / PROJECTOR_FILE).is_file():
        state = load_file(str(folder / PROJECTOR_FILE))
        weight = state["0.weight"]
        projector = Projector(int(weight.shape[1]), int(weight.shape[0]), dtype=weight.dtype)
        projector.load_state_dict(state, strict=True)
        projector.eval()
    tower = None
    if (folder / VISION_FOLDER).is_dir():
        tower = VisionTower(CLIPVisionModel.from_pretrained(folder / VISION_FOLDER, **options),
                            name="xcomposer2-vit")
    return model, projector, tower


def main(argv: list[str] | None = None) -> int:
    """python -m models.xcomposer2 SRC DST [--vision-config clip_config.json]"""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--vision-config", help="CLIPVisionConfig json for vit.vision_tower")
    args = parser.parse_args(argv)
    vision = None
    if args.vision_config:
        vision = json.loads(Path(args.vision_config).read_text(encoding="utf-8"))
        vision = vision.get("vision_config", vision)
    converted = convert_folder(args.src, args.dst, vision_config=vision)
    print(converted.summary())
    print(f"written to {args.dst}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
