"""Vector indexes for image retrieval: exact top-k for small libraries, HNSW above a threshold.

Vectors are float32 rows of unit length and the score is their inner product (cosine). Ids
are strings (the images' sha256 hex ids); each index maps them to int row numbers itself.

- `ExactIndex`: one [n, dim] matrix and a matrix-vector product per query. Exact, with no
  build cost, and fast enough below DEFAULT_ANN_THRESHOLD vectors (bench/bench_index.py).
- `ApproximateIndex`: FAISS IndexHNSWFlat (inner product). HNSW cannot delete, so a replaced
  or removed id leaves a dead label, skipped through an IDSelector inside the search; the
  graph is rebuilt (`compact`) once dead labels pass MAX_DEAD_SHARE of all labels.

Both have the same interface: `upsert`, `remove`, `search(query, k, exclude=, allowed=)`,
`save(folder)` / `load(folder)`, `export()`, `len()`, `in`, `ids()`, `dim`, `model`,
`synced_at`. Searches may run from several threads while one thread writes: a readers-writer
lock keeps writes (FAISS adds are not safe during a search) away from reads.

A saved index is a folder: `manifest.json` (format version, kind, dim, model, count,
synced_at and the name of the data folder) beside one `data-<token>/` folder holding the
files. A save writes a new data folder, then swaps the manifest with os.replace, so a crash
leaves either the old index or the new one, never a mix. Anything that does not add up on
load raises IndexFileError; the caller rebuilds from the stored embeddings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from composer.types import ComposerError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IDS_FILE = "ids.json"
VECTORS_FILE = "vectors.npy"
FAISS_FILE = "index.faiss"
# Above this many vectors `choose_index` picks HNSW. Measured (bench/results/index.json,
# dim 384, 2 cores): exact p50 is 0.7 ms at 10k, 2.8 ms at 40k, 3.6 ms at 50k, 5.3 ms at 75k
# and 7.2 ms at 100k; HNSW is ~0.4 ms at all of these but costs a build (2.5-5k vectors/s)
# and gives up some recall on small libraries (0.95 at 10k). 50k keeps exact p50 under 4 ms.
DEFAULT_ANN_THRESHOLD = 50_000
HNSW_M = 32
# efConstruction 200 built 4x slower than 80 for +0.002 recall@10 at 100k (measured on
# clustered vectors looser than the benchmark's: 0.993 -> 0.995 at efSearch 64).
HNSW_EF_CONSTRUCTION = 80
# recall@8 1.0 at 100k on the benchmark's clustered vectors (0.995 at 32, 0.97 at 16;
# 0.95 at 10k, where the threshold keeps exact search anyway).
HNSW_EF_SEARCH = 64
MAX_EF_SEARCH = 1024
# An `allowed` set this small, or this small a share of the library, is scored exactly
# (its vectors copied out of FAISS) instead of filtered inside the HNSW search, which has to
# widen its beam by 1/share. At 100k with 10% allowed: ~2 ms copy + product vs ~4 ms of HNSW
# with efSearch 640 (measured), and exact.
SMALL_ALLOWED = 2000
SMALL_ALLOWED_SHARE = 0.25
# Dead labels (replaced or removed vectors) past this share of all labels trigger a rebuild.
MAX_DEAD_SHARE = 0.2
# Upserts go into HNSW in chunks this big, each under its own write lock, so searches wait at
# most one chunk's add (about a third of a second on 2 cores).
UPSERT_CHUNK = 1000


class IndexFileError(ComposerError):
    """A saved index folder that is missing, corrupt or for another model/dim: rebuild it."""


# ---------------------------------------------------------------------------- helpers


class _ReadWriteLock:
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


_faiss_module: Any = None


def _faiss() -> Any:
    """The faiss module, imported on first use with its thread count set to this process's CPUs.

    OpenMP's default counts the machine's CPUs, not those this process may use (containers,
    taskset), and oversubscribing slows everything. Builds use all of them; a single query
    runs on one thread whatever the setting (measured: no latency change from 1 to 2 threads).
    """
    global _faiss_module
    if _faiss_module is None:
        try:
            import faiss
        except ImportError as error:
            raise RuntimeError(
                "the approximate index needs FAISS: run `pip install faiss-cpu==1.15.1`, or "
                f"keep the library under {DEFAULT_ANN_THRESHOLD} images (exact search)"
            ) from error
        faiss.omp_set_num_threads(_usable_cpus())
        _faiss_module = faiss
    return _faiss_module


def _usable_cpus() -> int:
    """The CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _check_dim(dim: int) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim={dim!r} must be a positive int (the embedder's vector length)")
    return dim


def check_batch(ids: list[str], vectors: np.ndarray, dim: int) -> tuple[list[str], np.ndarray]:
    """ids as a list of distinct non-empty strings and vectors as C-contiguous float32 [n, dim].

    Shared with storage/pgvector.py so every index rejects the same bad input the same way.
    """
    ids = list(ids)
    for position, image_id in enumerate(ids):
        if not isinstance(image_id, str) or not image_id:
            raise ValueError(f"ids[{position}] = {image_id!r}: ids must be non-empty strings")
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise ValueError(f"ids repeat within one upsert ({duplicates}): pass each id once")
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape != (len(ids), dim):
        raise ValueError(f"vectors have shape {matrix.shape}, expected ({len(ids)}, {dim}): "
                         "one row per id, of the index's dim")
    if not np.isfinite(matrix).all():
        raise ValueError("vectors contain NaN or infinity: re-embed those images")
    return ids, matrix


def check_query(query: np.ndarray, k: int, dim: int) -> np.ndarray:
    """The query as a float32 [1, dim] row, after checking it and k (shared like check_batch)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be an int of at least 1")
    row = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    if row.shape[1] != dim:
        raise ValueError(f"query has {row.shape[1]} values, the index has dim {dim}: embed the "
                         "query with the model the index was built for")
    if not np.isfinite(row).all():
        raise ValueError("query contains NaN or infinity")
    return row


def _scores(matrix: np.ndarray, row: np.ndarray) -> np.ndarray:
    """matrix @ row, on one thread with numpy's own SIMD loop rather than BLAS.

    The product is memory-bound: einsum matches 2-thread OpenBLAS when the machine is idle
    (6.5 ms for 100k x 384) and stays there when another process keeps a core busy, while
    OpenBLAS's threads then wait on each other (14 ms p50, 8 ms p99 even at 10k; measured).
    """
    return np.einsum("ij,j->i", matrix, row)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest finite scores, best first (ties by position)."""
    if k < len(scores):
        positions = np.argpartition(-scores, k - 1)[:k]
    else:
        positions = np.arange(len(scores))
    positions = positions[np.lexsort((positions, -scores[positions]))]
    return positions[np.isfinite(scores[positions])]


def _check_synced_at(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"synced_at={value!r} is not an ISO 8601 timestamp: pass "
                         "datetime.now(UTC).isoformat() or None") from None
    return value


# ------------------------------------------------------------------ persistence helpers


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a saved index, checked for the format version and the basic fields."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFileError(f"no saved index in {folder} ({MANIFEST} is missing): build the "
                             "index from the stored embeddings and save it") from None
    except (OSError, ValueError) as error:
        raise IndexFileError(f"{path} is unreadable ({error}): delete {folder} and rebuild "
                             "the index") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise IndexFileError(f"{path} has format {found!r}, this code reads {FORMAT_VERSION}: "
                             "rebuild the index")
    for field, kind in (("kind", str), ("dim", int), ("model", str), ("count", int),
                        ("data", str)):
        if not isinstance(manifest.get(field), kind):
            raise IndexFileError(f"{path} lacks a valid {field!r}: delete {folder} and rebuild")
    return manifest


