"""Fixtures for pipeline, export and CLI tests: real SQLite storage and a small real library."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw

from storage.db import Database
from storage.documents import DocumentRepository
from storage.images import ImageStore

LIBRARY = [
    ("a quiet harbor at sunrise with fishing boats", (40, 90, 160)),
    ("a red lighthouse on a rocky cliff", (200, 40, 40)),
    ("a forest path in autumn light", (200, 120, 30)),
    ("an old stone bridge over a river", (120, 120, 120)),
    ("a busy market with fruit stalls", (60, 160, 60)),
    ("a snowy mountain under a blue sky", (230, 230, 250)),
]


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 48), mark: str = "") -> bytes:
    """A small real PNG of one colour with a diagonal line (distinct bytes per colour)."""
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).line((0, 0, size[0], size[1]), fill=(255, 255, 255), width=3)
    if mark:
        ImageDraw.Draw(image).text((2, 2), mark, fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def database(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'composer.db'}")
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def documents(database):
    return DocumentRepository(database)


@pytest.fixture
def image_store(database, tmp_path):
    store = ImageStore(database, tmp_path / "images")
    for caption, color in LIBRARY:
        store.add(png_bytes(color), caption=caption, source="test", license="CC0",
                  allow_near_duplicate=True,  # one drawing in several colours
                  attribution="Test Suite")
    return store
