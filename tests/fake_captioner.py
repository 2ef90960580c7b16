"""Test doubles for captioners (models/captioner.py Captioner protocol); no model involved.

`ColourCaptioner` describes an image by its size and dominant colour, so its captions are
deterministic and differ between the test images. The module-level functions are plugin
factories for `--model tests.fake_captioner:NAME` / COMPOSER_CAPTIONER; `photo` makes test
images.
"""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

from PIL import Image

from models.captioner import open_image

COLOUR_WORDS = {0: "red", 1: "green", 2: "blue"}
RED, GREEN, BLUE = (200, 30, 30), (30, 190, 40), (20, 40, 210)


def photo(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (64, 48),
          format: str = "PNG") -> bytes:
    """A real image: one background colour with seeded random grey blocks (distinct layouts
    give distinct perceptual hashes, so the store never takes them for near-duplicates)."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, colour)
    for _ in range(6):
        x, y = rng.randrange(size[0] - 8), rng.randrange(size[1] - 8)
        shade = rng.randrange(256)
        image.paste((shade, shade, shade), (x, y, x + rng.randrange(3, 9), y + rng.randrange(3, 9)))
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


class ColourCaptioner:
    """Captions "a red picture, 64 by 48 pixels, ..." from the pixels; records each call.

    `delay` seconds are slept per image (a slow model); images whose file name starts with
    one of `fail_prefixes` raise RuntimeError (a model error on that image).
    """

    def __init__(self, name: str = "fake-colour", delay: float = 0.0,
                 fail_prefixes: tuple[str, ...] = ()) -> None:
        self.name = name
        self.delay = delay
        self.fail_prefixes = fail_prefixes
        self.calls: list[str] = []

    def caption(self, image: str | Path | Image.Image) -> str:
        label = Path(image).name if not isinstance(image, Image.Image) else "<image>"
        self.calls.append(label)
        if any(label.startswith(prefix) for prefix in self.fail_prefixes):
            raise RuntimeError(f"the fake model cannot read {label}")
        picture = open_image(image)
        if self.delay:
            time.sleep(self.delay)
        red, green, blue = (round(value) for value in picture.resize((1, 1)).getpixel((0, 0)))
        channel = max(range(3), key=lambda index: (red, green, blue)[index])
        return (f"  a {COLOUR_WORDS[channel]} picture,\n {picture.width} by {picture.height} "
                f"pixels, mean colour ({red}, {green}, {blue})  ")


def colour_captioner() -> ColourCaptioner:
    """Plugin factory: a ColourCaptioner named "fake-colour"."""
    return ColourCaptioner()


def other_captioner() -> ColourCaptioner:
    """Plugin factory: the same captions under another model name ("fake-other")."""
    return ColourCaptioner(name="fake-other")


def slow_captioner() -> ColourCaptioner:
    """Plugin factory: a ColourCaptioner that takes 0.7 s per image (to interrupt it)."""
    return ColourCaptioner(delay=0.7)


def not_a_captioner() -> object:
    """Plugin factory that returns something without caption(): load_captioner rejects it."""
    return object()
