"""Caption retrieval over the image library: embed, keep the matrix in memory, cosine top-k.

The library is small (hundreds to tens of thousands of images), so a dense [n, dim] float32
matrix and one matrix-vector product per query is faster and simpler than an ANN index. The
matrix is reloaded from the store only when the library changes, detected cheaply from the
number of images and the number of them without a vector for this embedder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from composer.types import ImageCandidate, NotFoundError
from models.embed import Embedder
from models.ocr import TextSpotter, text_match_share

if TYPE_CHECKING:  # for type hints only: models do not import storage at run time
    from storage.images import ImageStore

INDEX_BATCH = 64
# Parrot-aware ranking (REFERENCE section 4): score -= weight * (share of the query's words
# the image shows as text) * (share of the image those words cover). Provisional default,
# to be set from the labelled retrieval benchmark.
DEFAULT_TEXT_PENALTY = 2.0
SHORTLIST = 32  # candidates re-ranked with the penalty beyond those asked for


@dataclass
class _Matrix:
    """The in-memory index: ids in row order, the vectors, and the store state it reflects."""

    ids: list[str]
    vectors: np.ndarray
    signature: tuple[int, int]


class Retriever:
    """Finds library images whose captions match a query; see docs/contracts.md.

    One Retriever may be shared by threads (the web UI); reloads happen under a lock.
    """

    def __init__(self, store: ImageStore, embedder: Embedder, spotter: TextSpotter | None = None,
                 text_penalty: float = DEFAULT_TEXT_PENALTY) -> None:
        """`store` is an ImageStore (storage/images.py); `embedder` embeds captions and queries;
        `spotter` reads images' visible text (None: no OCR, no penalty)."""
        self.store = store
        self.embedder = embedder
        self.spotter = spotter
        self.text_penalty = text_penalty
        self._matrix: _Matrix | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        """The name the vectors are stored under in the store (the embedder's name)."""
        return self.embedder.name

    def index(self) -> int:
        """Embed the captions of images that have no vector for this embedder yet.

        Returns how many were embedded (0 when all are indexed, so it is cheap to call at
        start-up and after every import). Images without a caption are left out: there is
        nothing to match a query against until they get one (`store.update(caption=...)`).
        """
        missing = [image for image in self.store.missing_embeddings(self.model)
                   if image.caption.strip()]
        for start in range(0, len(missing), INDEX_BATCH):
            batch = missing[start:start + INDEX_BATCH]
            vectors = self.embedder.encode([image.caption for image in batch])
            self.store.put_embeddings(self.model, [(image.id, vector)
                                                   for image, vector in zip(batch, vectors)])
        if missing:
            self.invalidate()
        self._read_text()
        return len(missing)

    def _read_text(self) -> None:
        """OCR the images not read yet; an unreadable one is stored as showing no text."""
        if self.spotter is None:
            return
        for image in self.store.missing_text():
            try:
                visible = self.spotter.read(self.store.path(image.id))
                words, area = visible.words, visible.area
            except (OSError, ValueError, RuntimeError):
                words, area = [], 0.0
            self.store.put_text(image.id, words, area, self.spotter.name)

    def invalidate(self) -> None:
        """Forget the in-memory matrix; the next search reloads it from the store."""
        with self._lock:
            self._matrix = None

    def search(self, query: str, k: int = 4,
               exclude: set[str] | frozenset[str] = frozenset()) -> list[ImageCandidate]:
        """The k images whose captions are closest to `query` (cosine), best first.

        Images in `exclude` (already used in the article) are skipped; an empty library or
        an all-excluded one gives an empty list. Images not yet indexed are not searched:
        call `index()` after adding images.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError("search query is empty: pass the caption to look for")
        if k < 1:
            raise ValueError(f"k={k} must be at least 1")
        matrix = self._current()
        if not matrix.ids:
            return []
        scores = matrix.vectors @ self.embedder.encode([query])[0]
        order = np.argsort(-scores, kind="stable")[: k + len(exclude) + SHORTLIST]
        ranked = self._penalise(query, [(matrix.ids[row], float(scores[row])) for row in order])
        candidates: list[ImageCandidate] = []
        for image_id, score in ranked:
            if image_id in exclude:
                continue
            candidate = self._candidate(image_id, score)
            if candidate is not None:
                candidates.append(candidate)
            if len(candidates) == k:
                break
        return candidates

    def _penalise(self, query: str, scored: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """Demote matches that come from the image showing the query's words; best first."""
        if self.spotter is None or not self.text_penalty:
            return scored
        texts = self.store.texts([image_id for image_id, _ in scored])
        adjusted = []
        for image_id, score in scored:
            words, area = texts.get(image_id, ([], 0.0))
            adjusted.append((image_id, score - self.text_penalty *
                             text_match_share(query, words) * area))
        return sorted(adjusted, key=lambda item: -item[1])

    def _candidate(self, image_id: str, score: float) -> ImageCandidate | None:
        """The candidate with the store's current caption and license; None if deleted."""
        try:
            image = self.store.get(image_id)
        except NotFoundError:
            return None
        return ImageCandidate(image_id=image.id, caption=image.caption, score=score,
                              license=image.license, attribution=image.attribution)

    def _signature(self) -> tuple[int, int]:
        """(images, images without a vector): changes whenever images or vectors come or go."""
        return self.store.count(), len(self.store.missing_embeddings(self.model))

    def _current(self) -> _Matrix:
        """The in-memory matrix, reloaded from the store when the library has changed."""
        with self._lock:
            signature = self._signature()
            if self._matrix is None or self._matrix.signature != signature:
                ids, vectors = self.store.embeddings(self.model)
                self._matrix = _Matrix(ids=list(ids), vectors=_as_matrix(vectors),
                                       signature=signature)
            return self._matrix


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    """The stored vectors as float32 rows of unit length (older rows may not be normalised)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.size == 0:
        return np.zeros((0, 0), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
