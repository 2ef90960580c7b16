"""Why merged Partial LoRA costs time on the CPU: one layer's product, whole vs split.

The merged design (models/plora_layer.py) computes the text rows with W0 and the image rows with
W1 = W0 + scale * B @ A: the same multiply-adds as the base layer, but in more than one
product, plus gathering the rows and putting them back (per layer only; the grouped prefill
of models/plora_grouped.py groups once). This measures those pieces alone, for
SmolLM2-135M's layer shapes, 512 rows, half of them image rows (interleaved), side by side:

  base     F.linear of all rows with W0
  split    two products of 256 rows (W0, W1) into one buffer, no gathers
  paired   one batched product (torch.bmm) of the two 256-row halves with W0 and W1 held in
           one [2, out, in] tensor: what the grouped prefill runs per layer now
           (PLoRALinear._grouped_products)
  merged   the per-layer path before the batched product: gather, two products, gather back
  gathers  the two index_selects alone
  base_prepacked, split_prepacked
           the same products with weights packed once beforehand into MKL's GEMM format
           for exactly that row count (torch.ops.mkl._mkl_reorder_linear_weight; only where
           torch has MKL): whether packing the weight at every product is what the split
           costs. The app does not prepack: a packed weight fits one row count only, and a
           prompt's text / image counts vary.

Each layer's weights stay in the CPU caches between calls here, so this shows the products'
own cost, not the cost of reading a second weight from memory (bench_plora.py's
"grouped-w1=w0" arm measures that on the whole model).

All variants run in one loop, each repeat in a rotating order; medians.

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


def timed_together(functions: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each function, called in turn (rotating order) `repeats`
    times after a warm-up: a change of load on the machine hits all of them alike."""
    names = list(functions)
    for _ in range(5):
        for name in names:
            functions[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            functions[name]()
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(in_features: int, out_features: int, repeats: int) -> dict:
    """Milliseconds of every variant for one layer shape, and each over base."""
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

    pair = torch.stack([w0, w1])

    def paired() -> torch.Tensor:
        half = ROWS // 2
        torch.bmm(x.view(2, half, in_features), pair.transpose(1, 2),
                  out=out.view(2, half, out_features))
        return out

    def merged() -> torch.Tensor:
        return split(x.index_select(0, order)).index_select(0, inverse)

    def gathers() -> torch.Tensor:
        return out.index_select(0, inverse), x.index_select(0, order)

    functions = {"base": lambda: torch.nn.functional.linear(x, w0), "split": split,
                 "paired": paired, "merged": merged, "gathers": gathers}
    if torch.backends.mkl.is_available():
        packed_all = torch.ops.mkl._mkl_reorder_linear_weight(w0, ROWS)
        packed = [torch.ops.mkl._mkl_reorder_linear_weight(w, n)
                  for w, n in ((w0, text), (w1, ROWS - text))]

        def base_prepacked() -> torch.Tensor:
            return torch.ops.mkl._mkl_linear(x, packed_all, w0, None, ROWS)

        def split_prepacked() -> tuple:
            return (torch.ops.mkl._mkl_linear(x[:text], packed[0], w0, None, text),
                    torch.ops.mkl._mkl_linear(x[text:], packed[1], w1, None, ROWS - text))

        functions.update(base_prepacked=base_prepacked, split_prepacked=split_prepacked)
    with torch.inference_mode():
        times = timed_together(functions, repeats)
    base = times["base"]
    record = {f"{name}_ms": round(value, 3) for name, value in times.items()}
    for name in ("split", "paired", "merged"):
        record[f"{name}_over_base_pct"] = round((times[name] / base - 1) * 100, 1)
    if "split_prepacked" in times:
        record["split_prepacked_over_base_prepacked_pct"] = round(
            (times["split_prepacked"] / times["base_prepacked"] - 1) * 100, 1)
    return record


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
