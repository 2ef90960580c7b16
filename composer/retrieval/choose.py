"""Which in-process index to use: exact up to a threshold, HNSW above it; building, promoting
and loading one of either kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from composer.retrieval.contract import DEFAULT_ANN_THRESHOLD, IndexFileError
from composer.retrieval.exact import ExactIndex
from composer.retrieval.hnsw import ApproximateIndex
from composer.retrieval.index_files import read_manifest

InProcessVectorIndex = ExactIndex | ApproximateIndex
_KINDS: dict[str, type[InProcessVectorIndex]] = {
    ExactIndex.kind: ExactIndex, ApproximateIndex.kind: ApproximateIndex}


def choose_index(n: int, dim: int, threshold: int = DEFAULT_ANN_THRESHOLD, *,
                 model: str = "") -> InProcessVectorIndex:
    """An empty index suited to `n` vectors: exact up to `threshold`, HNSW above it."""
    if not isinstance(threshold, int) or threshold < 0:
        raise ValueError(f"threshold={threshold!r} must be an int >= 0 (vectors before HNSW)")
    if n > threshold:
        return ApproximateIndex(dim, model=model)
    return ExactIndex(dim, model=model)


def build_index(ids: list[str], vectors: np.ndarray, threshold: int = DEFAULT_ANN_THRESHOLD,
                *, model: str = "", dim: int | None = None) -> InProcessVectorIndex:
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


def maybe_promote(index: InProcessVectorIndex,
                  threshold: int = DEFAULT_ANN_THRESHOLD) -> InProcessVectorIndex:
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
               dim: int | None = None) -> InProcessVectorIndex:
    """The index saved in `folder`, of whichever kind it is; IndexFileError if it cannot be
    used (missing, corrupt, another model or dim): rebuild it from the stored embeddings."""
    manifest = read_manifest(Path(folder))
    kind = _KINDS.get(manifest["kind"])
    if kind is None:
        raise IndexFileError(f"the index in {folder} has kind {manifest['kind']!r}, known "
                             f"kinds are {sorted(_KINDS)}: rebuild the index")
    return kind.load(Path(folder), model=model, dim=dim)
