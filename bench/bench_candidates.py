"""Cost of drafting k paragraph candidates in one batch vs one draft, with the embedded model.

Same prompt, same number of new tokens per row (stop strings and EOS off, so every row runs
the whole budget), arms alternated over rounds; reports seconds per round and the ratio
k-batch / single for k = 2, 3, 4, on the embedded model's engine (--engine: torch int4, or
llama.cpp where the drafts are sequences of one batch). Writes bench/results/candidates.json
(candidates_llamacpp.json for llama.cpp unless --out).

    .venv/bin/python bench/bench_candidates.py [--rounds 3] [--tokens 96] [--threads 1]
        [--engine torch|llama.cpp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--counts", default="2,3,4")
    parser.add_argument("--engine", choices=("torch", "llama.cpp"), default="torch")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    args.out = args.out or ("bench/results/candidates.json" if args.engine == "torch"
                            else "bench/results/candidates_llamacpp.json")
    os.environ["COMPOSER_THREADS"] = str(args.threads)

    from composer.config import Settings
    from composer.prompts import section_prompt
    from composer.types import GenerationConfig, Outline, SectionPlan
    from models.registry import load_language_model

    lm = load_language_model(Settings.from_env({**os.environ, "COMPOSER_ENGINE": args.engine}))
    outline = Outline("Birdwatching in the City", [
        SectionPlan("Why city birds", ["pigeons and sparrows", "parks"], 150),
        SectionPlan("What to bring", ["binoculars", "a notebook"], 150)])
    prompt = section_prompt(outline, 1, "City parks are full of birds.", "", 1, "en")
    # No end token: every row decodes the whole budget, so the arms do equal work.
    if args.engine == "torch":
        lm.eos_ids = [-1]
    else:
        lm.vocab.is_end = lambda token_id: False
    config = GenerationConfig(max_new_tokens=args.tokens, seed=0)
    counts = [int(c) for c in args.counts.split(",")]

    def run(count: int) -> float:
        start = time.perf_counter()
        if count == 1:
            for _ in lm.stream(prompt.messages, config):
                pass
        else:
            for _ in lm.stream_candidates(prompt.messages, config, count):
                pass
        return time.perf_counter() - start

    run(1)  # warm-up
    times: dict[int, list[float]] = {count: [] for count in [1] + counts}
    for _ in range(args.rounds):
        for count in [1] + counts:
            times[count].append(run(count))
    single = statistics.median(times[1])
    result = {
        "what": "seconds to decode --tokens new tokens per row, one draft vs k drafts in one "
                "batch (embedded SmolLM2-135M), median of rounds", "engine": args.engine,
        "tokens": args.tokens, "threads": args.threads, "rounds": args.rounds,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "seconds": {str(count): [round(t, 3) for t in ts] for count, ts in times.items()},
        "ratio_to_single": {str(count): round(statistics.median(times[count]) / single, 3)
                            for count in counts},
        "ratio_per_draft": {str(count): round(statistics.median(times[count]) / single / count,
                                              3) for count in counts},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
