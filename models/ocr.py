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
# RapidOCR's own default enlarges every image until its short side is 736 pixels, a 64x64
# icon 11.5 times (130 times the pixels). Small images are enlarged towards that side by at
# most MAX_UPSCALE instead: small text then reads as well, at a fraction of the cost.
DETECT_SIDE = 736
MAX_UPSCALE = 2.0
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

                # The detector sees the image as read() prepares it (never enlarged again).
                self._engine = RapidOCR(det_limit_type="max",
                                        det_limit_side_len=round(MAX_SIDE * MAX_UPSCALE))
            return self._engine

    def read(self, path: Path) -> VisibleText:
        """Words (confidence >= 0.5) and the share of the image their boxes cover."""
        import numpy as np
        from PIL import Image

        with Image.open(path) as opened:
            image = opened.convert("RGB")
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        image = _enlarge_small(image)
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


def _enlarge_small(image: Any) -> Any:
    """The image enlarged so its short side nears DETECT_SIDE, by at most MAX_UPSCALE."""
    from PIL import Image

    scale = min(MAX_UPSCALE, DETECT_SIDE / max(1, min(image.size)))
    if scale <= 1.0:
        return image
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.BICUBIC)


def load_text_spotter() -> TextSpotter | None:
    """RapidOCR when its package is installed, else None (retrieval then skips the penalty)."""
    import importlib.util

    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        return None
    return RapidTextSpotter()


def text_match_share(query: str, visible: list[str]) -> float:
    """The share of the query's content words (3+ letters, not stop-words, plurals folded)
    that the image shows as text."""
    from models.keywords import fold_plural, tokenize

    wanted = {word for word in tokenize(query) if len(word) >= 3}
    if not wanted:
        return 0.0
    shown = {fold_plural(word.lower()) for word in visible}
    return len(wanted & shown) / len(wanted)


# Words that describe how text looks rather than what an image depicts: a caption made of
# these plus the image's visible words says nothing about the scene.
_FRAMING_WORDS = frozenset("""
a an the this that of in on with and or at to is are it its reading reads read says say
saying written writing word words text texts letter letters lettering font bold large big
small huge capital capitals uppercase printed print sign signs poster posters banner
banners label labels caption title image picture photo photograph showing shows shown
black white background plain
""".split())
SPELLED_SHARE = 0.6  # a caption whose content words are at least this share visible text


def caption_spells_text(caption: str, visible: list[str]) -> bool:
    """Whether a caption merely spells the image's visible text (REFERENCE section 4).

    True when the image shows text and at least 60% of the caption's content words (those
    that are not about lettering, like "sign", "reads", "letters") are among the visible
    words: "SUNSET" or "A poster with the words MOUNTAIN PEAKS" on a picture of those words.
    Such a caption describes the lettering, not a scene, so retrieval does not trust it.
    """
    shown = set(visible)
    if not shown:
        return False
    content = [word for word in words_of(caption) if word not in _FRAMING_WORDS]
    if not content:
        return False
    spelled = sum(word in shown for word in content)
    return spelled > 0 and spelled / len(content) >= SPELLED_SHARE
