"""Benchmark: DPO (+ SFT) LoRA training of the writer on preference pairs (train-dpo).

A real, small setup: the embedded SmolLM2-135M-Instruct (dequantised from its GGUF to a
float32 model) and 16 synthetic HA-DPO-style pairs (6 steps of 4): for the same request,
`chosen` is a plain factual paragraph and `rejected` the same paragraph with an invented
claim added (a made-up statistic, date or quotation), as a person deleting a hallucination
would leave it. Measures the training objective, the DPO term and the reward margin on the
pairs before step 0 and after the last step (composer.train_dpo.evaluate_pairs), steps and seconds.

    .venv/bin/python bench/bench_dpo.py       # embedded, 16 pairs, 6 steps (~12 min, 2 busy cores)
    .venv/bin/python bench/bench_dpo.py --model PATH --steps 16 --out /tmp/dpo.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = [
    ("stone bridges", "Stone bridges carry loads by compression: each arch pushes its weight "
     "outward into the abutments at both ends."),
    ("tomato gardens", "Tomatoes need six to eight hours of sun a day and steady watering, "
     "and most varieties are staked so the fruit stays off the ground."),
    ("the Moon", "The Moon is about 384,000 kilometres from Earth and always shows the same "
     "face, because its rotation is locked to its orbit."),
    ("espresso", "Espresso is made by forcing hot water through finely ground coffee under "
     "pressure, which gives a small, strong cup topped with crema."),
    ("honeybees", "Honeybees live in colonies with one queen; the workers gather nectar and "
     "pollen and turn the nectar into honey inside the hive."),
    ("glaciers", "Glaciers form where more snow falls in winter than melts in summer, and the "
     "ice slowly flows downhill under its own weight."),
    ("lighthouses", "Lighthouses mark dangerous coasts and harbour entrances; each one flashes "
     "its own pattern so sailors can tell them apart at night."),
    ("bread baking", "Bread rises because yeast ferments sugars in the dough and releases "
     "carbon dioxide, which the gluten network traps as bubbles."),
]
INVENTIONS = [
    " A 2031 survey found that 97 percent of experts consider this the most important fact "
    "in history.",
    " It was first described in 1204 by the explorer Marco Vellini, who called it a miracle.",
    " Scientists at the Institute of Everything proved last year that it doubles lifespans.",
    " According to a famous quotation by Einstein, nothing else in nature is half as clever.",
]


def synthetic_pairs(count: int = 32) -> list[dict]:
    """`count` pairs (PreferencePair.to_json form): factual chosen, invented-claim rejected."""
    pairs = []
    for index in range(count):
        topic, fact = TOPICS[index % len(TOPICS)]
        invented = INVENTIONS[(index // len(TOPICS)) % len(INVENTIONS)]
        pairs.append({
            "prompt": [{"role": "system", "content": "You write clear, accurate paragraphs for "
                        "an illustrated article."},
                       {"role": "user", "content": f"Write one short paragraph about {topic}."}],
            "chosen": [{"role": "assistant", "content": fact}],
            "rejected": [{"role": "assistant", "content": fact + invented}],
            "kind": ("introduction", "body", "body", "conclusion")[index % 4],
        })
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--home", type=Path, default=None,
                        help="cache home for the converted embedded model (default: a temp "
                        "dir, or $COMPOSER_HOME)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dpo.json")
    args = parser.parse_args(argv)

    import torch

    from composer.config import Settings
    from composer.train_dpo import DPOSettings, load_writer, save_dpo, summary, train_dpo

    torch.set_num_threads(args.threads)
    settings = Settings.from_env(home=args.home)
    started = time.perf_counter()
    model, tokenizer, base = load_writer(args.model, settings.cache_dir, device="cpu")
    load_seconds = time.perf_counter() - started
    dpo_settings = DPOSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               max_length=args.max_length, device="cpu", seed=0)
    peft_model, report = train_dpo(model, tokenizer, synthetic_pairs(args.pairs), dpo_settings)
    with tempfile.TemporaryDirectory() as folder:
        save_dpo(folder, peft_model, dpo_settings, report, base_model=base)
        adapter_bytes = sum(p.stat().st_size for p in Path(folder).iterdir())
    print(summary(report))
    result = {
        "what": "train-dpo: LoRA (r16, q/k/v/o/gate/up/down) DPO beta 0.1 + 0.5 x SFT on "
                "synthetic HA-DPO-style pairs (chosen = factual paragraph, rejected = same + "
                "an invented claim)",
        "model": base, "pairs": report.pairs, "steps": report.steps,
        "batch_size": args.batch_size, "lr": args.lr, "max_length": args.max_length,
        "before": report.before.__dict__, "after": report.after.__dict__ if report.after
        else None, "losses": [round(loss, 4) for loss in report.losses],
        "train_and_eval_seconds": round(report.seconds, 1),
        "load_seconds": round(load_seconds, 1), "adapter_bytes": adapter_bytes,
        "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "torch": torch.__version__,
        "command": "python bench/bench_dpo.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
