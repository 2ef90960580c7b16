"""Library retrieval: which images depict what an image slot asks for.

A query is scored against every signal that is configured, then blended:

- caption similarity: the text embedder's cosine between the query and each image's caption;
- image similarity (when a CLIP/SigLIP model is configured): the query's text vector against
  each image's pixel vector, so images are found by what they show, captioned or not;
- keyword match (BM25 over captions), so names and rare words ("Falcon 9") count;
- minus the parrot penalty (REFERENCE section 4): weight x (share of the query's words the
  image shows as text) x (share of the image that text covers). A caption that merely spells
  the image's visible text is not trusted: its caption and keyword scores do not count, and
  nor are those of a picture of text (lettering on a plain ground, models/visual_text.py)
  for a query that does not ask for text, whatever its caption says.

Vectors live in the database (the source of truth) and, for searching, in a vector index per
signal (models/vector_index.py): exact below `ann_threshold` images, FAISS HNSW above, saved
under `index_dir` and brought up to date incrementally from the rows written since it was
saved. Captions and BM25 statistics are kept in memory alongside.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.types import ImageCandidate
from models.embed import Embedder
from models.keywords import KeywordIndex
from models.ocr import TextSpotter, caption_spells_text, text_match_share
from models.vector_index import DEFAULT_ANN_THRESHOLD, build_index, load_index, maybe_promote
from models.visual_text import TextPictureCheck

if TYPE_CHECKING:  # for type hints only: models do not import storage at run time
    from storage.images import ImageStore

log = logging.getLogger(__name__)

INDEX_BATCH = 256  # captions embedded per model call and written per transaction
PIXEL_BATCH = 64  # images per CLIP call and transaction
IndexProgress = Callable[[int, int, str], None]  # index()'s progress(done, total, stage)
CAPTIONS_STAGE = "indexing captions"
PIXELS_STAGE = "embedding pixels"
TEXT_STAGE = "reading visible text"
# Defaults measured on the labelled set of bench/retrieval_set.py (bench/bench_retrieval_quality.py).
DEFAULT_TEXT_PENALTY = 3.0
DEFAULT_KEYWORD_WEIGHT = 0.15
DEFAULT_CLIP_WEIGHT = 0.5
SHORTLIST = 32  # candidates taken from each signal beyond those asked for, then re-ranked
RARE_TERM_DOCS = 2000  # a query term in at most this many captions is searched everywhere
IMAGE_VECTORS = "#image"  # suffix of the model name pixel vectors are stored under
# Vectors written this long before the last sync are read again at the next one, so a write
# that committed late with an earlier timestamp is not missed (upserting twice is harmless).
SYNC_OVERLAP = timedelta(seconds=30)
SAVE_AFTER_CHANGES = 1000  # an in-process index is saved again after this many changes


@dataclass
class Weights:
    """How the signals are blended; see the module docstring."""

    text_penalty: float = DEFAULT_TEXT_PENALTY
    keyword: float = DEFAULT_KEYWORD_WEIGHT
    clip: float = DEFAULT_CLIP_WEIGHT
    distrust_spelled_captions: bool = True


@dataclass
class ScoredImage:
    """One image's blended score and the parts it was made of (for reports and tests)."""

    image_id: str
    score: float
    caption: float = 0.0
    image: float = 0.0
    keyword: float = 0.0
    penalty: float = 0.0
    spelled_caption: bool = False
    text_picture: bool = False  # a picture of text, for a query that wants none