def _check_expected(manifest: dict[str, Any], folder: Path, kind: str | None,
                    model: str | None, dim: int | None) -> None:
    """Raise IndexFileError when the saved index is of another kind, model or dim."""
    for field, expected in (("kind", kind), ("model", model), ("dim", dim)):
        if expected is not None and manifest[field] != expected:
            raise IndexFileError(f"the index in {folder} has {field} {manifest[field]!r}, "
                                 f"expected {expected!r}: rebuild it for this {field}")


def _data_folder(folder: Path, manifest: dict[str, Any]) -> Path:
    """The manifest's data folder, with every listed file present at its recorded size."""
    data = folder / manifest["data"]
    if Path(manifest["data"]).name != manifest["data"] or not data.is_dir():
        raise IndexFileError(f"the data folder {manifest['data']!r} named in {folder / MANIFEST} "
                             "is missing: delete the folder and rebuild the index")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IndexFileError(f"{folder / MANIFEST} lists no files: rebuild the index")
    for name, size in files.items():
        path = data / name
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            raise IndexFileError(f"{path} has {actual} bytes, the manifest says {size}: the "
                                 "save was cut short or the file changed; rebuild the index")
    return data


def _save_folder(folder: Path, manifest: dict[str, Any],
                 write_files: Any) -> None:
    """Write a new data folder with `write_files(path)`, then swap the manifest atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"data-{uuid.uuid4().hex[:16]}"
    staging = folder / f"{name}.tmp"
    staging.mkdir()
    try:
        write_files(staging)
        files = {}
        for path in sorted(staging.iterdir()):
            _fsync_file(path)
            files[path.name] = path.stat().st_size
        _fsync_dir(staging)
        os.replace(staging, folder / name)
        manifest = {**manifest, "data": name, "files": files}
        temporary = folder / f"{MANIFEST}.tmp"
        _write_json(temporary, manifest)
        os.replace(temporary, folder / MANIFEST)
        _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in folder.iterdir():
        if old.is_dir() and old.name.startswith("data-") and old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def _read_ids(path: Path, count: int, nullable: bool) -> list[str | None]:
    """The JSON list of ids (label order); None marks a dead label where `nullable`."""
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IndexFileError(f"{path} is unreadable ({error}): rebuild the index") from None
    if not isinstance(ids, list) or len(ids) != count:
        found = len(ids) if isinstance(ids, list) else type(ids).__name__
        raise IndexFileError(f"{path} holds {found} ids, expected {count}: rebuild the index")
    live = [i for i in ids if i is not None]
    if any(not isinstance(i, str) for i in live) or (not nullable and len(live) != count):
        raise IndexFileError(f"{path} holds ids that are not strings: rebuild the index")
    if len(set(live)) != len(live):
        raise IndexFileError(f"{path} lists an id twice: rebuild the index")
    return ids


# --------------------------------------------------------------------------- indexes


class _Index:
    """What both indexes share: dim, model, synced_at, the id map and the locks."""

    kind: ClassVar[str] = ""

    def __init__(self, dim: int, *, model: str = "") -> None:
        self.dim = _check_dim(dim)
        self.model = str(model)
        self._synced_at: str | None = None
        self._rows: dict[str, int] = {}  # id -> row (exact) or live label (HNSW)
        self._lock = _ReadWriteLock()
        self._writer = threading.Lock()  # one writer at a time, also across a rebuild

    @property
    def synced_at(self) -> str | None:
        """When the caller last brought the index up to date with the store (ISO 8601), or None.

        Saved in the manifest; the caller sets it after syncing and compares it on load.
        """
        return self._synced_at

    @synced_at.setter
    def synced_at(self, value: str | None) -> None:
        self._synced_at = _check_synced_at(value)

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


class ExactIndex(_Index):
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
               allowed: Iterable[str] | None = None) -> list[tuple[str, float]]:
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
                scores = _scores(self._vectors[:count], row)
                for image_id in exclude:
                    position = self._rows.get(image_id)
                    if position is not None:
                        scores[position] = -np.inf
                rows = None
            else:
                rows = self._allowed_rows(allowed, exclude)
                scores = _scores(np.take(self._vectors, rows, axis=0), row)
            best = _top(scores, k)
            found = best if rows is None else rows[best]
            return [(self._ids[r], float(scores[b])) for r, b in zip(found, best)]

    def export(self) -> tuple[list[str], np.ndarray]:
        """A copy of all ids and their vectors ([n, dim] float32, same order)."""
        with self._lock.reading():
            return list(self._ids), self._vectors[: len(self._ids)].copy()

    def save(self, folder: Path) -> None:
        """Write the index to `folder` atomically (see the module docstring)."""
        with self._lock.reading():
            ids, vectors = list(self._ids), self._vectors[: len(self._ids)]

            def write(staging: Path) -> None:
                with open(staging / VECTORS_FILE, "wb") as handle:
                    np.save(handle, vectors, allow_pickle=False)
                _write_json(staging / IDS_FILE, ids)

            _save_folder(Path(folder), self._manifest(), write)

    @classmethod
    def load(cls, folder: Path, *, model: str | None = None, dim: int | None = None) -> ExactIndex:
        """The index saved in `folder`; IndexFileError if it is missing, corrupt, of another
        kind, or (when given) of another `model` or `dim`: rebuild it then."""
        folder = Path(folder)
        manifest = _read_manifest(folder)
        _check_expected(manifest, folder, cls.kind, model, dim)
        data = _data_folder(folder, manifest)
        ids = _read_ids(data / IDS_FILE, manifest["count"], nullable=False)
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


class ApproximateIndex(_Index):
    """FAISS HNSW (inner product) with tombstones; see the module docstring.

    Labels are FAISS's own sequential ids (the order vectors were added); `_labels` maps a
    label back to its id, None for a dead one. Filters become one IDSelectorBitmap (live,
    not excluded, allowed) checked inside the graph search, so k results come back however
    many ids are filtered out; efSearch grows with the share filtered out, and if HNSW still
    finds fewer than it should the same selector runs over the flat storage (exact).
    """

    kind: ClassVar[str] = "hnsw"

    def __init__(self, dim: int, *, model: str = "", m: int = HNSW_M,
                 ef_construction: int = HNSW_EF_CONSTRUCTION,
                 ef_search: int = HNSW_EF_SEARCH) -> None:
        """An empty HNSW index; `m`, `ef_construction`, `ef_search` are FAISS's parameters."""
        super().__init__(dim, model=model)
        for name, value in (("m", m), ("ef_construction", ef_construction),
                            ("ef_search", ef_search)):
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name}={value!r} must be an int of at least 2")
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self._index = self._new_faiss_index()
        self._labels: list[str | None] = []
        self._alive = np.zeros(0, dtype=bool)

    def _new_faiss_index(self) -> Any:
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    @property
    def dead(self) -> int:
        """How many labels are tombstones (replaced or removed vectors still in the graph)."""
        return len(self._labels) - len(self._rows)

    def upsert(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add vectors for new ids and replace them for known ones (old label marked dead).

        Added in chunks of UPSERT_CHUNK, each atomic for searches; rebuilds the graph after
        when dead labels pass MAX_DEAD_SHARE.
        """
        ids, matrix = check_batch(ids, vectors, self.dim)
        with self._writer:
            for start in range(0, len(ids), UPSERT_CHUNK):
                self._add(ids[start:start + UPSERT_CHUNK], matrix[start:start + UPSERT_CHUNK])
            self._compact_if_needed()

    def _add(self, ids: list[str], matrix: np.ndarray) -> None:
        with self._lock.writing():
            first = self._index.ntotal
            self._index.add(matrix)
            alive = np.ones(len(ids), dtype=bool)
            self._alive = np.concatenate([self._alive, alive])
            for offset, image_id in enumerate(ids):
                old = self._rows.get(image_id)
                if old is not None:
                    self._labels[old] = None
                    self._alive[old] = False
                self._rows[image_id] = first + offset
                self._labels.append(image_id)

    def remove(self, ids: Iterable[str]) -> None:
        """Drop these ids (tombstones; unknown ids are ignored); may trigger a rebuild."""
        with self._writer:
            with self._lock.writing():
                for image_id in ids:
                    label = self._rows.pop(image_id, None)
                    if label is not None:
                        self._labels[label] = None
                        self._alive[label] = False
            self._compact_if_needed()

    def _compact_if_needed(self) -> None:
        if self._labels and self.dead > MAX_DEAD_SHARE * len(self._labels):
            log.info("rebuilding the HNSW index: %d of %d labels are dead", self.dead,
                     len(self._labels))
            self._rebuild()

    def compact(self) -> None:
        """Rebuild the graph from the live vectors only, dropping every dead label.

        Searches keep running on the old graph during the rebuild (writers wait); the new
        one is swapped in at the end. Takes about len(self) / build throughput seconds.
        """
        with self._writer:
            self._rebuild()

    def _rebuild(self) -> None:
        """The rebuild itself; the caller holds self._writer, so nothing changes meanwhile."""
        ids, vectors = self.export()
        index = self._new_faiss_index()
        index.hnsw.efSearch = self.ef_search
        if len(ids):
            index.add(vectors)
        with self._lock.writing():
            self._index = index
            self._labels = list(ids)
            self._rows = {image_id: label for label, image_id in enumerate(ids)}
            self._alive = np.ones(len(ids), dtype=bool)

    def export(self) -> tuple[list[str], np.ndarray]:
        """A copy of the live ids and their vectors ([n, dim] float32, same order)."""
        with self._lock.reading():
            labels = np.flatnonzero(self._alive).astype(np.int64)
            vectors = self._vectors_of(labels)
            return [self._labels[label] for label in labels], vectors

    def _vectors_of(self, labels: np.ndarray) -> np.ndarray:
        if not len(labels):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(labels)

    def search(self, query: np.ndarray, k: int, *, exclude: Iterable[str] = frozenset(),
               allowed: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The k ids whose vectors score highest with `query` (approximately), best first.

        `exclude`: ids never returned (images already in the article). `allowed`: when not
        None, only these ids are candidates (the caller's source/license filter); fewer than
        SMALL_ALLOWED of them, or under SMALL_ALLOWED_SHARE of the library, are scored
        exactly. Fewer than k come back only when fewer than k ids pass the filters.
        """
        row = check_query(query, k, self.dim)
        exclude = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
        with self._lock.reading():
            if allowed is None:
                keep, excluded = self._excluding(exclude)
                return self._graph_search(row, k, keep, len(self._rows) - excluded, excluded)
            else:
                labels = self._allowed_rows(allowed, exclude)
                if len(labels) < max(SMALL_ALLOWED, SMALL_ALLOWED_SHARE * len(self._rows)):
                    return self._exact_over(row[0], labels, k)
                keep = np.zeros(len(self._labels), dtype=bool)
                keep[labels] = True
                return self._graph_search(row, k, keep, len(labels), 0)

    def _excluding(self, exclude: set[str] | frozenset[str]) -> tuple[np.ndarray | None, int]:
        """(mask of the labels that may be returned, None for all; how many ids are excluded)."""
        excluded = [self._rows[i] for i in exclude if i in self._rows]
        if not excluded and len(self._rows) == len(self._labels):
            return None, 0
        keep = self._alive.copy()
        keep[excluded] = False
        return keep, len(excluded)

    def _exact_over(self, row: np.ndarray, labels: np.ndarray, k: int) -> list[tuple[str, float]]:
        scores = _scores(self._vectors_of(labels), row)
        best = _top(scores, k)
        return [(self._labels[labels[b]], float(scores[b])) for b in best]  # type: ignore[misc]

    def _graph_search(self, row: np.ndarray, k: int, keep: np.ndarray | None, passing: int,
                      excluded: int) -> list[tuple[str, float]]:
        """HNSW search restricted to `keep`; exact over the flat storage if it comes up short.

        `passing`: how many labels `keep` lets through; `excluded`: how many of the others
        were left out for being near the query (the article's images), not at random.
        """
        faiss = _faiss()
        wanted = min(k, passing)
        if wanted == 0:
            return []
        selector = None
        ef = max(self.ef_search, k)
        if keep is not None:
            bitmap = np.packbits(keep, bitorder="little")
            selector = faiss.IDSelectorBitmap(bitmap)
            # Ids dropped at random (dead, not allowed) thin the graph evenly: widen the beam
            # by their share. Excluded ids sit near the query: widen it by their number.
            share = (passing + excluded) / max(1, len(self._labels))
            ef = min(MAX_EF_SEARCH, math.ceil(ef / share) + excluded)
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
        scores, labels = self._index.search(row, k, params=params)
        found = [(int(label), float(score)) for label, score in zip(labels[0], scores[0])
                 if label >= 0]
        if len(found) < wanted:
            storage = faiss.downcast_index(self._index.storage)
            scores, labels = storage.search(row, k, params=faiss.SearchParameters(sel=selector))
            found = [(int(label), float(score)) for label, score in zip(labels[0], scores[0])
                     if label >= 0]
        return [(self._labels[label], score) for label, score in found]  # type: ignore[misc]

    def save(self, folder: Path) -> None:
        """Write the index to `folder` atomically (see the module docstring)."""
        faiss = _faiss()
        with self._lock.reading():
            labels = list(self._labels)

            def write(staging: Path) -> None:
                faiss.write_index(self._index, str(staging / FAISS_FILE))
                _write_json(staging / IDS_FILE, labels)

            manifest = {**self._manifest(), "labels": len(labels), "m": self.m,
                        "ef_construction": self.ef_construction, "ef_search": self.ef_search}
            _save_folder(Path(folder), manifest, write)

    @classmethod
    def load(cls, folder: Path, *, model: str | None = None,
             dim: int | None = None) -> ApproximateIndex:
        """The index saved in `folder`; IndexFileError if it is missing, corrupt, of another
        kind, or (when given) of another `model` or `dim`: rebuild it then."""
        faiss = _faiss()
        folder = Path(folder)
        manifest = _read_manifest(folder)
        _check_expected(manifest, folder, cls.kind, model, dim)
        data = _data_folder(folder, manifest)
        total = manifest.get("labels")
        if not isinstance(total, int):
            raise IndexFileError(f"{folder / MANIFEST} lacks 'labels': rebuild the index")
        labels = _read_ids(data / IDS_FILE, total, nullable=True)
        try:
            stored = faiss.read_index(str(data / FAISS_FILE))
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else "?"
            raise IndexFileError(f"{data / FAISS_FILE} is unreadable ({first}): rebuild the "
                                 "index") from None
        if stored.d != manifest["dim"] or stored.ntotal != total or not hasattr(stored, "hnsw"):
            raise IndexFileError(f"{data / FAISS_FILE} holds {stored.ntotal} vectors of dim "
                                 f"{stored.d}, expected {total} HNSW vectors of dim "
                                 f"{manifest['dim']}: rebuild the index")
        index = cls(manifest["dim"], model=manifest["model"],
                    m=int(manifest.get("m", HNSW_M)),
                    ef_construction=int(manifest.get("ef_construction", HNSW_EF_CONSTRUCTION)),
                    ef_search=int(manifest.get("ef_search", HNSW_EF_SEARCH)))
        live = sum(label is not None for label in labels)
        if live != manifest["count"]:
            raise IndexFileError(f"{data / IDS_FILE} has {live} live ids, the manifest says "
                                 f"{manifest['count']}: rebuild the index")
        index._index = stored
        index._labels = labels
        index._alive = np.array([label is not None for label in labels], dtype=bool)
        index._rows = {image_id: label for label, image_id in enumerate(labels)
                       if image_id is not None}
        index.synced_at = manifest.get("synced_at")
        return index


VectorIndex = ExactIndex | ApproximateIndex
_KINDS: dict[str, type[ExactIndex | ApproximateIndex]] = {
    ExactIndex.kind: ExactIndex, ApproximateIndex.kind: ApproximateIndex}


# ------------------------------------------------------------------------ choosing one


def choose_index(n: int, dim: int, threshold: int = DEFAULT_ANN_THRESHOLD, *,
                 model: str = "") -> ExactIndex | ApproximateIndex:
    """An empty index suited to `n` vectors: exact up to `threshold`, HNSW above it."""
    if not isinstance(threshold, int) or threshold < 0:
        raise ValueError(f"threshold={threshold!r} must be an int >= 0 (vectors before HNSW)")
    if n > threshold:
        return ApproximateIndex(dim, model=model)
    return ExactIndex(dim, model=model)


def build_index(ids: list[str], vectors: np.ndarray, threshold: int = DEFAULT_ANN_THRESHOLD,
                *, model: str = "", dim: int | None = None) -> ExactIndex | ApproximateIndex:
    """An index holding these vectors, of the kind `choose_index` picks for their number.

    `dim` is needed only when there are no vectors (the store returns a (0, 0) matrix then).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.size:
        dim = vectors.shape[-1]
    elif dim is None:
        raise ValueError("no vectors and no dim: pass dim=embedder.dim to build an empty index")
    index = choose_index(len(ids), dim, threshold, model=model)
    if len(ids):
        index.upsert(list(ids), vectors)
    return index


def maybe_promote(index: ExactIndex | ApproximateIndex,
                  threshold: int = DEFAULT_ANN_THRESHOLD) -> ExactIndex | ApproximateIndex:
    """`index` itself, or an HNSW copy of it once an exact index holds more than `threshold`.

    Call after upserts; the caller swaps in the returned index (and saves it). HNSW indexes
    are never turned back into exact ones: a shrinking library keeps its graph.
    """
    if not isinstance(index, ExactIndex) or len(index) <= threshold:
        return index
    ids, vectors = index.export()
    promoted = ApproximateIndex(index.dim, model=index.model)
    promoted.upsert(ids, vectors)
    promoted.synced_at = index.synced_at
    return promoted


def load_index(folder: Path, *, model: str | None = None,
               dim: int | None = None) -> ExactIndex | ApproximateIndex:
    """The index saved in `folder`, of whichever kind it is; IndexFileError if it cannot be
    used (missing, corrupt, another model or dim): rebuild it from the stored embeddings."""
    manifest = _read_manifest(Path(folder))
    kind = _KINDS.get(manifest["kind"])
    if kind is None:
        raise IndexFileError(f"the index in {folder} has kind {manifest['kind']!r}, known "
                             f"kinds are {sorted(_KINDS)}: rebuild the index")
    return kind.load(Path(folder), model=model, dim=dim)
