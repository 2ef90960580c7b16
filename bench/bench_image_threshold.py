"""The placement threshold and the picture-of-text check, on the labelled set.

One library of the set's images (bench/retrieval_set.py, decoys included) with the real
embedder and OCR, then, all in one run:

1. P@1 / MRR of the 48 labelled queries with the picture-of-text check off and on, and for
   a grid of flat shares (models/visual_text.py), with the app's other default weights;
2. the placement threshold: for every query (the 48 that have an answer and the 20
   NONE_QUERIES that have none) the best score; a slot is filled when it reaches the
   threshold. A placement is right when the image placed is the labelled one. Reported per
   threshold: precision (right placements / placements), recall (right placements / the 48),
   F1; chosen: the highest F1 among thresholds with precision >= 0.9 (else the highest F1).

    .venv/bin/python bench/bench_image_threshold.py [--out bench/results/image_threshold.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_retrieval_quality import build_library  # noqa: E402
from bench.retrieval_set import NONE_QUERIES, QUERIES, decoys  # noqa: E402
from composer.retrieval.retriever import Retriever  # noqa: E402
from models.visual_text import DEFAULT_FLAT_SHARE, TextPictureCheck, flat_share  # noqa: E402

FLAT_SHARES = (None, 0.4, 0.5, 0.6, 0.7, 0.8)
THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(2, 15))
MIN_PRECISION = 0.9


def ranks(retriever: Retriever, ids: dict[str, str]) -> list[int]:
    """The rank of each labelled query's image."""
    found = []
    for query in QUERIES:
        ranked = [item.image_id for item in retriever.rank(query.text, k=len(ids))]
        found.append(ranked.index(ids[query.relevant]) + 1)
    return found


def quality(found: list[int], members: list[int]) -> dict:
    return {"queries": len(members),
            "p_at_1": round(sum(found[i] == 1 for i in members) / len(members), 4),
            "mrr": round(sum(1 / found[i] for i in members) / len(members), 4)}


def decoy_rows(retriever: Retriever, ids: dict[str, str]) -> list[dict]:
    """P@1 / MRR for each flat share (None: the check off)."""
    decoy_words = {"coffee", "cat", "rocket", "galaxies", "dahlia", "moon", "lunar"}
    contested = [i for i, query in enumerate(QUERIES)
                 if decoy_words & set(query.text.lower().split())]
    rows = []
    for min_flat in FLAT_SHARES:
        retriever.text_pictures = TextPictureCheck(min_flat)
        found = ranks(retriever, ids)
        rows.append({"min_flat_share": min_flat, "all": quality(found, list(range(len(found)))),
                     "decoy_contested": quality(found, contested),
                     "misses": [{"query": QUERIES[i].text, "rank": found[i]}
                                for i in range(len(found)) if found[i] > 1]})
    return rows


def threshold_rows(retriever: Retriever, ids: dict[str, str]) -> tuple[list[dict], dict]:
    """Precision / recall / F1 of placing the best image at each threshold."""
    best = []  # (score, right) per query; right is None for a query with no answer
    for query in QUERIES:
        top = retriever.rank(query.text, k=1)[0]
        best.append((top.score, top.image_id == ids[query.relevant]))
    for text in NONE_QUERIES:
        best.append((retriever.rank(text, k=1)[0].score, False))
    rows = []
    for threshold in THRESHOLDS:
        placed = [right for score, right in best if score >= threshold]
        right = sum(placed)
        precision = right / len(placed) if placed else 1.0
        recall = right / len(QUERIES)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        none_placed = sum(score >= threshold for score, _ in best[len(QUERIES):])
        rows.append({"threshold": threshold, "placed": len(placed), "right": right,
                     "none_queries_placed": none_placed, "precision": round(precision, 4),
                     "recall": round(recall, 4), "f1": round(f1, 4)})
    good = [row for row in rows if row["precision"] >= MIN_PRECISION] or rows
    chosen = max(good, key=lambda row: (row["f1"], -row["threshold"]))
    scores = {"answerable_best": [round(score, 4) for score, _ in best[:len(QUERIES)]],
              "none_best": [round(score, 4) for score, _ in best[len(QUERIES):]]}
    return rows, {"chosen": chosen, **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/image_threshold.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        retriever, ids, _ = build_library(Path(home))
        flats = {key: flat_share(retriever.store.path(image_id)) for key, image_id in ids.items()}
        texts = retriever.store.texts(list(ids.values()))
        decoy = decoy_rows(retriever, ids)
        retriever.text_pictures = TextPictureCheck(DEFAULT_FLAT_SHARE)
        thresholds, chosen = threshold_rows(retriever, ids)
    report = {
        "images": len(ids), "decoys": [item.key for item in decoys()],
        "queries": len(QUERIES), "none_queries": len(NONE_QUERIES),
        "embedder": retriever.model,
        "ocr": retriever.spotter.name if retriever.spotter else None,
        "flat_share": {key: {"flat": flats[key], "text_area": texts.get(ids[key], ([], 0))[1]}
                       for key in ids},
        "decoy_check": decoy, "default_flat_share": DEFAULT_FLAT_SHARE,
        "thresholds": thresholds, **chosen,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'flat share':>10} {'P@1':>6} {'MRR':>6} {'contested P@1':>13} {'contested MRR':>13}")
    for row in decoy:
        print(f"{str(row['min_flat_share']):>10} {row['all']['p_at_1']:>6} "
              f"{row['all']['mrr']:>6} {row['decoy_contested']['p_at_1']:>13} "
              f"{row['decoy_contested']['mrr']:>13}")
    print(f"{'threshold':>9} {'placed':>6} {'right':>5} {'none placed':>11} {'prec':>6} "
          f"{'recall':>6} {'F1':>6}")
    for row in thresholds:
        print(f"{row['threshold']:>9} {row['placed']:>6} {row['right']:>5} "
              f"{row['none_queries_placed']:>11} {row['precision']:>6} {row['recall']:>6} "
              f"{row['f1']:>6}")
    print(f"chosen threshold: {chosen['chosen']}")


if __name__ == "__main__":
    main()
