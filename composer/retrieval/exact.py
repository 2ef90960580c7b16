"""In-process vector indexes: what they share, and the exact one.

`InProcessIndex` holds what ExactIndex and ApproximateIndex (hnsw.py) share: dim, model,
synced_at, the id map and a readers-writer lock. Searches may run from several threads while
one thread writes: the lock keeps writes (FAISS adds are not safe during a search) away from
reads.

`ExactIndex`: one [n, dim] matrix and a matrix-vector product per query. Exact, with no
build cost, and fast enough below DEFAULT_ANN_THRESHOLD vectors (bench/bench_index.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from composer.retrieval.contract import (
    Hit,
    IndexFileError,
    check_batch,
    check_dim,
    check_query,
    check_synced_at,
)
from composer.retrieval.index_files import (
    FORMAT_VERSION,
    IDS_FILE,
    VECTORS_FILE,
    check_expected,
    data_folder,
    read_ids,
    read_manifest,
    save_folder,
    write_json,
)


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back (no starvation)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the lock shared for the block (searches, saves)."""
        with self._condition:
            while self._writing or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock exclusively for the block (changes to the index)."""
        with self._condition:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._condition.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


def inner_products(matrix: np.ndarray, row: np.ndarray) -> np.ndarray:
    """matrix @ row, on one thread with numpy's own SIMD loop rather than BLAS.

    The product is memory-bound: einsum matches 2-thread OpenBLAS when the machine is idle
    (6.5 ms for 100k x 384) and stays there when another process keeps a core busy, while
    OpenBLAS's threads then wait on each other (14 ms p50, 8 ms p99 even at 10k; measured).
    """
    return np.einsum("ij,j->i", matrix, row)


def top_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest finite scores, best first (ties by position)."""
    if k < len(scores):
        positions = np.argpartition(-scores, k - 1)[:k]
    else:
        positions = np.arange(len(scores))
    positions = positions[np.lexsort((positions, -scores[positions]))]
    return positions[np.isfinite(scores[positions])]


class InProcessIndex:
    """What both indexes share: dim, model, synced_at, the id map and the locks."""

    kind: ClassVar[str] = ""

    def __init__(self, dim: int, *, model: str = "") -> None:
        self.dim = check_dim(dim)
        self.model = str(model)
        self._synced_at: str | None = None
        self._rows: dict[str, int] = {}  # id -> row (exact) or live label (HNSW)
        self._lock = ReadWriteLock()
        self._writer = threading.Lock()  # one writer at a time, also across a rebuild

    @property
    def synced_at(self) -> str | None:
        """When the caller last brought the index up to date with the store (ISO 8601), or None.

        Saved in the manifest; the caller sets it after syncing and compares it on load.
        """
        return self._synced_at

    @synced_at.setter
    def synced_at(self, value: str | None) -> None:
        self._synced_at = check_synced_at(value)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._rows

    def ids(self) -> set[str]:
        """The ids in the index (a copy)."""
        with self._lock.reading():
            return set(self._rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, model={self.model!r}, count={len(self)})"

    def _allowed_rows(self, allowed: Iterable[str], exclude: set[str] | frozenset[str]
                      ) -> np.ndarray:
        """Sorted rows (labels) of the allowed ids that are in the index and not excluded.

        Only the allowed ids are visited, with the loops in C (set difference, map): about
        1 ms for 10k of them.
        """
        keep = set(allowed) - exclude
        rows = np.fromiter(map(self._rows.get, keep, repeat(-1)), dtype=np.int64,
                           count=len(keep))
        return np.sort(rows[rows >= 0])

    def _manifest(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "kind": self.kind, "dim": self.dim,
                "model": self.model, "count": len(self._rows), "synced_at": self._synced_at}


