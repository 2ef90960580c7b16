"""The approximate vector index: FAISS HNSW (inner product), for libraries past the threshold.

HNSW cannot delete, so a replaced or removed id leaves a dead label, skipped through an
IDSelector inside the search; the graph is rebuilt (`compact`) once dead labels pass
MAX_DEAD_SHARE of all labels. Same interface as ExactIndex (contract.py's VectorIndex).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from composer.retrieval.contract import (
    DEFAULT_ANN_THRESHOLD,
    SMALL_ALLOWED,
    Hit,
    IndexFileError,
    check_batch,
    check_query,
)
from composer.retrieval.exact import InProcessIndex, inner_products, top_positions
from composer.retrieval.index_files import (
    FAISS_FILE,
    IDS_FILE,
    MANIFEST,
    check_expected,
    data_folder,
    read_ids,
    read_manifest,
    save_folder,
    write_json,
)

log = logging.getLogger(__name__)

HNSW_M = 32
# efConstruction 200 built 4x slower than 80 for +0.002 recall@10 at 100k (measured on
# clustered vectors looser than the benchmark's: 0.993 -> 0.995 at efSearch 64).
HNSW_EF_CONSTRUCTION = 80
# recall@8 1.0 at 100k on the benchmark's clustered vectors (0.995 at 32, 0.97 at 16;
# 0.95 at 10k, where the threshold keeps exact search anyway).
HNSW_EF_SEARCH = 64
MAX_EF_SEARCH = 1024
# An `allowed` set under this share of the library is scored exactly (see SMALL_ALLOWED).
SMALL_ALLOWED_SHARE = 0.25
# Dead labels (replaced or removed vectors) past this share of all labels trigger a rebuild.
MAX_DEAD_SHARE = 0.2
# Upserts go into HNSW in chunks this big, each under its own write lock, so searches wait at
# most one chunk's add (about a third of a second on 2 cores).
UPSERT_CHUNK = 1000


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


class ApproximateIndex(InProcessIndex):
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
               allowed: Iterable[str] | None = None) -> list[Hit]:
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

    def _exact_over(self, row: np.ndarray, labels: np.ndarray, k: int) -> list[Hit]:
        scores = inner_products(self._vectors_of(labels), row)
        best = top_positions(scores, k)
        return [(self._labels[labels[b]], float(scores[b])) for b in best]  # type: ignore[misc]

    def _graph_search(self, row: np.ndarray, k: int, keep: np.ndarray | None, passing: int,
                      excluded: int) -> list[Hit]:
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
        """Write the index to `folder` atomically (the format: index_files.py)."""
        faiss = _faiss()
        with self._lock.reading():
            labels = list(self._labels)

            def write(staging: Path) -> None:
                faiss.write_index(self._index, str(staging / FAISS_FILE))
                write_json(staging / IDS_FILE, labels)

            manifest = {**self._manifest(), "labels": len(labels), "m": self.m,
                        "ef_construction": self.ef_construction, "ef_search": self.ef_search}
            save_folder(Path(folder), manifest, write)

    @classmethod
    def load(cls, folder: Path, *, model: str | None = None,
             dim: int | None = None) -> ApproximateIndex:
        """The index saved in `folder`; IndexFileError if it is missing, corrupt, of another
        kind, or (when given) of another `model` or `dim`: rebuild it then."""
        faiss = _faiss()
        folder = Path(folder)
        manifest = read_manifest(folder)
        check_expected(manifest, folder, cls.kind, model, dim)
        data = data_folder(folder, manifest)
        total = manifest.get("labels")
        if not isinstance(total, int):
            raise IndexFileError(f"{folder / MANIFEST} lacks 'labels': rebuild the index")
        labels = read_ids(data / IDS_FILE, total, nullable=True)
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
