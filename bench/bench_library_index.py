"""Benchmark a big `library add`: storing the files, then indexing captions and visible text.

    .venv/bin/python bench/bench_library_index.py [--count 10000] [--ocr-sample 40]
        [--out bench/results/library_index.json]

Makes `--count` small PNGs (64x64: a seeded random pattern of 8x8 blocks, so that their
perceptual hashes differ, plus a few shapes) with sidecar captions from a word list, then runs
`python -m composer library add FOLDER` in-process through `composer.cli.main`, the CLI's code
path: the embedded MiniLM embedder on the CPU and RapidOCR. Phases are timed by wrapping the
functions the command calls: `add_images` (rows), caption embedding, OCR, and the whole
indexing call (including the vector index build). Then it compares:

- caption indexing with the old batch (64 captions per encode call and transaction) against
  the new one (256), re-embedding 2,048 of the captions, the arms alternating for 3 rounds;
- OCR per image with RapidOCR's own sizing (every image enlarged to a 736-pixel short side)
  against the bounded enlargement of models/ocr.py, on `--ocr-sample` of the images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = ("red blue green yellow small large old new kite boat house tree river mountain cat "
         "dog bird car road bridge sun moon cloud field flower harbor tower garden market "
         "station lake forest beach window door street").split()


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """`count` distinct 64x64 PNGs with a sidecar caption of eight words each."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        blocks = Image.new("L", (8, 8))
        blocks.putdata([rng.randrange(256) for _ in range(64)])
        tint = tuple(rng.randrange(256) for _ in range(3))
        image = Image.merge("RGB", [blocks.point(lambda v, t=t: (v + t) // 2) for t in tint])
        image = image.resize((64, 64), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(image)
        for _ in range(2):
            x, y = rng.randrange(48), rng.randrange(48)
            box = (x, y, x + rng.randrange(4, 16), y + rng.randrange(4, 16))
            colour = tuple(rng.randrange(256) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        name = folder / f"image{number:05d}.png"
        image.save(name)
        name.with_name(name.name + ".txt").write_text(
            " ".join(rng.choice(WORDS) for _ in range(8)), encoding="utf-8")


def timed(owner: Any, name: str, timings: dict[str, float], key: str) -> None:
    """Wrap owner.name so that the seconds spent in it add up in timings[key]."""
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - started

    setattr(owner, name, wrapper)


def per_1000(seconds: float, count: int) -> float:
    return round(seconds / max(1, count) * 1000, 2)


def run_add(folder: Path, home: Path) -> dict[str, Any]:
    """`library add FOLDER` through the CLI's main(), with its phases timed."""
    from composer import cli, library
    from composer.retrieval.retriever import Retriever
    from models.embed import SentenceEmbedder
    from models.ocr import RapidTextSpotter

    timings: dict[str, float] = {}
    timed(library, "add_images", timings, "rows_s")
    timed(SentenceEmbedder, "_load", timings, "embedder_load_s")  # inside the first encode
    timed(RapidTextSpotter, "_ocr", timings, "ocr_engine_load_s")  # inside the first read
    timed(Retriever, "index", timings, "index_s")
    timed(Retriever, "_embed_captions", timings, "captions_s")
    timed(Retriever, "_read_text", timings, "ocr_s")
    started = time.perf_counter()
    code = cli.main(["--home", str(home), "library", "add", str(folder)])
    total = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"library add exited {code}")
    with sqlite3.connect(home / "composer.db") as connection:
        images = connection.execute("select count(*) from images").fetchone()[0]
        vectors = connection.execute("select count(*) from image_embeddings").fetchone()[0]
        read = connection.execute("select count(*) from image_text").fetchone()[0]
    return {"total_s": round(total, 2), "images_stored": images, "caption_vectors": vectors,
            "images_read_by_ocr": read, **{key: round(value, 2) for key, value in timings.items()}}


def compare_caption_batches(home: Path, batches: tuple[int, ...], subset: int,
                            rounds: int) -> dict[str, Any]:
    """Seconds per 1,000 captions to embed and store `subset` captions again, per
    INDEX_BATCH value: the arms alternate for `rounds` rounds (other load on the machine
    comes and goes), and the best and median round are kept."""
    import statistics

    from composer.config import Settings
    from composer.retrieval import retriever as retrieval
    from composer.services import Services

    services = Services(Settings.from_env(home=str(home)))
    store, embedder = services.images, services.embedder
    embedder.encode(["warm up"])
    seconds: dict[int, list[float]] = {batch: [] for batch in batches}
    for _ in range(rounds):
        for batch in batches:
            with sqlite3.connect(home / "composer.db") as connection:
                connection.execute("delete from image_embeddings where image_id in (select id "
                                   "from images order by id limit ?)", (subset,))
            retrieval.INDEX_BATCH = batch
            retriever = retrieval.Retriever(store, embedder)  # no OCR: captions only
            started = time.perf_counter()
            count = retriever.index()
            seconds[batch].append(per_1000(time.perf_counter() - started, count))
    found: dict[str, Any] = {"captions": subset, "rounds": rounds}
    for batch, values in seconds.items():
        found[f"batch_{batch}_best_s_per_1000"] = min(values)
        found[f"batch_{batch}_median_s_per_1000"] = round(statistics.median(values), 2)
    return found


def compare_ocr(home: Path, sample: int) -> dict[str, float]:
    """Seconds per image for RapidOCR's own sizing and for models/ocr.py's, on a sample."""
    import numpy as np
    from PIL import Image
    from rapidocr_onnxruntime import RapidOCR

    from models.ocr import RapidTextSpotter

    files = sorted((home / "images").rglob("*.png"))[:sample]
    default = RapidOCR()
    spotter = RapidTextSpotter()
    default(np.zeros((64, 64, 3), dtype=np.uint8))
    spotter.read(files[0])
    arms: dict[str, Callable[[Path], Any]] = {
        "rapidocr_default_sizing": lambda path: default(np.asarray(Image.open(path)
                                                                   .convert("RGB"))),
        "bounded_enlargement": spotter.read,
    }
    found = {}
    for name, read in arms.items():
        started = time.perf_counter()
        for path in files:
            read(path)
        found[f"{name}_s_per_1000"] = per_1000(time.perf_counter() - started, len(files))
    found["sample"] = len(files)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--ocr-sample", type=int, default=40)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "library_index.json")
    args = parser.parse_args()
    os.environ.pop("DATABASE_URL", None)
    import torch

    with tempfile.TemporaryDirectory() as temp:
        folder, home = Path(temp) / "photos", Path(temp) / "home"
        started = time.perf_counter()
        make_images(folder, args.count)
        print(f"made {args.count} images in {time.perf_counter() - started:.1f}s",
              file=sys.stderr)
        added = run_add(folder, home)
        stored = added["images_stored"]
        result: dict[str, Any] = {
            "count": args.count, **added,
            "rows_s_per_1000": per_1000(added["rows_s"], args.count),
            "captions_s_per_1000": per_1000(added.get("captions_s", 0.0), stored),
            "captions_without_model_load_s_per_1000": per_1000(
                added.get("captions_s", 0.0) - added.get("embedder_load_s", 0.0), stored),
            "ocr_without_engine_load_s_per_1000": per_1000(
                added.get("ocr_s", 0.0) - added.get("ocr_engine_load_s", 0.0), stored),
            "ocr_s_per_1000": per_1000(added.get("ocr_s", 0.0), stored),
            "index_s_per_1000": per_1000(added.get("index_s", 0.0), stored),
            "total_s_per_1000": per_1000(added["total_s"], args.count),
            "caption_batches": compare_caption_batches(home, (64, 256),
                                                       min(2048, stored), rounds=3),
            "ocr_per_image": compare_ocr(home, args.ocr_sample),
            "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "machine": platform.machine(),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
