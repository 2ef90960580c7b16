"""One retrieval signal's vectors, kept searchable and in step with the image store.

Vectors live in the database (the source of truth) and, for searching, in a vector index per
signal: in this process (exact below `threshold` images, FAISS HNSW above, saved under a
folder and brought up to date incrementally from the rows written since it was saved), or
in PostgreSQL with pgvector.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.retrieval.choose import build_index, load_index, maybe_promote
from composer.retrieval.contract import Hit
from composer.retrieval.pgvector import PgVectorIndex, drop_vectors, open_index

if TYPE_CHECKING:
    from storage.images import ImageStore

log = logging.getLogger(__name__)

# Vectors written this long before the last sync are read again at the next one, so a write
# that committed late with an earlier timestamp is not missed (upserting twice is harmless).
SYNC_OVERLAP = timedelta(seconds=30)
SAVE_AFTER_CHANGES = 1000  # an in-process index is saved again after this many changes


class VectorSignal:
    """The vectors of one model name kept in a vector index in step with the store."""

    def __init__(self, store: ImageStore, model: str, folder: Path | None, threshold: int,
                 vector_db: Any = None):
        """`folder` keeps a saved in-process index; `vector_db` (a Database with pgvector)
        keeps the vectors in PostgreSQL instead (pgvector.py)."""
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
                drop_vectors(self.vector_db, self.model)
            ids, vectors, newest = self.store.embeddings_since(self.model, None)
        if self.index is None:
            self.index = self._build(ids, unit_rows(vectors)) if ids else None
            self._rebuilt = self.index is not None
        elif ids:
            self.index.upsert(ids, unit_rows(vectors))
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
               allowed: set[str] | None) -> list[Hit]:
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
        index = PgVectorIndex(self.vector_db, self.model, int(vectors.shape[1]))
        index.upsert(ids, vectors)
        return index

    def _load(self) -> Any:
        """The saved index, or None when there is none (or it cannot be read: rebuilt)."""
        if self.vector_db is not None:
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


def index_folder(index_dir: Path | None, model: str) -> Path | None:
    """The folder an index of `model` is saved in: a file-system-safe form of its name."""
    if index_dir is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")[-60:]
    return Path(index_dir) / f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """The vectors as float32 rows of unit length (older rows may not be normalised)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.size == 0:
        return vectors.reshape(0, vectors.shape[1] if vectors.ndim == 2 else 0)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
