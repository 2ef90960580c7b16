"""Benchmark: how long a paragraph edit takes with the embedded default writer.

A document of three hand-written paragraphs about lighthouses is stored; then the middle
paragraph is rewritten (and, for comparison, expanded and abbreviated) --runs times each,
with a different seed per run, through the same Editor.preview the UI streams. Measured per
run: time to the first streamed text (the prompt's prefill plus the first tokens the UI can
show), the total until the preview is complete, and the words written; then accepting the
last rewrite (one database change). Model loading happens before the clock starts (see
bench_model.py). Medians are reported.

    .venv/bin/python bench/bench_edit.py [--runs 5] [--out bench/results/edit.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composer.config import Settings  # noqa: E402
from composer.services import Services  # noqa: E402
from composer.types import Outline, SectionPlan, TextBlock, count_words  # noqa: E402

TITLE = "The History and Science of Lighthouses"
PARAGRAPHS = [
    "For more than two thousand years, lighthouses have guided sailors past rocks, shoals and "
    "dangerous headlands. The Pharos of Alexandria, finished around 280 BC, burned an open "
    "fire at the top of a tower that ancient writers described as one of the wonders of the "
    "world. Its light told ships where the harbor was long before charts were reliable.",
    "The great change came with optics. In 1822 Augustin Fresnel designed a lens built from "
    "concentric rings of glass prisms that bent scattered lamp light into a single powerful "
    "beam. A Fresnel lens could be seen more than twenty miles out to sea, and within a few "
    "decades it had replaced mirrors in lighthouses on every continent.",
    "Today most lighthouses run without keepers. Electric lamps, solar panels and automatic "
    "switches do the work that families once did through long nights, and satellite "
    "navigation guides most ships. Yet many towers still shine, both as backups for modern "
    "systems and as beloved landmarks of the coasts they protected.",
]
OPERATIONS = ("rewrite", "expand", "abbreviate")


def time_preview(editor, doc_id: str, op: str, block_id: int, seed: int) -> dict:
    """One streamed preview: seconds to the first text, total seconds, words, the proposal."""
    start = time.perf_counter()
    first = None
    last = None
    for step in editor.preview(doc_id, op, block_id=block_id, seed=seed):
        if first is None and step.text.strip():
            first = time.perf_counter() - start
        last = step
    total = time.perf_counter() - start
    return {"ttft_s": round(first if first is not None else total, 3),
            "total_s": round(total, 3), "words": count_words(last.text),
            "proposal": last.proposal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                        "edit.json")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-edit-"))
    services = Services(Settings.from_env(home=home))
    load_start = time.perf_counter()
    lm = services.lm
    load_seconds = time.perf_counter() - load_start

    outline = Outline(TITLE, [SectionPlan("Fire on the towers", ["Pharos"], 60),
                              SectionPlan("Lenses", ["Fresnel"], 60),
                              SectionPlan("Lighthouses today", ["automation"], 60)])
    documents = services.documents
    doc = documents.create(TITLE, TITLE, "en", {}, outline)
    blocks = documents.append_blocks(doc.id, [TextBlock(text, section=number)
                                              for number, text in enumerate(PARAGRAPHS)])
    documents.update_meta(doc.id, status="done")
    target = blocks[1].id
    editor = services.editor(with_images=False)

    editor_warmup = time_preview(editor, doc.id, "rewrite", target, seed=999)  # not counted
    results = {}
    for op in OPERATIONS:
        runs = [time_preview(editor, doc.id, op, target, seed=run) for run in range(args.runs)]
        results[op] = {
            "median_ttft_s": round(statistics.median(r["ttft_s"] for r in runs), 3),
            "median_total_s": round(statistics.median(r["total_s"] for r in runs), 3),
            "median_words": statistics.median(r["words"] for r in runs),
            "runs": [{k: v for k, v in r.items() if k != "proposal"} for r in runs],
        }
        if op == "rewrite":
            proposal = runs[-1]["proposal"]
    current = documents.get(doc.id)
    accept_start = time.perf_counter()
    editor.accept(proposal, expected_version=current.version)
    accept_seconds = time.perf_counter() - accept_start

    record = {
        "model": lm.name,
        "paragraph_words": count_words(PARAGRAPHS[1]),
        "runs": args.runs,
        "model_load_s": round(load_seconds, 2),
        "warmup_rewrite_total_s": editor_warmup["total_s"],
        "operations": results,
        "accept_s": round(accept_seconds, 3),
        "threads": int(os.environ.get("COMPOSER_THREADS") or 0) or "torch default",
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "command": "python bench/bench_edit.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
