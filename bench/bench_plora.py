"""Benchmark Partial LoRA (models/plora.py) on a model the size of the embedded writer.

    .venv/bin/python bench/bench_plora.py [--runs 15] [--seq 512] [--new-tokens 64]
                                          [--threads 2] [--out bench/results/plora.json]
                                          [--no-sweep]

The model is a randomly initialised LlamaForCausalLM with SmolLM2-135M's shape (hidden 576,
intermediate 1536, 30 layers, 9 heads, 3 key/value heads, vocab 49152), float32 on the CPU,
with rank-256 adapters (alpha 256) on all 7 projections of every block (210 layers), B random.
Measured side by side in one run: the base model (adapters absent: the plain nn.Linear
layers swapped back in) and the adapted one, median of --runs runs after a warm-up:

  1. prefill of a --seq-token sequence (as generate does: inputs_embeds, KV cache on,
     logits of the last position only) at 0%, 25% and 50% image tokens (blocks of 64 image
     positions spread over the sequence), for three designs of the masked update:
       "grouped":  what the app runs (models/plora_grouped.py prefill_last_logits): the rows
                   are grouped once for the whole model, text rows then image rows; each
                   layer multiplies the text slice by W0 and the image slice by the cached
                   W1 = W0 + scale * B @ A, as many rows of each as it can pair in one
                   batched product (torch.bmm), the rest in a second one; attention puts
                   q / k / v back in order;
       "merged":   per layer (image_mask + one forward, models/plora_layer.py): each layer groups
                   its input rows (index_select), multiplies both groups (W0, W1) and puts
                   the rows back (index_select);
       "index":    the low-rank path (merge off): each layer runs A and B on the image rows
                   only (index_select) and adds them back (index_add_);
     At 50% also "grouped-split" (the grouped prefill with two products per layer, one
     per slice, as before the batched product) and "grouped-w1=w0", a diagnostic: the
     grouped prefill with W0 in the place of W1 (the same products, slices and attention
     moves, no second weight read from memory; its output is the base model's): grouped
     minus this is what reading W1 costs;
  2. greedy decode of --new-tokens tokens with a KV cache after a 128-token text prompt,
     adapters present with a [1, 1] all-false mask set before each step, vs absent;
  3. the 50% prefill again with rank 64 and 128 adapters, every design (the merged paths'
     cost does not depend on the rank; the low-rank path's does).

Prints the JSON record and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch
from torch import nn

from models.plora import (
    image_mask,
    clear_image_mask,
    inject_plora,
    plora_layers,
    remove_plora,
    set_image_mask,
)
from models.plora_grouped import prefill_last_logits
from models.plora_layer import PLoRALinear

SMOLLM2_135M = {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "max_position_embeddings": 8192, "rope_theta": 100000.0,
                "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}
RANK = 256
ALPHA = 256
IMAGE_BLOCK = 64
FRACTIONS = (0.0, 0.25, 0.5)
PROMPT_TOKENS = 128
OVERHEAD_TARGET_PCT = 10.0
SWEEP_RANKS = (64, 128)  # smaller adapters, measured at 50% image tokens
DESIGNS = ("grouped", "merged", "index")
# Arms at 50% only. "grouped-split": the grouped prefill with the text and image slices
# multiplied by two products (`split_products`, built here) instead of one batched product.
# "grouped-w1=w0", a diagnostic: the grouped prefill with W0 in the place of W1, so the
# same products, slices and attention moves, but no second weight to read from memory (the
# difference to "grouped" is what reading W1 costs; its output is the base model's).
SPLIT = "grouped-split"
SECOND_WEIGHT_OFF = "grouped-w1=w0"


def build_model() -> nn.Module:
    """A random float32 Llama shaped like SmolLM2-135M, in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).eval()


def adapt(model: nn.Module, rank: int = RANK) -> dict[str, PLoRALinear]:
    """Inject adapters (alpha = rank) with random B (a trained adapter's cost)."""
    inject_plora(model, rank=rank, alpha=rank, dropout=0.05)
    layers = plora_layers(model)
    with torch.no_grad():
        for layer in layers.values():
            nn.init.normal_(layer.Plora_B.weight, std=0.01)
    return layers


def use_adapters(model: nn.Module, layers: dict[str, PLoRALinear], on: bool) -> None:
    """Swap the PLoRA layers in (on) or their plain base layers back (off)."""
    for name, layer in layers.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer if on else layer.base)


