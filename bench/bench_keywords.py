"""Benchmark the BM25 keyword index (models/keywords.py) on a synthetic library.

    .venv/bin/python bench/bench_keywords.py [--docs 100000] [--runs 5] [--out bench/results/keywords.json]

Builds a KeywordIndex over `--docs` captions of 6-12 words drawn from a 5,000-word
vocabulary (one caption also holds a rare name), then times: the fit, a 7-word query's
`normalized_scores` (best and median of `--runs`), a rare-name `scores` query and
`rare_matches`. This is the timing that tests/test_keywords.py does not assert (tests check
behaviour: a query reads only its words' postings); the target is a query under 200 ms at
100k captions on a small CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.keywords import KeywordIndex  # noqa: E402

QUERY = "Ada Lovelace word1 word2 word3 word4 word5"


def captions(count: int, seed: int = 0) -> list[str]:
    """`count` captions of 6-12 random words; caption 1234 (if any) also names Lovelace."""
    rng = random.Random(seed)
    vocabulary = [f"word{number}" for number in range(5000)]
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(6, 12))) for _ in range(count)]
    if count > 1234:
        texts[1234] += " Lovelace"
    return texts


def timed(call, runs: int) -> tuple[list[float], object]:
    """Seconds of each of `runs` calls, and the last result."""
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "keywords.json")
    args = parser.parse_args()
    texts = captions(args.docs)
    ids = [f"doc{number}" for number in range(len(texts))]
    index = KeywordIndex()
    started = time.perf_counter()
    index.fit(ids, texts)
    fit_s = time.perf_counter() - started
    query_s, scores = timed(lambda: index.normalized_scores(QUERY), args.runs)
    name_s, _ = timed(lambda: index.scores("Ada Lovelace"), args.runs)
    rare_s, _ = timed(lambda: index.rare_matches(QUERY), args.runs)
    record = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "docs": len(texts), "runs": args.runs, "query": QUERY,
        "fit_s": round(fit_s, 2),
        "query_matches": len(scores),
        "query_ms_best": round(min(query_s) * 1000, 2),
        "query_ms_median": round(statistics.median(query_s) * 1000, 2),
        "name_query_ms_median": round(statistics.median(name_s) * 1000, 3),
        "rare_matches_ms_median": round(statistics.median(rare_s) * 1000, 3),
        "target_query_ms": 200.0,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "arch": platform.machine()},
    }
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
