"""The whole `Retriever.search` at 10k and 100k library images: exact vs approximate index.

bench/bench_index.py times the vector indexes alone; this times what a composition waits for
per image slot: embedding the query with the real MiniLM embedder, syncing with the database
(one cheap state query), the vector search, BM25 over 10k/100k captions, the visible-text
lookup and the blend, then loading the k candidates' records. Both kinds of index search the
same library in the same run.

The library is synthetic: image rows inserted straight into SQLite (no files: search never
opens them), captions drawn from a vocabulary, caption vectors drawn around 1000 cluster
centres (embedding 100k captions with MiniLM would take minutes on 2 cores). Dense scores are
therefore not meaningful, but their cost is the real one.

    .venv/bin/python bench/bench_retrieval_scale.py [--sizes 10000 100000] [--queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from composer.config import Settings
from composer.retrieval.retriever import Retriever
from models.registry import load_embedder
from storage.db import Database
from storage.images import ImageStore
from storage.tables import ImageEmbeddingRow, ImageRow, utcnow

WORDS = ("harbor boat sunrise mountain lake city street market temple garden cat dog horse "
         "bridge tower river forest snow desert beach night lights rocket galaxy coffee cup "
         "flower field train station portrait child old man woman bicycle car road rain fog "
         "castle wall stone bird tree leaf autumn spring summer winter festival crowd music "
         "painting museum library book window door kitchen bread fish fruit vegetable").split()
QUERIES = ("a quiet harbor at sunrise", "a temple garden in autumn", "a cat by a window",
           "a crowded night market", "snow on a mountain lake", "an old bridge over a river",
           "a rocket launch at night", "fresh bread in a kitchen")
K = 4
EXCLUDED = 3


def fill(database: Database, n: int, model: str, dim: int, seed: int = 0) -> None:
    """n image rows with captions and caption vectors, inserted in bulk."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    now = utcnow()
    for start in range(0, n, 5000):
        count = min(5000, n - start)
        points = centres[rng.integers(0, 1000, count)] + rng.standard_normal((count, dim)) * 1.5
        points = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype("<f4")
        images, vectors = [], []
        for offset in range(count):
            image_id = f"{start + offset:064x}"
            caption = " ".join(rng.choice(WORDS, size=10))
            images.append(dict(id=image_id, path=f"{image_id[:2]}/{image_id}.png", format="PNG",
                               width=640, height=480, bytes=1000, caption=caption, source="bench",
                               license="CC0 1.0", attribution="", created_at=now,
                               caption_source="user"))
            vectors.append(dict(image_id=image_id, model=model, dim=dim, kind="caption",
                                vector=points[offset].tobytes(), created_at=now))
        with database.session() as session:
            session.execute(ImageRow.__table__.insert(), images)
            session.execute(ImageEmbeddingRow.__table__.insert(), vectors)


def measure(retriever: Retriever, queries: int) -> dict:
    """First search (build + sync) and then single-search latencies."""
    started = time.perf_counter()
    retriever.search(QUERIES[0], k=K)
    first = time.perf_counter() - started
    exclude = {item.image_id for item in retriever.search(QUERIES[1], k=EXCLUDED)}
    times = []
    for number in range(queries):
        started = time.perf_counter()
        retriever.search(QUERIES[number % len(QUERIES)], k=K, exclude=exclude)
        times.append((time.perf_counter() - started) * 1000)
    owner = []
    for number in range(max(20, queries // 10)):
        started = time.perf_counter()
        retriever.search(QUERIES[number % len(QUERIES)], k=K, exclude=exclude, owner="key:me")
        owner.append((time.perf_counter() - started) * 1000)
    return {"index": type(retriever._captions.index).__name__,
            "first_search_s": round(first, 2),
            "search_p50_ms": round(float(np.percentile(times, 50)), 2),
            "search_p99_ms": round(float(np.percentile(times, 99)), 2),
            "search_with_owner_p50_ms": round(float(np.percentile(owner, 50)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", default="bench/results/retrieval_scale.json")
    args = parser.parse_args()
    embedder = load_embedder(Settings.from_env({}, home=Path(tempfile.gettempdir())))
    embedded = embedder.encode(["warm up"])
    started = time.perf_counter()
    for _ in range(50):
        embedder.encode([QUERIES[0]])
    embed_ms = (time.perf_counter() - started) / 50 * 1000
    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as home:
            database = Database(f"sqlite:///{Path(home) / 'bench.db'}")
            database.migrate()
            fill(database, n, embedder.name, embedded.shape[1])
            store = ImageStore(database, Path(home) / "images")
            row = {"n": n}
            for label, threshold in (("exact", n + 1), ("approximate", 0)):
                retriever = Retriever(store, embedder, ann_threshold=threshold)
                retriever.index()  # builds (and for "approximate" promotes) the index
                row[label] = measure(retriever, args.queries)
            database.dispose()
        results.append(row)
        print(json.dumps(row), flush=True)
    report = {"generated": datetime.now(UTC).isoformat(timespec="seconds"),
              "embedder": embedder.name, "query_embedding_ms": round(embed_ms, 2),
              "k": K, "excluded": EXCLUDED, "queries": args.queries, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"query embedding alone: {embed_ms:.2f} ms")


if __name__ == "__main__":
    main()
