"""Benchmark the vector indexes: exact vs HNSW on synthetic clustered vectors, side by side.

    .venv/bin/python bench/bench_index.py [--quick] [--queries 500] [--out bench/results/index.json]

For each library size (10k and 100k; --quick: 2k and 10k) both indexes are built from the
same vectors and timed: build time and throughput, single-query latency p50/p99 (k=8, a
small exclude set of images "already in the article", near the query as they would be),
recall@8 of HNSW against exact search with the same exclude set, an `allowed` filter of 10%
of the ids (a source/license filter), upserting a batch of 64 into the built index, and
save/load time and size on disk. A sweep of exact latency over more sizes shows where exact
search passes 5 ms (DEFAULT_ANN_THRESHOLD).

The vectors: dim 384 (the default text embedder), 1000 gaussian cluster centres on the unit
sphere, each vector = centre + noise 1.5 times the centre's length, normalised: two members
of a cluster have cosine ~0.3, a query's best match ~0.37 (10k) to ~0.41 (100k), a looser
neighbourhood than caption embeddings of related photos usually have (harder for HNSW).
Queries are fresh draws from the same mix. An efSearch sweep shows recall against latency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from composer.retrieval.choose import load_index  # noqa: E402
from composer.retrieval.contract import DEFAULT_ANN_THRESHOLD  # noqa: E402
from composer.retrieval.exact import ExactIndex  # noqa: E402
from composer.retrieval.hnsw import (  # noqa: E402
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    ApproximateIndex,
)

DIM = 384
CENTRES = 1000
SPREAD = 1.5
EF_SWEEP = (16, 32, 64, 128, 256)
K = 8
EXCLUDED = 5  # images already in the article, per query
ALLOWED_SHARE = 0.10
UPSERT_BATCH = 64


def centres(rng: np.random.Generator) -> np.ndarray:
    """CENTRES random unit vectors: the clusters' middles."""
    middles = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    return middles / np.linalg.norm(middles, axis=1, keepdims=True)


