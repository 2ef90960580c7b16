"""The Partial LoRA prefill target alone, measured with enough runs to settle it.

    .venv/bin/python bench/bench_plora_target.py [--blocks 2] [--runs 30] [--seq 512]
                                                 [--threads 2]
                                                 [--out bench/results/plora_target.json]

The issue's target: a prefill with rank-256 adapters on a model of the embedded writer's
size costs at most 10% more than without adapters at 50% image tokens. bench_plora.py
measures every design at every image fraction with 15 runs; on a shared 2-core machine one
run of a ~1 s prefill varies by up to +-30%, more than the margin being measured. This
script measures only the design the app runs (the grouped prefill, models/plora_grouped.py,
with its batched products) and the same prefill with two products per layer
("grouped-split", the design before) against the base model, in `--blocks` blocks of
`--runs` rounds each (same model, same mask and same protocol as
bench_plora.compare_prefill: each arm warmed by an untimed call right before its timed one,
the order rotating). For each block and for all rounds together it reports

  * the overhead of the medians and the median paired overhead (each adapted run over the
    base run of its round),
  * a 95% bootstrap interval of the median paired overhead (10 000 resamples of the rounds,
    seeded), and whether that interval lies under the target ("met"), above it ("missed")
    or across it ("undecided").

When the blocks disagree with each other, the interval of one block was too narrow: it
assumes the rounds are independent, but the machine's state (other machines' use of the
shared CPU caches and memory) lasts for minutes.

Prints the JSON record and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch

from bench_plora import (
    IMAGE_BLOCK,
    OVERHEAD_TARGET_PCT,
    RANK,
    adapt,
    build_model,
    SPLIT,
    compare_prefill,
    image_mask_for,
    prompt_embeds,
)

RESAMPLES = 10_000


def bootstrap_interval(ratios: list[float], resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of `ratios` (rounds resampled with
    replacement, a seeded generator: the same runs give the same interval)."""
    generator = random.Random(seed)
    medians = sorted(statistics.median(generator.choices(ratios, k=len(ratios)))
                     for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def verdict(low_pct: float, high_pct: float, target_pct: float) -> str:
    """"met" when the whole interval is at or under the target, "missed" when it is all
    above, "undecided" when it straddles the target."""
    if high_pct <= target_pct:
        return "met"
    if low_pct > target_pct:
        return "missed"
    return "undecided"


def block_summary(base_runs_ms: list[float], adapted_runs_ms: list[float]) -> dict:
    """Medians, overheads, the bootstrap interval of the paired overhead and the verdict."""
    ratios = [adapted / base for adapted, base in zip(adapted_runs_ms, base_runs_ms,
                                                       strict=True)]
    low, high = bootstrap_interval(ratios)
    low_pct, high_pct = round((low - 1) * 100, 1), round((high - 1) * 100, 1)
    base, adapted = statistics.median(base_runs_ms), statistics.median(adapted_runs_ms)
    return {"base_ms": round(base, 1), "adapted_ms": round(adapted, 1),
            "added_ms": round(adapted - base, 1),
            "overhead_pct": round((adapted / base - 1) * 100, 1),
            "paired_overhead_pct": round((statistics.median(ratios) - 1) * 100, 1),
            "paired_overhead_95pct_interval": [low_pct, high_pct],
            "verdict": verdict(low_pct, high_pct, OVERHEAD_TARGET_PCT),
            "base_run_spread_pct": round((max(base_runs_ms) / min(base_runs_ms) - 1) * 100, 1)}


def main() -> None:
    """Parse flags, measure base vs grouped (and grouped-split) at 50% image tokens, print
    and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2, help="independent blocks of rounds")
    parser.add_argument("--runs", type=int, default=30, help="rounds per block")
    parser.add_argument("--seq", type=int, default=512, help="prefill length in tokens")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "plora_target.json")
    args = parser.parse_args()
    if args.blocks < 1 or args.runs < 5 or args.seq < IMAGE_BLOCK * 4:
        parser.error(f"--blocks must be >= 1, --runs >= 5 and --seq >= {IMAGE_BLOCK * 4}")
    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0]
    model = build_model()
    layers = adapt(model)
    embeds = prompt_embeds(model, args.seq)
    mask = image_mask_for(args.seq, 0.5)
    designs = ("grouped", SPLIT)
    blocks: list[dict] = []
    runs: dict[str, list[float]] = {"base": [], **{design: [] for design in designs}}
    for number in range(args.blocks):
        result = compare_prefill(model, layers, embeds, mask, args.runs, designs)
        block = {}
        for design in designs:
            block[design] = block_summary(result[design]["base_runs_ms"],
                                          result[design]["adapted_runs_ms"])
            block[design]["adapted_runs_ms"] = result[design]["adapted_runs_ms"]
            runs[design] += result[design]["adapted_runs_ms"]
        block["base_runs_ms"] = result["grouped"]["base_runs_ms"]
        runs["base"] += result["grouped"]["base_runs_ms"]
        blocks.append(block)
        print(f"block {number + 1}: " + "; ".join(
            f"{design} {block[design]['overhead_pct']}% (paired "
            f"{block[design]['paired_overhead_pct']}%, interval "
            f"{block[design]['paired_overhead_95pct_interval']})" for design in designs),
            file=sys.stderr, flush=True)
    verdicts = {block["grouped"]["verdict"] for block in blocks}
    record = {
        "command": " ".join([".venv/bin/python", "bench/bench_plora_target.py", *sys.argv[1:]]),
        "model": "random LlamaForCausalLM shaped like SmolLM2-135M (float32, CPU)",
        "adapters": {"rank": RANK, "layers": len(layers)},
        "design": "grouped (models/plora_grouped.py prefill_last_logits)",
        "seq": args.seq, "image_tokens": int(mask.sum()), "blocks": args.blocks,
        "runs_per_block": args.runs,
        "torch": torch.__version__, "threads": args.threads, "cpus": os.cpu_count(),
        "machine": platform.machine(), "processor": processor(),
        "load_average_1min": {"start": round(load_at_start, 2),
                              "end": round(os.getloadavg()[0], 2)},
        "target_pct": OVERHEAD_TARGET_PCT,
        "verdict": verdicts.pop() if len(verdicts) == 1 else "blocks disagree",
        "all_rounds": {design: block_summary(runs["base"], runs[design])
                       for design in designs},
        "by_block": blocks,
    }
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def processor() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