def use_design(layers: dict[str, PLoRALinear], design: str) -> None:
    """Switch every PLoRA layer to the merged W1 ("grouped", "merged"), the "index"
    (low-rank) update, SPLIT or SECOND_WEIGHT_OFF. Sets the layers' flags directly:
    set_plora_merge would also drop the cached W1, and rebuilding it is not part of a
    prefill. SECOND_WEIGHT_OFF puts W0 in the place of W1 in the layer's cache (the real
    cache is kept aside and put back for the other designs)."""
    for layer in layers.values():
        layer.merge = design != "index"
        if design == SPLIT:  # an instance attribute shadows the product's method
            layer._grouped_products = types.MethodType(split_products, layer)
        else:
            layer.__dict__.pop("_grouped_products", None)
        if design == SECOND_WEIGHT_OFF and id(layer) not in _SET_ASIDE:
            layer.merged_weight()
            _SET_ASIDE[id(layer)] = layer._merged
            weight = layer.base.weight
            layer._merged = (layer._merge_key(), weight, weight.expand(2, *weight.shape))
        elif design != SECOND_WEIGHT_OFF and id(layer) in _SET_ASIDE:
            layer._merged = _SET_ASIDE.pop(id(layer))


# The real merged cache of each layer while SECOND_WEIGHT_OFF has W0 in the place of W1.
_SET_ASIDE: dict[int, torch.Tensor] = {}


def split_products(layer: PLoRALinear, rows: torch.Tensor, text: int) -> torch.Tensor:
    """The SPLIT arm of PLoRALinear._grouped_products: rows [0, text) times W0 and rows
    [text, n) times W1 as two products into one buffer, instead of one batched product of
    the paired rows (the benchmark's baseline for the product's design)."""
    layer.merged_weight()
    weight, merged = layer.base.weight, layer._merged[1]
    bias = layer.base.bias
    out = rows.new_empty(rows.shape[0], layer.out_features)
    for part, matrix, target in ((rows[:text], weight, out[:text]),
                                 (rows[text:], merged, out[text:])):
        if bias is None:
            torch.mm(part, matrix.t(), out=target)
        else:
            torch.addmm(bias, part, matrix.t(), out=target)
    return out


