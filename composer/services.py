"""Builds the app's components from Settings, once, for the CLI and for app.py.

Models load lazily (the first compose pays for them, listing documents does not) and only
once per process, under a lock so that two first requests do not load them twice. The
default image library is seeded the first time images are needed. Tests inject a scripted
model through the constructor and other doubles with provide().
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

from composer.config import Settings
from composer.generation import StageTimer
from composer.pipeline import Composer
from models.lm import LanguageModel

STALE_COMPOSING_SECONDS = 15 * 60
T = TypeVar("T")


class Services:
    """The database, repositories and models of one process, created on first use."""

    def __init__(self, settings: Settings, lm: LanguageModel | None = None):
        self.settings = settings
        self._made: dict[str, Any] = {"lm": lm}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.image_slots = threading.BoundedSemaphore(settings.image_concurrency)
        # Shown while the retriever's first index() embeds and reads what is new (the CLI's
        # bars): progress(done, total, stage).
        self.index_progress: Callable[[int, int, str], None] | None = None

    def provide(self, name: str, component: Any) -> None:
        """Use a ready-made component (e.g. a test's retriever) instead of building one."""
        self._made[name] = component

    def _once(self, name: str, make: Callable[[], T]) -> T:
        """Build component `name` once; a slow build (a model) blocks only its own users."""
        made = self._made.get(name)
        if made is not None:
            return made
        with self._locks_lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if self._made.get(name) is None:
                self._made[name] = make()
            return self._made[name]

    @property
    def db(self):
        """The migrated database; documents left "composing" by a dead process are marked
        (without a queue: with one, a worker goes on with them).

        A database this process cannot write is opened read-only (storage/db.py)."""
        def make():
            from storage.db import Database
            from storage.documents import DocumentRepository

            database = Database.open(self.settings)
            # Queued compositions belong to the workers, which resume them (composer/queue.py).
            if not database.read_only and not self.settings.redis_url:
                DocumentRepository(database).mark_stale_composing(STALE_COMPOSING_SECONDS)
            return database
        return self._once("db", make)

    @property
    def documents(self):
        from storage.documents import DocumentRepository

        return self._once("documents", lambda: DocumentRepository(self.db))

    @property
    def feedback(self):
        """Likes and dislikes of paragraphs and documents (storage/feedback.py)."""
        from storage.feedback import FeedbackRepository

        return self._once("feedback", lambda: FeedbackRepository(self.db))

    @property
    def pairs(self):
        """Preference pairs captured from people's rewrites (storage/pairs.py)."""
        from storage.pairs import PairRepository

        return self._once("pairs", lambda: PairRepository(self.db))

    @property
    def shares(self):
        from storage.shares import ShareRepository

        return self._once("shares", lambda: ShareRepository(self.db))

    @property
    def images(self):
        from storage.images import ImageStore

        return self._once("images", lambda: ImageStore(self.db, self.settings.images_dir,
                                                        self.settings.thumbs_dir))

    @property
    def embedder(self):
        def make():
            from models.registry import load_embedder

            return load_embedder(self.settings)
        return self._once("embedder", make)

    @property
    def retriever(self):
        """The library retriever; the default library is seeded the first time it is needed."""
        def make():
            from composer.library import seed_default_library
            from composer.retrieval.pgvector import pgvector_available
            from composer.retrieval.retriever import Retriever

            settings = self.settings
            retriever = Retriever(self.images, self.embedder, self.spotter,
                                  settings.text_penalty, keyword_weight=settings.keyword_weight,
                                  clip=self.clip, clip_weight=settings.clip_weight,
                                  index_dir=settings.index_dir,
                                  ann_threshold=settings.ann_threshold,
                                  vector_db=self.db if pgvector_available(self.db) else None)
            if self.images.count() == 0:
                seed_default_library(self.images, retriever)
            retriever.index(progress=self.index_progress)
            self.embedder.dim  # load the embedder now, not in the middle of a composition
            return retriever
        return self._once("retriever", make)

    @property
    def spotter(self):
        """The OCR text spotter (RapidOCR), or None when its package is not installed."""
        from models.ocr import load_text_spotter

        if "spotter" not in self._made:
            with self._locks_lock:
                self._made.setdefault("spotter", load_text_spotter())
        return self._made["spotter"]

    @property
    def clip(self):
        """The CLIP/SigLIP embedder of COMPOSER_CLIP_MODEL, or None when none is configured."""
        if not self.settings.clip_model:
            return None

        def make():
            from models.clip import ClipEmbedder

            return ClipEmbedder.from_pretrained(self.settings.clip_model,
                                                device=self.settings.device)
        return self._once("clip", make)

    @property
    def web_search(self):
        """The web image search of COMPOSER_WEB_IMAGES, or None when it is off (the default)."""
        from composer.retrieval.web.importer import make_web_search

        return make_web_search(self.settings.web_images, self.settings.web_images_url)

    @property
    def captions(self):
        """The background captioning worker (its model loads on the first job, if any)."""
        def make():
            from composer.captioning import CaptionWorker
            from models.captioner import load_captioner

            spec = self.settings.captioner
            loader = (lambda: load_captioner(spec, device=self.settings.device)) if spec \
                else None
            return CaptionWorker(self.images, loader, retriever=self.retriever)
        return self._once("captions", make)

    @property
    def generator(self):
        """The text-to-image model of COMPOSER_IMAGE_GENERATOR (loaded on first use), or None
        when none is configured."""
        spec = self.settings.image_generator
        if not spec:
            return None

        def make():
            from models.image_generator import load_image_generator

            settings = self.settings
            return load_image_generator(spec, device=settings.device, dtype=settings.dtype,
                                        steps=settings.image_steps, size=settings.image_size)
        return self._once("generator", make)

    def editor(self, with_images: bool = True):
        """An Editor (composer/editing.py) over the shared components: cheap, one per action.

        with_images=False skips loading the library (paragraph operations); the text
        embedder is loaded either way, for the checks of new paragraphs.
        """
        from composer.editing import Editor

        generator = _LazyGenerator(self) if with_images and self.settings.image_generator \
            else None
        return Editor(self.lm, self.documents, retriever=self.retriever if with_images else None,
                      pairs=self.pairs, generator=generator, images=self.images,
                      embedder=self.embedder)

    def check_language(self, language: str) -> None:
        """InputError when the writer does not write `language` (composer/languages.py).
        Loads nothing: a writer not loaded yet is judged by the settings."""
        from composer.languages import check_writer_language

        check_writer_language(language, self.settings, self._made.get("lm"))

    @property
    def lm(self) -> LanguageModel:
        """The writer model, loaded once."""
        def make():
            from models.registry import load_language_model

            return load_language_model(self.settings)
        return self._once("lm", make)

    @property
    def jobs(self) -> Any:
        """Where compositions run: the Redis queue when COMPOSER_REDIS_URL is set (durable
        jobs that workers run), else this process (composer/jobs.py)."""
        def make():
            if self.settings.redis_url:
                from composer.queue import QueuedJobs

                return QueuedJobs(self)
            from composer.jobs import LocalJobs

            return LocalJobs(self)
        return self._once("jobs", make)

    def composer(self, timer: StageTimer | None = None, with_images: bool = True) -> Composer:
        """A Composer over the shared components (cheap; make one per composition).

        with_images=False skips loading the library (text-only articles); the text embedder
        is loaded either way, for the checks of outlines and paragraphs.
        """
        retriever = self.retriever if with_images else None
        web = self.web_search if with_images else None
        generator = _LazyGenerator(self) if with_images and self.settings.image_generator \
            else None
        return Composer(self.lm, self.documents, retriever, timer=timer, web_search=web,
                        generator=generator, image_threshold=self.settings.image_threshold,
                        check_language=self.check_language, embedder=self.embedder)


SLOT_WAIT_SECONDS = 0.2  # how often a generation waiting for a slot looks at its Stop flag


class _LazyGenerator:
    """Stands for services.generator and loads it on the first generate() only, so that an
    editor made for a caption search does not load a diffusion model. At most
    COMPOSER_IMAGE_CONCURRENCY images are generated at once; the others wait for a slot."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @property
    def name(self) -> str:
        return self.services.settings.image_generator

    def generate(self, prompt: str, **options: Any) -> Any:
        from models.image_generator import GenerationCancelled

        cancel = options.get("cancel")
        slots = self.services.image_slots
        while not slots.acquire(timeout=SLOT_WAIT_SECONDS):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("stopped while waiting for the image generator")
        try:
            return self.services.generator.generate(prompt, **options)
        finally:
            slots.release()
