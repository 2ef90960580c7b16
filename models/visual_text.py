"""Pictures of text: images whose only content is lettering on a plain background.

A plain card reading COFFEE captioned "a cup of coffee" is no photo of coffee, whatever its
caption says. Its caption may name more than the visible words, so the check cannot rest on
the caption's wording; it rests on the pixels: the image shows text (OCR found words) and
most of it is flat (tiles of nearly one shade), as a background around lettering is. Photos,
even of signs in a street, have texture almost everywhere.

A query that asks for text (a sign, a poster, a page ...) still finds such pictures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

THUMB_SIDE = 128  # the image is scaled to this long side before tiles are measured
TILE = 8  # tile side in thumbnail pixels
FLAT_STD = 6.0  # a tile whose grey levels vary less than this is flat (0..255 scale)
# An image showing text whose flat share reaches this is a picture of text. Measured on the
# labelled set of bench/retrieval_set.py (bench/bench_image_threshold.py).
DEFAULT_FLAT_SHARE = 0.6
MIN_TEXT_AREA = 0.01  # OCR boxes covering less than this share of the image do not count

_ASKS_FOR_TEXT = re.compile(
    r"\b(signs?|signboards?|signage|text|texts|words?|letters?|lettering|poster|posters|"
    r"banners?|labels?|logos?|pages?|documents?|written|writing|handwritten|typography|"
    r"font|quote|quotation|headline|title|menu|notice|placard|billboards?|slogan|"
    r"inscription|card|cards)\b|标志|招牌|文字|海报|标语|字", re.I)


def flat_share(path: Path | str) -> float:
    """The share of the image (0..1) made of flat tiles: near-uniform 8x8 patches of a
    128-pixel thumbnail. Plain backgrounds score near 1, photos low."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("L")
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    pixels = np.asarray(image, dtype=np.float32)
    rows, cols = pixels.shape[0] // TILE, pixels.shape[1] // TILE
    if rows == 0 or cols == 0:
        return 0.0
    tiles = pixels[:rows * TILE, :cols * TILE].reshape(rows, TILE, cols, TILE)
    spread = tiles.std(axis=(1, 3))
    return round(float((spread < FLAT_STD).mean()), 4)


def asks_for_text(query: str) -> bool:
    """Whether a query wants a picture of words (a sign, a poster, a page, a logo ...)."""
    return bool(_ASKS_FOR_TEXT.search(query)) or '"' in query


def readable(words: list[str]) -> bool:
    """Whether OCR read a real word: 3+ letters, not one letter repeated, or Chinese
    characters. Shapes misread as text ("88", "ml", "wwwwww") do not count."""
    return any((len(word) >= 3 and word.isalpha() and len(set(word.lower())) > 1)
               or any("\u4e00" <= char <= "\u9fff" for char in word) for word in words)


def is_text_picture(words: list[str], area: float, flat: float,
                    min_flat: float = DEFAULT_FLAT_SHARE) -> bool:
    """An image that shows text and is otherwise mostly empty: a picture of text."""
    return area >= MIN_TEXT_AREA and flat >= min_flat and readable(words)


class TextPictureCheck:
    """Which images are pictures of text, remembered per image id (ids are content hashes,
    so an id's pixels never change). `min_flat` None turns the check off."""

    def __init__(self, min_flat: float | None = DEFAULT_FLAT_SHARE) -> None:
        self.min_flat = min_flat
        self._flat: dict[str, float] = {}

    def remember(self, image_id: str, words: list[str], area: float, path: Path) -> None:
        """Measure an image that shows text when it is read (index time), for later searches."""
        if area >= MIN_TEXT_AREA and readable(words) and image_id not in self._flat:
            self._flat[image_id] = _safe_flat_share(path)

    def demote(self, query: str, image_id: str, words: list[str], area: float,
               path_of: Callable[[str], Path]) -> bool:
        """True when the image is a picture of text and the query does not ask for text."""
        if self.min_flat is None or area < MIN_TEXT_AREA or not readable(words):
            return False
        if image_id not in self._flat:
            self._flat[image_id] = _safe_flat_share(path_of(image_id))
        return (is_text_picture(words, area, self._flat[image_id], self.min_flat)
                and not asks_for_text(query))


def _safe_flat_share(path: Path) -> float:
    """flat_share, or 0 (not flat: never demoted) for a file that cannot be read."""
    try:
        return flat_share(path)
    except (OSError, ValueError):
        return 0.0