def clustered(n: int, middles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors around the given centres (see the module docstring)."""
    noise = rng.standard_normal((n, DIM)).astype(np.float32) * (SPREAD / np.sqrt(DIM))
    points = middles[rng.integers(0, len(middles), n)] + noise
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def percentile(values: list[float], fraction: float) -> float:
    """The value at `fraction` (0..1) of the sorted values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def folder_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def timed_searches(index: ExactIndex | ApproximateIndex, queries: np.ndarray,
                   excludes: list[set[str]], allowed: set[str] | None = None
                   ) -> tuple[list[list[str]], list[float]]:
    """Results and per-query latency (ms) of one search at a time."""
    results, latencies = [], []
    for query, exclude in zip(queries, excludes):
        started = time.perf_counter()
        found = index.search(query, K, exclude=exclude, allowed=allowed)
        latencies.append((time.perf_counter() - started) * 1000)
        results.append([image_id for image_id, _ in found])
    return results, latencies


def recall(approximate: list[list[str]], exact: list[list[str]]) -> float:
    """Share of the exact top-k that the approximate results hold."""
    hits = sum(len(set(a) & set(e)) for a, e in zip(approximate, exact))
    return hits / max(1, sum(len(e) for e in exact))


def measure(kind: type, ids: list[str], vectors: np.ndarray, queries: np.ndarray,
            excludes: list[set[str]], allowed: set[str], extra: np.ndarray,
            folder: Path) -> tuple[dict, list[list[str]], list[list[str]], object]:
    """Build one index and time everything; returns the record, its two result lists and
    the index as saved and loaded again (without the upserted batches)."""
    started = time.perf_counter()
    index = kind(DIM, model="bench")
    index.upsert(ids, vectors)
    build_s = time.perf_counter() - started
    index.search(queries[0], K)  # warm up
    results, latencies = timed_searches(index, queries, excludes)
    filtered, filtered_latencies = timed_searches(index, queries, excludes, allowed)

    started = time.perf_counter()
    index.save(folder)
    save_s = time.perf_counter() - started
    started = time.perf_counter()
    loaded = load_index(folder)
    load_s = time.perf_counter() - started
    assert len(loaded) == len(ids)

    upserts = []
    for batch in range(5):
        chunk = extra[batch * UPSERT_BATCH:(batch + 1) * UPSERT_BATCH]
        new_ids = [f"new-{batch}-{row}" for row in range(len(chunk))]
        started = time.perf_counter()
        index.upsert(new_ids, chunk)
        upserts.append((time.perf_counter() - started) * 1000)

    record = {
        "kind": kind.kind,
        "build_s": round(build_s, 3),
        "build_vectors_per_s": round(len(ids) / build_s),
        "query_p50_ms": round(percentile(latencies, 0.50), 3),
        "query_p99_ms": round(percentile(latencies, 0.99), 3),
        "query_mean_ms": round(float(np.mean(latencies)), 3),
        "allowed_10pct_p50_ms": round(percentile(filtered_latencies, 0.50), 3),
        "allowed_10pct_p99_ms": round(percentile(filtered_latencies, 0.99), 3),
        f"upsert_{UPSERT_BATCH}_ms": round(percentile(upserts, 0.50), 2),
        "save_s": round(save_s, 3),
        "load_s": round(load_s, 3),
        "disk_mb": round(folder_mb(folder), 1),
    }
    return record, results, filtered, loaded


def run_size(n: int, queries_n: int, rng: np.random.Generator, work: Path) -> dict:
    """Exact and HNSW on the same n vectors; returns the size's record."""
    middles = centres(rng)  # library, queries and later additions share the clusters
    vectors = clustered(n, middles, rng)
    ids = [f"{number:064x}" for number in range(n)]  # sha256-hex-shaped ids
    queries = clustered(queries_n, middles, rng)
    extra = clustered(5 * UPSERT_BATCH, middles, rng)
    allowed = set(rng.choice(ids, int(n * ALLOWED_SHARE), replace=False).tolist())
    # Already-used images sit near the query: 3 of its top 10, plus 2 random ones.
    top = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    excludes = [{ids[row] for row in top[number, [0, 3, 7]]}
                | {ids[row] for row in rng.integers(0, n, EXCLUDED - 3)}
                for number in range(queries_n)]

    exact, exact_results, exact_filtered, _ = measure(
        ExactIndex, ids, vectors, queries, excludes, allowed, extra, work / f"exact-{n}")
    approximate, approximate_results, approximate_filtered, index = measure(
        ApproximateIndex, ids, vectors, queries, excludes, allowed, extra, work / f"hnsw-{n}")
    approximate["recall_at_8"] = round(recall(approximate_results, exact_results), 4)
    approximate["allowed_10pct_recall_at_8"] = round(
        recall(approximate_filtered, exact_filtered), 4)
    approximate["ef_sweep"] = ef_sweep(index, queries, excludes, exact_results)
    return {"n": n, "exact": exact, "hnsw": approximate}


def ef_sweep(index: ApproximateIndex, queries: np.ndarray, excludes: list[set[str]],
             exact_results: list[list[str]]) -> list[dict]:
    """recall@8 and latency by efSearch, on the index as loaded from disk."""
    default, rows = index.ef_search, []
    for ef in EF_SWEEP:
        index.ef_search = ef
        results, latencies = timed_searches(index, queries, excludes)
        rows.append({"ef_search": ef, "recall_at_8": round(recall(results, exact_results), 4),
                     "query_p50_ms": round(percentile(latencies, 0.50), 3),
                     "query_p99_ms": round(percentile(latencies, 0.99), 3)})
    index.ef_search = default
    return rows


def exact_sweep(sizes: tuple[int, ...], queries_n: int, rng: np.random.Generator) -> list[dict]:
    """Exact query latency by library size: where p50 passes ~5 ms sets DEFAULT_ANN_THRESHOLD."""
    rows = []
    for n in sizes:
        middles = centres(rng)
        index = ExactIndex(DIM)
        index.upsert([f"{number:064x}" for number in range(n)], clustered(n, middles, rng))
        queries = clustered(queries_n, middles, rng)
        _, latencies = timed_searches(index, queries, [set()] * queries_n)
        rows.append({"n": n, "query_p50_ms": round(percentile(latencies, 0.50), 3),
                     "query_p99_ms": round(percentile(latencies, 0.99), 3)})
    return rows


def main() -> int:
    """Parse flags, run the benchmark, print and save the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--queries", type=int, default=None, help="timed searches (500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/results/index.json (--quick: print only)")
    args = parser.parse_args()
    queries_n = args.queries or (100 if args.quick else 500)
    if queries_n < 1:
        parser.error("--queries must be at least 1")
    sizes = (2_000, 10_000) if args.quick else (10_000, 100_000)
    sweep = (5_000, 10_000) if args.quick else (10_000, 20_000, 30_000, 40_000, 50_000,
                                                   75_000, 100_000)
    out = args.out or (None if args.quick else
                       Path(__file__).resolve().parent / "results" / "index.json")

    import faiss

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        results = [run_size(n, queries_n, rng, work) for n in sizes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "data": {"dim": DIM, "centres": CENTRES, "spread": SPREAD, "seed": args.seed,
                 "queries": queries_n, "k": K, "excluded_per_query": EXCLUDED,
                 "allowed_share": ALLOWED_SHARE},
        "hnsw": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION,
                 "efSearch": HNSW_EF_SEARCH},
        "default_ann_threshold": DEFAULT_ANN_THRESHOLD,
        "results": results,
        "exact_sweep": exact_sweep(sweep, min(queries_n, 300), rng),
        "target_p50_ms_at_100k": 10.0,
        "machine": {"cpus": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
                    "faiss": faiss.__version__, "numpy": np.__version__,
                    "python": platform.python_version(), "arch": platform.machine()},
    }
    text = json.dumps(record, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