def prompt_embeds(model: nn.Module, seq: int) -> torch.Tensor:
    """The input embeddings [1, seq, hidden] of `seq` random token ids (seed 1): the prompt
    every prefill measurement runs."""
    ids = torch.randint(3, SMOLLM2_135M["vocab_size"], (1, seq),
                        generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return model.get_input_embeddings()(ids)


def image_mask_for(seq: int, fraction: float) -> torch.Tensor:
    """A [1, seq] mask with `fraction` of the positions true, in blocks of 64 spread evenly."""
    mask = torch.zeros(1, seq, dtype=torch.bool)
    blocks = round(seq * fraction / IMAGE_BLOCK)
    if blocks:
        stride = seq // blocks
        for block in range(blocks):
            start = block * stride + (stride - IMAGE_BLOCK) // 2
            mask[0, start:start + IMAGE_BLOCK] = True
    return mask


def time_prefill(model: nn.Module, embeds: torch.Tensor, mask: torch.Tensor | None,
                 design: str) -> float:
    """Seconds for one prefill forward (KV cache on, last position's logits only): the
    base model (mask None), the grouped prefill, or one forward under the image mask."""
    started = time.perf_counter()
    with torch.inference_mode():
        if mask is not None and design.startswith("grouped"):
            prefill_last_logits(model, embeds, mask, use_cache=True)
        else:
            with image_mask(model, mask):
                model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
    return time.perf_counter() - started


def order(run: int) -> tuple[bool, bool]:
    """Which arm goes first alternates (absent first on even runs), so neither always runs
    right after the other."""
    return (False, True) if run % 2 == 0 else (True, False)


def rotated(arms: tuple[str, ...], run: int) -> tuple[str, ...]:
    """The arms of one round, starting one further each run (no arm always follows the
    same one)."""
    shift = run % len(arms)
    return arms[shift:] + arms[:shift]


def summary(times: dict[bool, list[float]]) -> dict:
    """Medians of both arms, the overhead of the medians and the median paired overhead
    (each adapted run against the base run next to it: robust to load on a shared CPU)."""
    base, adapted = statistics.median(times[False]), statistics.median(times[True])
    paired = statistics.median(a / b for a, b in zip(times[True], times[False], strict=True))
    return {"base_ms": round(base * 1000, 2), "adapted_ms": round(adapted * 1000, 2),
            "overhead_pct": round((adapted / base - 1) * 100, 1),
            "paired_overhead_pct": round((paired - 1) * 100, 1)}


def compare_prefill(model: nn.Module, layers: dict[str, PLoRALinear], embeds: torch.Tensor,
                    mask: torch.Tensor, runs: int,
                    designs: tuple[str, ...] = DESIGNS) -> dict[str, dict]:
    """Prefill seconds of the base model (adapters absent) and of each design, all in one
    round per run (rotating order) after a warm-up round (which also builds the merged
    weights); each design is compared with the base runs of the same rounds. Each arm runs
    once untimed right before its timed run, so no arm pays for the state (caches, freed
    memory) that the arm before it left: measured without that warm-up, whichever arm
    follows another one is slower by up to ~10% on the 2-core machine, at random."""
    arms = ("base", *designs)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for run in range(runs + 1):
        for arm in rotated(arms, run):
            use_adapters(model, layers, arm != "base")
            if arm != "base":
                use_design(layers, arm)
            time_prefill(model, embeds, None if arm == "base" else mask, arm)
            seconds = time_prefill(model, embeds, None if arm == "base" else mask, arm)
            if run:  # run 0 is the warm-up
                times[arm].append(seconds)
    use_adapters(model, layers, True)
    use_design(layers, "grouped")
    return {design: {**summary({False: times["base"], True: times[design]}),
                     "base_runs_ms": [round(t * 1000, 1) for t in times["base"]],
                     "adapted_runs_ms": [round(t * 1000, 1) for t in times[design]]}
            for design in designs}


def decode_step(model: nn.Module, token: torch.Tensor, cache, adapted: bool):
    """One timed greedy step; the adapted arm sets a [1, 1] all-false mask first (text-only
    decode). Returns (seconds, next token, cache)."""
    started = time.perf_counter()
    if adapted:
        set_image_mask(model, torch.zeros(1, 1, dtype=torch.bool))
    out = model(token, cache=cache, use_cache=True)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    return time.perf_counter() - started, token, out.cache


def compare_decode(model: nn.Module, layers: dict[str, PLoRALinear], new_tokens: int,
                   runs: int) -> dict:
    """Decode tokens/s with adapters absent / present after the same text prompt.

    Both arms decode side by side, step by step (each with its own KV cache, alternating
    which goes first), so a change of load on the machine hits both alike; text-only
    outputs are identical, so both decode the same tokens (checked).
    """
    prompt = torch.randint(3, SMOLLM2_135M["vocab_size"], (1, PROMPT_TOKENS),
                           generator=torch.Generator().manual_seed(3))
    times: dict[bool, list[float]] = {False: [], True: []}
    step_ratios = []
    with torch.inference_mode():
        for run in range(runs + 1):
            state = {}
            clear_image_mask(model)  # the text prompt's prefill: no mask
            for on in (False, True):
                use_adapters(model, layers, on)
                out = model(prompt, use_cache=True, logits_to_keep=1)
                state[on] = (out.logits[:, -1].argmax(-1, keepdim=True), out.cache)
            spent = {False: 0.0, True: 0.0}
            for step in range(new_tokens):
                seconds = {}
                for on in order(step):
                    use_adapters(model, layers, on)
                    seconds[on], token, cache = decode_step(model, *state[on], on)
                    state[on] = (token, cache)
                    spent[on] += seconds[on]
                if run:
                    step_ratios.append(seconds[False] / seconds[True])
                if not torch.equal(state[False][0], state[True][0]):
                    raise AssertionError("text-only decode differs with adapters present")
            if run:
                for on in (False, True):
                    times[on].append(spent[on] / new_tokens)
    clear_image_mask(model)
    use_adapters(model, layers, True)
    result = summary(times)
    return {"prompt_tokens": PROMPT_TOKENS, "new_tokens": new_tokens,
            "base_tok_s": round(1000 / result["base_ms"], 1),
            "adapted_tok_s": round(1000 / result["adapted_ms"], 1),
            "ratio": round(result["base_ms"] / result["adapted_ms"], 3),
            "paired_run_ratio": round(100 / (100 + result["paired_overhead_pct"]), 3),
            "median_step_ratio": round(statistics.median(step_ratios), 3),
            "base_runs_tok_s": [round(1 / t, 1) for t in times[False]],
            "adapted_runs_tok_s": [round(1 / t, 1) for t in times[True]]}


def flop_estimate(model: nn.Module, layers: dict[str, PLoRALinear], seq: int) -> dict:
    """Multiply-adds per token: base linear layers, attention scores (causal average) and
    the adapters; the overhead they predict for the index (low-rank) design at each image
    fraction (the merged design adds no multiply-adds)."""
    config = model.config
    base = sum(layer.in_features * layer.out_features for layer in layers.values())
    adapter = sum(layer.rank * (layer.in_features + layer.out_features)
                  for layer in layers.values())
    head_dim = config.hidden_size // config.num_attention_heads
    attention = config.num_hidden_layers * config.num_attention_heads * head_dim * seq
    return {"base_linear_macs_per_token": base, "attention_macs_per_token": attention,
            "adapter_macs_per_image_token": adapter,
            "adapter_over_base_linear": round(adapter / base, 3),
            "predicted_overhead_pct": {str(f): round(100 * f * adapter / (base + attention), 1)
                                       for f in FRACTIONS}}


def main() -> None:
    """Parse flags, run the benchmark, print and write the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per measurement (median)")
    parser.add_argument("--seq", type=int, default=512, help="prefill length in tokens")
    parser.add_argument("--new-tokens", type=int, default=64, help="decoded tokens per run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "plora.json")
    parser.add_argument("--no-sweep", action="store_true", help="skip the rank 64 / 128 sweep")
    args = parser.parse_args()
    if args.runs < 1 or args.seq < IMAGE_BLOCK * 4 or args.new_tokens < 1:
        parser.error(f"--runs must be >= 1, --seq >= {IMAGE_BLOCK * 4}, --new-tokens >= 1")
    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0]
    model = build_model()
    layers = adapt(model)
    embeds = prompt_embeds(model, args.seq)
    prefill: dict[str, dict] = {}
    for fraction in FRACTIONS:
        mask = image_mask_for(args.seq, fraction)
        row = prefill[f"{round(fraction * 100)}%"] = {"image_tokens": int(mask.sum())}
        designs = DESIGNS + ((SPLIT, SECOND_WEIGHT_OFF) if fraction == 0.5 else ())
        row.update(compare_prefill(model, layers, embeds, mask, args.runs, designs))
        print(f"prefill {fraction:.0%}: " + ", ".join(
            f"{design} {row[design]['overhead_pct']}%" for design in designs),
            file=sys.stderr, flush=True)
    decode = compare_decode(model, layers, args.new_tokens, args.runs)
    print(f"decode ratio: {decode['ratio']}", file=sys.stderr, flush=True)
    merged_bytes = sum(layer.merged_weight().numel() * layer.merged_weight().element_size()
                       for layer in layers.values())
    base_bytes = sum(parameter.numel() * parameter.element_size()
                     for name, parameter in model.named_parameters() if "Plora_" not in name)
    flops = flop_estimate(model, layers, args.seq)
    by_rank: dict[str, dict] = {}
    for rank in () if args.no_sweep else SWEEP_RANKS:
        remove_plora(model)
        sweep_layers = adapt(model, rank)
        by_rank[str(rank)] = compare_prefill(model, sweep_layers, embeds,
                                             image_mask_for(args.seq, 0.5), args.runs)
        print(f"prefill 50% rank {rank}: " + ", ".join(
            f"{design} {by_rank[str(rank)][design]['overhead_pct']}%" for design in DESIGNS),
            file=sys.stderr, flush=True)
    at_half = prefill["50%"]["grouped"]["overhead_pct"]
    prefill_met = at_half <= OVERHEAD_TARGET_PCT
    decode_met = abs(decode["ratio"] - 1.0) <= 0.02
    record = {
        "command": " ".join([".venv/bin/python", "bench/bench_plora.py", *sys.argv[1:]]),
        "model": "random LlamaForCausalLM shaped like SmolLM2-135M (float32, CPU)",
        "adapters": {"rank": RANK, "alpha": ALPHA, "layers": len(layers),
                     "targets": "q/k/v/o/gate/up/down of all 30 blocks"},
        "torch": torch.__version__, "threads": args.threads, "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_1min": {"start": round(load_at_start, 2),
                              "end": round(os.getloadavg()[0], 2)},
        "runs": args.runs, "seq": args.seq, "image_block": IMAGE_BLOCK,
        "prefill": prefill,
        "decode_text_only": decode,
        "prefill_50pct_by_rank": by_rank,
        "flops": flops,
        "merged_weights": {"bytes": merged_bytes, "base_model_bytes": base_bytes,
                           "over_base_model": round(merged_bytes / base_bytes, 3)},
        "design_kept": "grouped",
        "target_met": prefill_met and decode_met,
        "targets": {
            "design": "grouped",
            "prefill_overhead_at_50pct_le_10": prefill_met,
            "prefill_overhead_at_50pct": at_half,
            "prefill_paired_overhead_at_50pct": prefill["50%"]["grouped"]["paired_overhead_pct"],
            "merged_per_layer_prefill_overhead_at_50pct": prefill["50%"]["merged"]["overhead_pct"],
            "index_prefill_overhead_at_50pct": prefill["50%"]["index"]["overhead_pct"],
            "grouped_split_overhead_at_50pct": prefill["50%"][SPLIT]["overhead_pct"],
            "grouped_split_paired_overhead_at_50pct":
                prefill["50%"][SPLIT]["paired_overhead_pct"],
            "grouped_with_w1_eq_w0_overhead_at_50pct":
                prefill["50%"][SECOND_WEIGHT_OFF]["overhead_pct"],
            "grouped_with_w1_eq_w0_paired_overhead_at_50pct":
                prefill["50%"][SECOND_WEIGHT_OFF]["paired_overhead_pct"],
            "decode_ratio_1_00": decode_met,
            "decode_ratio": decode["ratio"],
        },
    }
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