class VectorSignal:
    """The vectors of one model name kept in a vector index in step with the store."""

    def __init__(self, store: ImageStore, model: str, folder: Path | None, threshold: int,
                 vector_db: Any = None):
        """`folder` keeps a saved in-process index; `vector_db` (a Database with pgvector)
        keeps the vectors in PostgreSQL instead (storage/pgvector.py)."""
        self.store = store
        self.vector_db = vector_db
        self.model = model
        self.folder = folder
        self.threshold = threshold
        self.index: Any = None
        self._synced_at: datetime | None = None
        self._version: int | None = None
        self._unsaved = 0  # vectors changed since the index was saved
        self._rebuilt = False  # built or promoted since then: expensive to redo, so save

    def sync(self, promote: bool = False) -> tuple[list[str], set[str]]:
        """Bring the index up to date; returns (ids whose vector is new, ids removed).

        `promote` turns an exact index past the threshold into HNSW (seconds at 50k
        vectors), so only `Retriever.index()` asks for it, never a search.
        """
        version = self.store.version()  # one primary-key read when nothing changed
        if version == self._version and self.index is not None:
            return [], set()
        state = self.store.embedding_state(self.model)
        if self.index is None:
            self.index = self._load()
        since = self._synced_at - SYNC_OVERLAP if self._synced_at else None
        ids, vectors, newest = self.store.embeddings_since(self.model, since)
        if ids and self.index is not None and vectors.shape[1] != self.index.dim:
            log.warning("index %s has dim %d, vectors have %d: rebuilding", self.model,
                        self.index.dim, vectors.shape[1])
            self.index, self._synced_at = None, None
            if self.vector_db is not None:
                from storage.pgvector import drop_vectors

                drop_vectors(self.vector_db, self.model)
            ids, vectors, newest = self.store.embeddings_since(self.model, None)
        if self.index is None:
            self.index = self._build(ids, _unit_rows(vectors)) if ids else None
            self._rebuilt = self.index is not None
        elif ids:
            self.index.upsert(ids, _unit_rows(vectors))
        removed: set[str] = set()
        if self.index is not None and len(self.index) != state[0]:
            stored = set(self.store.embedding_ids(self.model))
            removed = set(self.index.ids()) - stored
            if removed:
                self.index.remove(sorted(removed))
        if promote and self.index is not None and self.vector_db is None:
            promoted = maybe_promote(self.index, self.threshold)
            self._rebuilt = self._rebuilt or promoted is not self.index
            self.index = promoted
        self._synced_at = newest or self._synced_at
        self._version = version
        self._unsaved += len(ids) + len(removed)
        return ids, removed

    @property
    def version(self) -> int | None:
        """The store's library version this signal was last synced at."""
        return self._version

    def search(self, vector: np.ndarray, n: int, exclude: frozenset[str] | set[str],
               allowed: set[str] | None) -> list[tuple[str, float]]:
        """The n best (id, cosine) pairs, best first."""
        if self.index is None or len(self.index) == 0:
            return []
        return self.index.search(vector, n, exclude=exclude, allowed=allowed)

    def save(self) -> None:
        """Persist the index after a (re)build, or once SAVE_AFTER_CHANGES vectors changed.

        Writing a whole 100k-vector index for each edited caption would cost more than the
        edit; a saved index that is a few changes behind is brought up to date from the
        database when loaded. The pgvector index only records how far it is synced (cheap).
        """
        if self.index is None or (self.folder is None and self.vector_db is None):
            return
        cheap = self.vector_db is not None
        if not (self._rebuilt or self._unsaved >= SAVE_AFTER_CHANGES
                or (cheap and self._unsaved)):
            return
        self.index.synced_at = self._synced_at.isoformat() if self._synced_at else None
        self.index.save(self.folder)
        self._unsaved, self._rebuilt = 0, False

    def _build(self, ids: list[str], vectors: np.ndarray) -> Any:
        """A new index of these vectors: in PostgreSQL with pgvector, else in this process."""
        if self.vector_db is None:
            return build_index(ids, vectors, self.threshold, model=self.model)
        from storage.pgvector import PgVectorIndex

        index = PgVectorIndex(self.vector_db, self.model, int(vectors.shape[1]))
        index.upsert(ids, vectors)
        return index

    def _load(self) -> Any:
        """The saved index, or None when there is none (or it cannot be read: rebuilt)."""
        if self.vector_db is not None:
            from storage.pgvector import open_index

            index = open_index(self.vector_db, self.model)
            if index is not None and index.synced_at:
                self._synced_at = datetime.fromisoformat(index.synced_at)
            return index
        if self.folder is None or not self.folder.exists():
            return None
        try:
            index = load_index(self.folder, model=self.model)
        except Exception as error:  # corrupt or from another version: the store rebuilds it
            log.warning("ignoring the saved index in %s (%s); rebuilding it", self.folder, error)
            return None
        self._synced_at = datetime.fromisoformat(index.synced_at) if index.synced_at else None
        return index


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
        self._captions = VectorSignal(store, embedder.name, _folder(index_dir, embedder.name),
                                      ann_threshold, vector_db)
        self._images = (VectorSignal(store, self.image_model, _folder(index_dir,
                                                                       self.image_model),
                                     ann_threshold, vector_db) if clip is not None else None)
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
            keyword_hits = _top(texts.keywords.normalized_scores(query, sorted(pool)), n,
                                exclude, allowed)
        scored = self._blend(query, caption_hits, image_hits, keyword_hits, texts)
        return scored[:k]

    def _blend(self, query: str, caption_hits: dict[str, float], image_hits: dict[str, float],
               keyword_hits: dict[str, float], texts: _Texts) -> list[ScoredImage]:
        """Blend the signals for the union of their shortlists and apply the penalty.

        An image missing from one signal's shortlist gets that shortlist's lowest score (its
        true score is at most that), or 0 when the signal found nothing. A caption that merely
        spells the image's visible text is no evidence of what it depicts: its caption and
        keyword scores are replaced by the shortlist's lowest and 0, and so are a picture
        of text's when the query asks for no text.
        """
        ids = set(caption_hits) | set(image_hits) | set(keyword_hits)
        caption_floor = min(caption_hits.values(), default=0.0)
        image_floor = min(image_hits.values(), default=0.0)
        visible = self.store.texts(sorted(ids)) if self.spotter is not None else {}
        clip_share = self.weights.clip if self._images is not None else 0.0
        scored = []
        for image_id in ids:
            caption = caption_hits.get(image_id, caption_floor)
            image = image_hits.get(image_id, image_floor)
            keyword = keyword_hits.get(image_id, 0.0)
            words, area = visible.get(image_id, ([], 0.0))
            spelled = caption_spells_text(texts.captions.get(image_id, ""), words)
            picture = self.text_pictures.demote(query, image_id, words, area, self.store.path)
            if (spelled and self.weights.distrust_spelled_captions) or picture:
                caption, keyword = caption_floor, 0.0  # the caption is no evidence
            penalty = self.weights.text_penalty * text_match_share(query, words) * area
            score = ((1 - clip_share) * caption + clip_share * image
                     + self.weights.keyword * keyword - penalty)
            scored.append(ScoredImage(image_id, float(score), float(caption), float(image),
                                      float(keyword), float(penalty), spelled, picture))
        scored.sort(key=lambda item: (-item.score, item.image_id))
        return scored

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


def _top(scores: dict[str, float], n: int, exclude: frozenset[str],
         allowed: set[str] | None) -> dict[str, float]:
    """The n best non-zero scores that pass the filters."""
    kept = [(image_id, score) for image_id, score in scores.items()
            if score > 0 and image_id not in exclude
            and (allowed is None or image_id in allowed)]
    kept.sort(key=lambda item: (-item[1], item[0]))
    return dict(kept[:n])


def _folder(index_dir: Path | None, model: str) -> Path | None:
    """The folder an index of `model` is saved in: a file-system-safe form of its name."""
    if index_dir is None:
        return None
    import hashlib
    import re

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")[-60:]
    return Path(index_dir) / f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """The vectors as float32 rows of unit length (older rows may not be normalised)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.size == 0:
        return vectors.reshape(0, vectors.shape[1] if vectors.ndim == 2 else 0)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)

