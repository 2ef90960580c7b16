"""Library retrieval: which images depict what an image slot asks for.

A query is scored against every signal that is configured, then blended (blend.py):

- caption similarity: the text embedder's cosine between the query and each image's caption;
- image similarity (when a CLIP/SigLIP model is configured): the query's text vector against
  each image's pixel vector, so images are found by what they show, captioned or not;
- keyword match (BM25 over captions, models/keywords.py), so names and rare words
  ("Falcon 9") count;
- minus the parrot penalty for images whose visible text merely repeats the query.

Each vector signal is a VectorSignal (signals.py); captions and BM25 statistics are kept in
memory alongside.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.retrieval.blend import (
    DEFAULT_CLIP_WEIGHT,
    DEFAULT_KEYWORD_WEIGHT,
    DEFAULT_TEXT_PENALTY,
    ScoredImage,
    Weights,
    blend,
    top_scores,
)
from composer.retrieval.contract import DEFAULT_ANN_THRESHOLD
from composer.retrieval.signals import VectorSignal, index_folder
from composer.types import ImageCandidate
from models.embed import Embedder
from models.keywords import KeywordIndex
from models.ocr import TextSpotter
from models.visual_text import TextPictureCheck

if TYPE_CHECKING:
    from storage.images import ImageStore

log = logging.getLogger(__name__)

INDEX_BATCH = 256  # captions embedded per model call and written per transaction
PIXEL_BATCH = 64  # images per CLIP call and transaction
IndexProgress = Callable[[int, int, str], None]  # index()'s progress(done, total, stage)
CAPTIONS_STAGE = "indexing captions"
PIXELS_STAGE = "embedding pixels"
TEXT_STAGE = "reading visible text"
SHORTLIST = 32  # candidates taken from each signal beyond those asked for, then re-ranked
RARE_TERM_DOCS = 2000  # a query term in at most this many captions is searched everywhere
IMAGE_VECTORS = "#image"  # suffix of the model name pixel vectors are stored under


@dataclass
class _Texts:
    """Captions (for BM25 and the spelled-caption check), kept in step with caption vectors."""

    captions: dict[str, str] = field(default_factory=dict)
    keywords: KeywordIndex = field(default_factory=KeywordIndex)


class Retriever:
    """Finds library images that depict a query; see docs/contracts.md.

    One Retriever may be shared by threads (the web UI); syncing happens under a lock.
    """

    def __init__(self, store: ImageStore, embedder: Embedder, spotter: TextSpotter | None = None,
                 text_penalty: float = DEFAULT_TEXT_PENALTY, *,
                 keyword_weight: float = DEFAULT_KEYWORD_WEIGHT, clip: Any = None,
                 clip_weight: float = DEFAULT_CLIP_WEIGHT, index_dir: Path | None = None,
                 ann_threshold: int = DEFAULT_ANN_THRESHOLD, vector_db: Any = None) -> None:
        """`store` is an ImageStore (storage/images.py); `embedder` embeds captions and
        queries; `spotter` reads images' visible text (None: no OCR, no penalty); `clip` a
        ClipEmbedder (models/clip.py) for image vectors, or None; `index_dir` where vector
        indexes are saved (None: kept in memory only); `vector_db` a PostgreSQL Database
        with pgvector to keep the vectors searchable there instead."""
        self.store = store
        self.embedder = embedder
        self.spotter = spotter
        self.clip = clip
        self.weights = Weights(text_penalty=text_penalty, keyword=keyword_weight,
                               clip=clip_weight)
        self._captions = VectorSignal(store, embedder.name,
                                      index_folder(index_dir, embedder.name), ann_threshold,
                                      vector_db)
        self._images = (VectorSignal(store, self.image_model,
                                     index_folder(index_dir, self.image_model), ann_threshold,
                                     vector_db) if clip is not None else None)
        self._texts: _Texts | None = None
        self.text_pictures = TextPictureCheck()  # models/visual_text.py
        self._owners: tuple[int | None, dict[str, str]] | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        """The name caption vectors are stored under (the text embedder's name)."""
        return self.embedder.name

    @property
    def image_model(self) -> str:
        """The name pixel vectors are stored under (the CLIP model's name + "#image")."""
        return f"{self.clip.name}{IMAGE_VECTORS}" if self.clip is not None else ""

    @property
    def text_penalty(self) -> float:
        return self.weights.text_penalty

    # -- indexing ------------------------------------------------------------------------------

    def index(self, progress: IndexProgress | None = None,
              stop: threading.Event | None = None) -> int:
        """Embed what is not embedded yet, read images' text, and save the vector indexes.

        Returns how many captions were embedded (0 when everything is indexed, so it is cheap
        to call at start-up and after every import). Images without a caption get no caption
        vector: only the image signal (CLIP), when configured, can find them.

        Each batch is written to the store before `progress(done, total, stage)` reports it,
        so an interruption (`stop` set, or KeyboardInterrupt raised from `progress`) keeps
        every finished batch, and the next call does only what is still missing.
        """
        report = progress or (lambda done, total, stage: None)
        embedded = self._embed_captions(report, stop)
        self._embed_pixels(report, stop)  # each stage does nothing once `stop` is set
        self._read_text(report, stop)
        with self._lock:
            self._sync(promote=not _stopped(stop))
            self._captions.save()
            if self._images is not None:
                self._images.save()
        return embedded

    def _embed_captions(self, progress: IndexProgress, stop: threading.Event | None) -> int:
        """Caption vectors for captioned images that have none, INDEX_BATCH at a time."""
        missing = [image for image in self.store.missing_embeddings(self.model)
                   if image.caption.strip()]
        done = 0
        for start in range(0, len(missing), INDEX_BATCH):
            if _stopped(stop):
                break
            batch = missing[start:start + INDEX_BATCH]
            vectors = self.embedder.encode([image.caption for image in batch])
            self.store.put_embeddings(self.model, list(zip([image.id for image in batch],
                                                           vectors)))
            done += len(batch)
            progress(done, len(missing), CAPTIONS_STAGE)
        return done

    def _embed_pixels(self, progress: IndexProgress, stop: threading.Event | None) -> None:
        """CLIP image vectors for images that have none yet; unreadable files are skipped."""
        if self.clip is None:
            return
        missing = self.store.missing_embeddings(self.image_model)
        for start in range(0, len(missing), PIXEL_BATCH):
            if _stopped(stop):
                return
            batch = missing[start:start + PIXEL_BATCH]
            try:
                vectors = self.clip.encode_images([self.store.path(image.id) for image in batch])
            except (OSError, ValueError) as error:
                log.warning("could not embed %d images with %s: %s", len(batch),
                            self.clip.name, error)
            else:
                self.store.put_embeddings(self.image_model,
                                          list(zip([image.id for image in batch], vectors)),
                                          kind="image")
            progress(start + len(batch), len(missing), PIXELS_STAGE)

    def _read_text(self, progress: IndexProgress, stop: threading.Event | None) -> None:
        """OCR the images not read yet, each saved at once (unreadable: no text)."""
        if self.spotter is None:
            return
        missing = self.store.missing_text()
        for done, image in enumerate(missing, start=1):
            if _stopped(stop):
                return
            try:
                visible = self.spotter.read(self.store.images_dir / image.path)
                words, area = visible.words, visible.area
            except (OSError, ValueError, RuntimeError):
                words, area = [], 0.0
            self.store.put_text(image.id, words, area, self.spotter.name)
            self.text_pictures.remember(image.id, words, area, self.store.images_dir / image.path)
            progress(done, len(missing), TEXT_STAGE)

    def invalidate(self) -> None:
        """Forget the in-memory state; the next search reloads it from the store."""
        with self._lock:
            self._captions = VectorSignal(self.store, self.model, self._captions.folder,
                                          self._captions.threshold, self._captions.vector_db)
            if self._images is not None:
                self._images = VectorSignal(self.store, self.image_model, self._images.folder,
                                            self._images.threshold, self._images.vector_db)
            self._texts = None
            self._owners = None

    def _sync(self, promote: bool = False) -> None:
        """Bring every signal up to date with the store (call with the lock held)."""
        changed, removed = self._captions.sync(promote)
        if self._images is not None:
            self._images.sync(promote)
        if self._texts is None:
            self._texts = _Texts()
            index = self._captions.index
            ids = sorted(index.ids()) if index is not None else []
            self._set_captions(ids)
        elif changed or removed:
            for image_id in removed:
                self._texts.captions.pop(image_id, None)
                self._texts.keywords.remove(image_id)
            self._set_captions(changed)

    def _set_captions(self, ids: list[str]) -> None:
        assert self._texts is not None
        for image_id, caption in self.store.captions(ids).items():
            self._texts.captions[image_id] = caption
            self._texts.keywords.upsert(image_id, caption)

    # -- searching -----------------------------------------------------------------------------

    def search(self, query: str, k: int = 4, exclude: set[str] | frozenset[str] = frozenset(),
               *, owner: str | None = None, source: str | None = None,
               license: str | None = None) -> list[ImageCandidate]:
        """The k images that best depict `query`, best first.

        Images in `exclude` (already used in the article) are skipped; with `owner`, only the
        shared library and that owner's images are searched; `source` / `license` keep only
        images with exactly that source or license. An empty library, or one with everything
        excluded, gives an empty list. Images are searchable once `index()` has embedded them.
        """
        ranked = self.rank(query, k, exclude, owner=owner, source=source, license=license)
        images = self.store.get_many([scored.image_id for scored in ranked])
        return [ImageCandidate(image_id=image.id, caption=image.caption, score=scored.score,
                               license=image.license, attribution=image.attribution)
                for scored in ranked if (image := images.get(scored.image_id)) is not None]

    def rank(self, query: str, k: int = 4, exclude: set[str] | frozenset[str] = frozenset(),
             *, owner: str | None = None, source: str | None = None,
             license: str | None = None) -> list[ScoredImage]:
        """`search` with each candidate's score parts, for reports and tests."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("search query is empty: pass the caption to look for")
        if k < 1:
            raise ValueError(f"k={k} must be at least 1")
        exclude = frozenset(exclude)
        with self._lock:
            self._sync()
            texts = self._texts
            assert texts is not None
            if owner is not None:  # other people's uploads are private to them
                exclude |= self._private_to_others(owner)
        allowed = self._allowed(source, license)
        n = k + SHORTLIST
        caption_hits = dict(self._captions.search(self.embedder.encode([query])[0], n, exclude,
                                                  allowed))
        image_hits: dict[str, float] = {}
        if self._images is not None:
            image_hits = dict(self._images.search(self.clip.encode([query])[0], n, exclude,
                                                  allowed))
        keyword_hits: dict[str, float] = {}
        if self.weights.keyword:  # BM25 over the shortlists and the captions with rare terms
            pool = set(texts.keywords.rare_matches(query, RARE_TERM_DOCS))
            pool |= set(caption_hits) | set(image_hits)
            keyword_hits = top_scores(texts.keywords.normalized_scores(query, sorted(pool)), n,
                                      exclude, allowed)
        scored = self._blend(query, caption_hits, image_hits, keyword_hits, texts)
        return scored[:k]

    def _blend(self, query: str, caption_hits: dict[str, float], image_hits: dict[str, float],
               keyword_hits: dict[str, float], texts: _Texts) -> list[ScoredImage]:
        """Blend the signals for the union of their shortlists and apply the penalty."""
        ids = set(caption_hits) | set(image_hits) | set(keyword_hits)
        visible = self.store.texts(sorted(ids)) if self.spotter is not None else {}
        clip_share = self.weights.clip if self._images is not None else 0.0
        return blend(query, caption_hits, image_hits, keyword_hits, captions=texts.captions,
                     visible=visible, weights=self.weights, clip_share=clip_share,
                     text_pictures=self.text_pictures, path=self.store.path)

    def _private_to_others(self, owner: str) -> frozenset[str]:
        """Ids `owner` must not get: other people's uploads (call with the lock held).

        Read again only when the library's vectors changed (an upload is searchable only
        once `index()` has embedded it, which bumps the version).
        """
        version = self._captions.version
        if self._owners is None or self._owners[0] != version:
            self._owners = (version, self.store.owners())
        return frozenset(image_id for image_id, other in self._owners[1].items()
                         if other != owner)

    def _allowed(self, source: str | None, license: str | None) -> set[str] | None:
        """The ids a source/license filter keeps, or None when there is no filter."""
        if source is None and license is None:
            return None
        return set(self.store.ids(source=source, license=license))


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()
