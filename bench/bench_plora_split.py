"""Why merged Partial LoRA still costs time on the CPU: one layer's product, whole vs split.

The merged design (models/plora.py) computes the text rows with W0 and the image rows with
W1 = W0 + scale * B @ A: the same multiply-adds as the base layer, but two products instead
of one, plus gathering the rows and putting them back. This measures those pieces alone, for
SmolLM2-135M's layer shapes, 512 rows, half of them image rows (interleaved), side by side:

  base     F.linear of all rows with W0
  split    two products of 256 rows (W0, W1) into one buffer (no gathers)
  merged   what PLoRALinear.merged_forward does: gather, two products, gather back
  gathers  the two index_selects alone

    .venv/bin/python bench/bench_plora_split.py [--threads 2] [--out bench/results/plora_split.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

SHAPES = {"q/o (576x576)": (576, 576), "gate/up (576->1536)": (576, 1536),
          "down (1536->576)": (1536, 576)}
ROWS = 512


def timed(fn, repeats: int) -> float:
    """Median milliseconds of `repeats` calls after a warm-up."""
    for _ in range(5):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def measure(in_features: int, out_features: int, repeats: int) -> dict:
    """Milliseconds of base / split / merged / gathers for one layer shape."""
    torch.manual_seed(0)
    x = torch.randn(ROWS, in_features)
    w0, w1 = torch.randn(out_features, in_features), torch.randn(out_features, in_features)
    mask = torch.arange(ROWS) % 2 == 1
    order = torch.argsort(mask.to(torch.uint8), stable=True)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(ROWS))
    text = ROWS - int(mask.sum())
    out = torch.empty(ROWS, out_features)

    def split(rows: torch.Tensor = x) -> torch.Tensor:
        torch.mm(rows[:text], w0.t(), out=out[:text])
        torch.mm(rows[text:], w1.t(), out=out[text:])
        return out

    def merged() -> torch.Tensor:
        return split(x.index_select(0, order)).index_select(0, inverse)

    def gathers() -> torch.Tensor:
        return out.index_select(0, inverse), x.index_select(0, order)

    with torch.inference_mode():
        times = {"base_ms": timed(lambda: torch.nn.functional.linear(x, w0), repeats),
                 "split_ms": timed(split, repeats), "merged_ms": timed(merged, repeats),
                 "gathers_ms": timed(gathers, repeats)}
    base = times["base_ms"]
    return {**{k: round(v, 3) for k, v in times.items()},
            "split_over_base_pct": round((times["split_ms"] / base - 1) * 100, 1),
            "merged_over_base_pct": round((times["merged_ms"] / base - 1) * 100, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                        "plora_split.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record = {"rows": ROWS, "image_rows": ROWS // 2, "threads": args.threads,
              "torch": torch.__version__, "machine": platform.machine(),
              "layers": {name: measure(*shape, args.repeats) for name, shape in SHAPES.items()},
              "command": f"python bench/bench_plora_split.py --threads {args.threads}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
