"""Retrieval quality on the labelled set (bench/retrieval_set.py): precision@1 and MRR.

Builds a library of the set's 38 images in a temporary data dir with the real embedded text
embedder (all-MiniLM-L6-v2) and the real OCR (RapidOCR), then ranks all 48 queries under a
grid of weights, all in one run, so the rows compare like with like:

- the visual-text penalty weight (0 = off), with and without distrusting captions that merely
  spell the image's visible text;
- the BM25 keyword weight (0 = embeddings only).

The best row has the highest MRR; ties go to the row whose neighbouring penalties also score
highest (a default in the middle of a plateau), then to distrusting spelled captions (free
here, and it protects at lower weights), then to the smaller penalty. The app's
defaults (composer/retrieval/blend.py) are taken from that row.

"parrot" queries are those for which some other image of the set shows at least half of the
query's words as text (found by the OCR, not labelled by hand): where the penalty matters.

    .venv/bin/python bench/bench_retrieval_quality.py [--out bench/results/retrieval_quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.retrieval_set import QUERIES, images  # noqa: E402
from composer.config import Settings  # noqa: E402
from composer.retrieval.blend import Weights  # noqa: E402
from composer.retrieval.retriever import Retriever  # noqa: E402
from models.ocr import load_text_spotter, text_match_share  # noqa: E402
from models.registry import load_embedder  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.images import ImageStore  # noqa: E402

PENALTIES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
KEYWORD_WEIGHTS = (0.0, 0.15, 0.3, 0.5)


def build_library(home: Path) -> tuple[Retriever, dict[str, str], float]:
    """A store holding the labelled images, indexed; returns (retriever, key -> id, seconds)."""
    settings = Settings.from_env({}, home=home)
    database = Database.open(settings)
    store = ImageStore(database, settings.images_dir)
    retriever = Retriever(store, load_embedder(settings), load_text_spotter())
    ids = {}
    for labelled in images():
        image, _ = store.add(labelled.load(), name=labelled.key, caption=labelled.caption,
                             allow_near_duplicate=True)
        ids[labelled.key] = image.id
    started = time.perf_counter()
    retriever.index()
    return retriever, ids, time.perf_counter() - started


def evaluate(retriever: Retriever, ids: dict[str, str], parrot: set[int]) -> dict:
    """P@1 and MRR over all queries and per group, with the current weights."""
    ranks = []
    for query in QUERIES:
        ranked = [item.image_id for item in retriever.rank(query.text, k=len(ids))]
        ranks.append(ranked.index(ids[query.relevant]) + 1)
    groups = {"all": range(len(QUERIES)),
              "scene": [i for i, q in enumerate(QUERIES) if q.kind == "scene"],
              "text": [i for i, q in enumerate(QUERIES) if q.kind == "text"],
              "name": [i for i, q in enumerate(QUERIES) if q.kind == "name"],
              "parrot": sorted(parrot)}
    result = {}
    for name, members in groups.items():
        members = list(members)
        result[name] = {
            "queries": len(members),
            "p_at_1": round(sum(ranks[i] == 1 for i in members) / len(members), 4),
            "mrr": round(sum(1 / ranks[i] for i in members) / len(members), 4),
        }
    result["misses"] = [{"query": QUERIES[i].text, "rank": ranks[i]}
                        for i in range(len(QUERIES)) if ranks[i] > 1]
    return result


def parrot_queries(retriever: Retriever, ids: dict[str, str]) -> set[int]:
    """Queries for which another image shows at least half of the query's words as text."""
    texts = retriever.store.texts(list(ids.values()))
    found = set()
    for number, query in enumerate(QUERIES):
        for key, image_id in ids.items():
            words, _ = texts.get(image_id, ([], 0.0))
            if key != query.relevant and text_match_share(query.text, words) >= 0.5:
                found.add(number)
    return found


def _neighbours(rows: list[dict], row: dict) -> float:
    """The worse MRR of the next lower and higher penalty with the same other settings.

    Among settings that score the same, the one whose neighbours also score well is chosen:
    a default in the middle of a plateau, not on the edge of a cliff.
    """
    same = [other for other in rows
            if other["keyword_weight"] == row["keyword_weight"]
            and other["distrust_spelled_captions"] == row["distrust_spelled_captions"]]
    penalties = sorted(other["text_penalty"] for other in same)
    position = penalties.index(row["text_penalty"])
    around = [penalties[i] for i in (position - 1, position + 1) if 0 <= i < len(penalties)]
    return min(other["all"]["mrr"] for other in same if other["text_penalty"] in around)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/retrieval_quality.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        retriever, ids, index_seconds = build_library(Path(home))
        parrot = parrot_queries(retriever, ids)
        rows = []
        for keyword in KEYWORD_WEIGHTS:
            for distrust in (False, True):
                for penalty in PENALTIES:
                    if penalty == 0 and distrust:
                        continue  # distrust works through the penalty: same as penalty 0
                    retriever.weights = Weights(text_penalty=penalty, keyword=keyword,
                                                distrust_spelled_captions=distrust)
                    rows.append({"text_penalty": penalty, "distrust_spelled_captions": distrust,
                                 "keyword_weight": keyword,
                                 **evaluate(retriever, ids, parrot)})
    best = max(rows, key=lambda row: (row["all"]["mrr"], _neighbours(rows, row),
                                      row["all"]["p_at_1"], row["distrust_spelled_captions"],
                                      -row["text_penalty"], row["keyword_weight"] == 0.15))
    report = {
        "images": len(ids),
        "images_showing_text": sum(item.shows_text for item in images()),
        "queries": len(QUERIES),
        "parrot_queries": [QUERIES[i].text for i in sorted(parrot)],
        "embedder": retriever.model,
        "ocr": retriever.spotter.name if retriever.spotter else None,
        "index_seconds": round(index_seconds, 2),
        "best": {key: best[key] for key in ("text_penalty", "distrust_spelled_captions",
                                            "keyword_weight", "all", "parrot")},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'penalty':>8} {'distrust':>8} {'keyword':>8} {'P@1':>6} {'MRR':>6} "
          f"{'parrot P@1':>10} {'parrot MRR':>10} {'text MRR':>8} {'name MRR':>8}")
    for row in rows:
        print(f"{row['text_penalty']:>8} {str(row['distrust_spelled_captions']):>8} "
              f"{row['keyword_weight']:>8} {row['all']['p_at_1']:>6} {row['all']['mrr']:>6} "
              f"{row['parrot']['p_at_1']:>10} {row['parrot']['mrr']:>10} "
              f"{row['text']['mrr']:>8} {row['name']['mrr']:>8}")
    print(f"best: {report['best']}")


if __name__ == "__main__":
    main()
