"""Benchmark the default image library: seed + index time, and query latency.

    .venv/bin/python bench/bench_retrieval.py [--queries 200] [--out bench/results/retrieval.json]

Runs on a fresh temporary SQLite library with the embedded MiniLM embedder on the CPU (the
app's default path), so the numbers are what a first run and each slot's retrieval cost.
Query latency is the whole `Retriever.search` call: embedding the query, the in-memory
cosine product, the cheap change check and reading the top-k records from the store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from composer.library import seed_default_library  # noqa: E402
from composer.retrieval.retriever import Retriever  # noqa: E402
from models.embed import SentenceEmbedder, embedded_embedder_path  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.images import ImageStore  # noqa: E402

QUERIES = (
    "a cat lying down", "an astronaut in a space suit", "a cup of coffee", "a rocket launch",
    "galaxies in deep space", "a flower in bloom", "a photographer with a camera",
    "a Chinese temple by a lake", "a horse", "the human eye", "a stone wall",
    "handwritten equations", "a pet", "breakfast at a cafe", "space exploration",
    "a blurry clock", "a lawn", "gravel path", "a cell under the microscope", "a portrait",
)


def percentile(values: list[float], fraction: float) -> float:
    """The value at `fraction` (0..1) of the sorted values, nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run(queries: int, k: int) -> dict:
    """Seed a fresh library, then time `queries` searches; returns the result record."""
    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{folder}/bench.db")
        db.migrate()
        store = ImageStore(db, Path(folder) / "images")

        # 1. Load the embedder (lazily loaded: the first encode pays for it).
        started = time.perf_counter()
        embedder = SentenceEmbedder(embedded_embedder_path(), device="cpu")
        embedder.encode(["warm up"])
        load_s = time.perf_counter() - started

        # 2. Seed and index the default library.
        retriever = Retriever(store, embedder)
        started = time.perf_counter()
        added = seed_default_library(store, retriever)
        seed_s = time.perf_counter() - started

        # 3. First search (loads the matrix), then timed searches.
        started = time.perf_counter()
        retriever.search(QUERIES[0], k=k)
        first_query_ms = (time.perf_counter() - started) * 1000
        latencies = []
        for number in range(queries):
            started = time.perf_counter()
            retriever.search(QUERIES[number % len(QUERIES)], k=k)
            latencies.append((time.perf_counter() - started) * 1000)

        # 4. The query embedding alone, to show where the time goes.
        started = time.perf_counter()
        for number in range(queries):
            embedder.encode([QUERIES[number % len(QUERIES)]])
        encode_ms = (time.perf_counter() - started) * 1000 / queries
        count = store.count()
        db.dispose()

    import torch

    return {
        "library_images": count,
        "seed_added": added,
        "embedder": embedder.name,
        "device": "cpu",
        "embedder_load_s": round(load_s, 3),
        "seed_and_index_s": round(seed_s, 3),
        "first_query_ms": round(first_query_ms, 2),
        "queries": queries,
        "k": k,
        "query_p50_ms": round(percentile(latencies, 0.50), 2),
        "query_p99_ms": round(percentile(latencies, 0.99), 2),
        "query_mean_ms": round(statistics.fmean(latencies), 2),
        "query_encode_mean_ms": round(encode_ms, 2),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> int:
    """Parse flags, run the benchmark, print and save the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200, help="timed searches")
    parser.add_argument("--k", type=int, default=4, help="candidates per search")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "retrieval.json")
    args = parser.parse_args()
    if args.queries < 1:
        parser.error("--queries must be at least 1")
    result = run(args.queries, args.k)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
