"""Visible text in images (OCR), for parrot-aware retrieval (REFERENCE section 4).

CLIP-like matching rewards an image that merely shows the query's words. Knowing which words
an image shows, and how much of it they cover, lets retrieval demote such matches. The
default spotter is RapidOCR (PP-OCR models inside the `rapidocr-onnxruntime` wheel, offline).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MAX_SIDE = 1024  # images are scaled down to this before OCR (speed; text stays readable)
MIN_CONFIDENCE = 0.5
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass
class VisibleText:
    """The words an image shows and the share of its area their boxes cover (0..1)."""

    words: list[str] = field(default_factory=list)
    area: float = 0.0
    engine: str = ""


class TextSpotter(Protocol):
    """Reads the visible text of an image file."""

    name: str

    def read(self, path: Path) -> VisibleText: ...


def words_of(text: str) -> list[str]:
    """Lower-case word tokens (letters and digits) of a text."""
    return [word.lower() for word in _WORD.findall(text)]


def _polygon_area(points: list[list[float]]) -> float:
    """Shoelace area of a detection box given as corner points."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1]):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2


class RapidTextSpotter:
    """RapidOCR's detector + recogniser; the engine loads on first use, once."""

    name = "rapidocr"

    def __init__(self) -> None:
        self._engine: Any = None
        self._lock = threading.Lock()

    def _ocr(self) -> Any:
        with self._lock:
            if self._engine is None:
                from rapidocr_onnxruntime import RapidOCR

                self._engine = RapidOCR()
            return self._engine

    def read(self, path: Path) -> VisibleText:
        """Words (confidence >= 0.5) and the share of the image their boxes cover."""
        import numpy as np
        from PIL import Image

        with Image.open(path) as opened:
            image = opened.convert("RGB")
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        result, _ = self._ocr()(np.asarray(image))
        words: list[str] = []
        covered = 0.0
        for box, text, confidence in result or []:
            if float(confidence) < MIN_CONFIDENCE:
                continue
            words += words_of(text)
            covered += _polygon_area([list(map(float, point)) for point in box])
        area = min(1.0, covered / float(image.width * image.height))
        return VisibleText(words=words, area=round(area, 4), engine=self.name)


def load_text_spotter() -> TextSpotter | None:
    """RapidOCR when its package is installed, else None (retrieval then skips the penalty)."""
    import importlib.util

    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        return None
    return RapidTextSpotter()


def text_match_share(query: str, visible: list[str]) -> float:
    """The share of the query's words (3+ letters) that the image shows as text."""
    wanted = {word for word in words_of(query) if len(word) >= 3}
    if not wanted:
        return 0.0
    return len(wanted & set(visible)) / len(wanted)
