"""Benchmark: compose an 800-word, 3-image article with the embedded model and default library.

Reports the wall time split into generation (time inside the model), retrieval, storage and
everything else, measured in one run. Model loading and library seeding happen before the
clock starts (they are one-off start-up costs, measured by bench_model.py).

    .venv/bin/python bench/bench_compose.py [--words 800] [--images 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from composer.config import Settings  # noqa: E402
from composer.generation import StageTimer  # noqa: E402
from composer.services import Services  # noqa: E402
from composer.types import ComposeRequest, GenerationConfig  # noqa: E402

INSTRUCTION = "The history and science of lighthouses"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--words", type=int, default=800)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--home", type=Path, help="data dir (default: a fresh temp dir, "
                        "with the model cache shared from $COMPOSER_HOME if set)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                        "compose.json")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-compose-"))
    services = Services(Settings.from_env(home=home))
    setup_start = time.perf_counter()
    lm = services.lm
    retriever = services.retriever
    setup_seconds = time.perf_counter() - setup_start

    timer = StageTimer()
    composer = services.composer(timer=timer)
    request = ComposeRequest(INSTRUCTION, target_words=args.words, images=args.images,
                             generation=GenerationConfig(max_new_tokens=1024))
    start = time.perf_counter()
    doc = composer.compose_document(request)
    wall = time.perf_counter() - start

    parts = timer.as_dict()
    other = wall - sum(parts.values())
    result = {
        "model": lm.name,
        "library_images": services.images.count(),
        "setup_seconds_model_and_library": round(setup_seconds, 2),
        "words_requested": args.words,
        "words_written": doc.word_count,
        "images_placed": len(doc.image_blocks),
        "status": doc.status,
        "wall_seconds": round(wall, 2),
        "generation_seconds": parts.get("generation", 0.0),
        "retrieval_seconds": parts.get("retrieval", 0.0),
        "storage_seconds": parts.get("storage", 0.0),
        "other_seconds": round(other, 4),
        "pieces_streamed": timer.pieces,
        "non_generation_share": round((wall - parts.get("generation", 0.0)) / wall, 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    del retriever


if __name__ == "__main__":
    main()