class ExactIndex(InProcessIndex):
    """Exact cosine top-k over an in-memory float32 matrix; see the module docstring.

    Rows are kept in a buffer that grows by doubling, so incremental upserts are cheap; a
    removed row is filled with the last row.
    """

    kind: ClassVar[str] = "exact"

    def __init__(self, dim: int, *, model: str = "") -> None:
        """An empty index for vectors of length `dim`, made by the embedder named `model`."""
        super().__init__(dim, model=model)
        self._ids: list[str] = []
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)

    def upsert(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add vectors for new ids and replace them for known ones (a re-embedded caption)."""
        ids, matrix = check_batch(ids, vectors, self.dim)
        with self._writer, self._lock.writing():
            new = [position for position, image_id in enumerate(ids) if image_id not in self._rows]
            self._reserve(len(self._ids) + len(new))
            for position, image_id in enumerate(ids):
                row = self._rows.get(image_id)
                if row is None:
                    row = len(self._ids)
                    self._rows[image_id] = row
                    self._ids.append(image_id)
                self._vectors[row] = matrix[position]

    def _reserve(self, rows: int) -> None:
        if rows > len(self._vectors):
            grown = np.zeros((max(rows, 2 * len(self._vectors), 64), self.dim), dtype=np.float32)
            grown[: len(self._ids)] = self._vectors[: len(self._ids)]
            self._vectors = grown

    def remove(self, ids: Iterable[str]) -> None:
        """Drop these ids; unknown ids are ignored (already gone)."""
        with self._writer, self._lock.writing():
            for image_id in ids:
                row = self._rows.pop(image_id, None)
                if row is None:
                    continue
                last = len(self._ids) - 1
                if row != last:
                    moved = self._ids[last]
                    self._ids[row] = moved
                    self._rows[moved] = row
                    self._vectors[row] = self._vectors[last]
                self._ids.pop()

    def search(self, query: np.ndarray, k: int, *, exclude: Iterable[str] = frozenset(),
               allowed: Iterable[str] | None = None) -> list[Hit]:
        """The k ids whose vectors score highest with `query`, as (id, score), best first.

        `exclude`: ids never returned (images already in the article). `allowed`: when not
        None, only these ids are candidates (the caller's source/license filter). Fewer than
        k come back only when fewer than k ids pass the filters.
        """
        row = check_query(query, k, self.dim)[0]
        exclude = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
        with self._lock.reading():
            count = len(self._ids)
            if allowed is None:
                scores = inner_products(self._vectors[:count], row)
                for image_id in exclude:
                    position = self._rows.get(image_id)
                    if position is not None:
                        scores[position] = -np.inf
                rows = None
            else:
                rows = self._allowed_rows(allowed, exclude)
                scores = inner_products(np.take(self._vectors, rows, axis=0), row)
            best = top_positions(scores, k)
            found = best if rows is None else rows[best]
            return [(self._ids[r], float(scores[b])) for r, b in zip(found, best)]

    def export(self) -> tuple[list[str], np.ndarray]:
        """A copy of all ids and their vectors ([n, dim] float32, same order)."""
        with self._lock.reading():
            return list(self._ids), self._vectors[: len(self._ids)].copy()

    def save(self, folder: Path) -> None:
        """Write the index to `folder` atomically (the format: index_files.py)."""
        with self._lock.reading():
            ids, vectors = list(self._ids), self._vectors[: len(self._ids)]

            def write(staging: Path) -> None:
                with open(staging / VECTORS_FILE, "wb") as handle:
                    np.save(handle, vectors, allow_pickle=False)
                write_json(staging / IDS_FILE, ids)

            save_folder(Path(folder), self._manifest(), write)

    @classmethod
    def load(cls, folder: Path, *, model: str | None = None, dim: int | None = None) -> ExactIndex:
        """The index saved in `folder`; IndexFileError if it is missing, corrupt, of another
        kind, or (when given) of another `model` or `dim`: rebuild it then."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        check_expected(manifest, folder, cls.kind, model, dim)
        data = data_folder(folder, manifest)
        ids = read_ids(data / IDS_FILE, manifest["count"], nullable=False)
        try:
            vectors = np.load(data / VECTORS_FILE, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise IndexFileError(f"{data / VECTORS_FILE} is unreadable ({error}): rebuild the "
                                 "index") from None
        expected = (manifest["count"], manifest["dim"])
        if vectors.dtype != np.float32 or vectors.shape != expected:
            raise IndexFileError(f"{data / VECTORS_FILE} holds {vectors.dtype} {vectors.shape}, "
                                 f"expected float32 {expected}: rebuild the index")
        index = cls(manifest["dim"], model=manifest["model"])
        index._ids = [str(i) for i in ids]
        index._rows = {image_id: row for row, image_id in enumerate(index._ids)}
        index._vectors = np.ascontiguousarray(vectors)
        index.synced_at = manifest.get("synced_at")
        return index
