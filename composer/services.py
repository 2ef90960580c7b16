"""Builds the app's components from Settings, once, for the CLI and for app.py.

Models load lazily (the first compose pays for them, listing documents does not) and only
once per process. The default image library is seeded on first run.
"""

from __future__ import annotations

import threading
from functools import cached_property

from composer.config import Settings
from composer.generation import StageTimer
from composer.pipeline import Composer
from models.lm import LanguageModel

STALE_COMPOSING_SECONDS = 15 * 60


class Services:
    """The database, repositories and models of one process, created on first use."""

    def __init__(self, settings: Settings, lm: LanguageModel | None = None):
        self.settings = settings
        self._lm = lm
        self._lock = threading.Lock()

    @cached_property
    def db(self):
        """The migrated database; documents left "composing" by a dead process are marked."""
        from storage.db import Database

        from storage.documents import DocumentRepository

        database = Database.open(self.settings)
        DocumentRepository(database).mark_stale_composing(STALE_COMPOSING_SECONDS)
        return database

    @cached_property
    def documents(self):
        from storage.documents import DocumentRepository

        return DocumentRepository(self.db)

    @cached_property
    def images(self):
        from storage.images import ImageStore

        return ImageStore(self.db, self.settings.images_dir)

    @cached_property
    def embedder(self):
        from models.registry import load_embedder

        return load_embedder(self.settings)

    @cached_property
    def retriever(self):
        """The library retriever; the default library is seeded the first time it is needed."""
        from composer.library import seed_default_library
        from models.retrieval import Retriever

        retriever = Retriever(self.images, self.embedder)
        if self.images.count() == 0:
            seed_default_library(self.images, retriever)
        retriever.index()
        return retriever

    @property
    def lm(self) -> LanguageModel:
        """The writer model, loaded once (thread-safe: two first requests load it once)."""
        with self._lock:
            if self._lm is None:
                from models.registry import load_language_model

                self._lm = load_language_model(self.settings)
            return self._lm

    def composer(self, timer: StageTimer | None = None, with_images: bool = True) -> Composer:
        """A Composer over the shared components (cheap; make one per composition).

        with_images=False skips loading the library and embedder (text-only articles).
        """
        retriever = self.retriever if with_images else None
        return Composer(self.lm, self.documents, retriever, timer=timer)
