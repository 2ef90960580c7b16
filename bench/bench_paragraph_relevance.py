"""Calibrate the on-topic threshold of the paragraph checks (composer/quality.py MIN_RELEVANCE).

Reads the documents an eval run composed (any database the app wrote) and scores every
paragraph with the embedded sentence embedder (all-MiniLM-L6-v2) against its own brief's
instruction (positives) and against every other document's instruction (negatives, a
paragraph from another article). For a grid of thresholds it reports the share of own
paragraphs passed (recall) and of foreign ones rejected, and the threshold with the best
balanced accuracy. Writes bench/results/paragraph_relevance.json.

    .venv/bin/python bench/bench_paragraph_relevance.py --database sqlite:////tmp/xhome-eval/composer.db
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of the eval's data")
    parser.add_argument("--language", default="en")
    parser.add_argument("--out", type=Path, default=Path("bench/results/paragraph_relevance.json"))
    args = parser.parse_args()

    from composer import quality
    from models.embed import SentenceEmbedder, embedded_embedder_path
    from storage.db import Database
    from storage.documents import DocumentRepository

    documents = DocumentRepository(Database(args.database))
    docs = [documents.get(row.id) for row in documents.list(limit=1000)]
    docs = [doc for doc in docs if doc.language == args.language and doc.text_blocks]
    embedder = SentenceEmbedder(embedded_embedder_path())
    instructions = [doc.instruction for doc in docs]
    own, foreign = [], []
    for number, doc in enumerate(docs):
        paragraphs = [block.text for block in doc.text_blocks]
        vectors = np.asarray(embedder.encode(paragraphs), dtype=np.float32)
        refs = np.asarray(embedder.encode(instructions), dtype=np.float32)
        scores = vectors @ refs.T
        own += scores[:, number].tolist()
        foreign += np.delete(scores, number, axis=1).ravel().tolist()
    grid = [round(float(value), 2) for value in np.arange(0.05, 0.55, 0.05)]
    rows = []
    for threshold in grid:
        recall = sum(score >= threshold for score in own) / len(own)
        rejected = sum(score < threshold for score in foreign) / len(foreign)
        rows.append({"threshold": threshold, "own_passed": round(recall, 3),
                     "foreign_rejected": round(rejected, 3),
                     "balanced_accuracy": round((recall + rejected) / 2, 3)})
    best = max(rows, key=lambda row: row["balanced_accuracy"])
    result = {
        "what": "paragraph-to-instruction cosine (all-MiniLM-L6-v2): own brief vs other briefs",
        "documents": len(docs), "own_paragraphs": len(own), "foreign_pairs": len(foreign),
        "own_median": round(statistics.median(own), 3),
        "foreign_median": round(statistics.median(foreign), 3),
        "current_threshold": quality.MIN_RELEVANCE, "grid": rows, "best": best,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "grid"}, indent=2))
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
