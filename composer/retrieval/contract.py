"""What every vector index promises: the VectorIndex protocol and the checks all of them share.

Vectors are float32 rows of unit length and the score is their inner product (cosine). Ids
are strings (the images' sha256 hex ids). Three indexes keep this contract: ExactIndex
(exact.py), ApproximateIndex (hnsw.py, FAISS HNSW) and PgVectorIndex (pgvector.py, in
PostgreSQL). Each checks its input with `check_batch` / `check_query`, so all of them reject
the same bad input with the same message.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from composer.types import ComposerError

# Above this many vectors `choose_index` picks HNSW. Measured (bench/results/index.json,
# dim 384, 2 cores): exact p50 is 0.7 ms at 10k, 2.8 ms at 40k, 3.6 ms at 50k, 5.3 ms at 75k
# and 7.2 ms at 100k; HNSW is ~0.4 ms at all of these but costs a build (2.5-5k vectors/s)
# and gives up some recall on small libraries (0.95 at 10k). 50k keeps exact p50 under 4 ms.
DEFAULT_ANN_THRESHOLD = 50_000
# An `allowed` set this small, or this small a share of the library (hnsw.py's
# SMALL_ALLOWED_SHARE), is scored exactly (its vectors copied out of FAISS) instead of
# filtered inside the HNSW search, which has to widen its beam by 1/share. At 100k with 10%
# allowed: ~2 ms copy + product vs ~4 ms of HNSW with efSearch 640 (measured), and exact.
SMALL_ALLOWED = 2000

Hit = tuple[str, float]  # (image id, cosine score), as every search returns them, best first


class IndexFileError(ComposerError):
    """A saved index folder that is missing, corrupt or for another model/dim: rebuild it."""


class VectorIndex(Protocol):
    """The interface the retriever uses; in-process and PostgreSQL indexes alike.

    `synced_at` (ISO 8601 or None) is when the caller last brought the index up to date with
    the store; `save` persists it with the vectors (a folder for in-process indexes, a state
    row for pgvector), so a loaded index is brought up to date from the rows written since.
    """

    dim: int
    model: str
    synced_at: str | None

    def upsert(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add vectors for new ids and replace them for known ones."""
        ...

    def remove(self, ids: list[str]) -> None:
        """Drop these ids; unknown ids are ignored."""
        ...

    def search(self, query: np.ndarray, k: int, *, exclude: Iterable[str] = frozenset(),
               allowed: Iterable[str] | None = None) -> list[Hit]:
        """The k best (id, score) pairs, best first, never an excluded id and, when `allowed`
        is not None, only allowed ones; fewer than k only when fewer pass the filters."""
        ...

    def save(self, folder: Path) -> None:
        """Persist the index (and `synced_at`)."""
        ...

    def ids(self) -> set[str]:
        """The ids in the index (a copy)."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, image_id: object) -> bool: ...


def check_dim(dim: int) -> int:
    """`dim` itself after checking that it is a positive int."""
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim={dim!r} must be a positive int (the embedder's vector length)")
    return dim


def check_batch(ids: list[str], vectors: np.ndarray, dim: int) -> tuple[list[str], np.ndarray]:
    """ids as a list of distinct non-empty strings and vectors as C-contiguous float32 [n, dim].

    Shared by every index so each rejects the same bad input the same way.
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


def check_synced_at(value: str | None) -> str | None:
    """`value` itself after checking that it is None or an ISO 8601 timestamp."""
    if value is None:
        return None
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"synced_at={value!r} is not an ISO 8601 timestamp: pass "
                         "datetime.now(UTC).isoformat() or None") from None
    return value
