"""The library's vectors: one embedding per (image, model), read back as float32 matrices.

A vector embeds an image's caption text (kind "caption", dropped when the caption changes) or
its pixels (kind "image"). Vectors are stored as little-endian float32 bytes, the same on
every machine. `version()` grows whenever vectors are written or dropped, or images deleted,
so a retriever learns with one primary-key read whether its index is stale.
ImageStore (storage/images.py) offers these methods to its callers.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from composer.types import InputError, LibraryImage
from storage.db import Database
from storage.rows import chunks, image_row, to_image
from storage.tables import ImageEmbeddingRow, ImageRow, LibraryVersionRow, utcnow

VECTOR_DTYPE = np.dtype("<f4")  # little-endian float32, the same bytes on every machine
EMBEDDING_KINDS = ("caption", "image")  # what a vector embeds: the caption text or the pixels


class ImageVectors:
    """Stores and reads image embeddings; each method runs in its own transaction."""

    def __init__(self, db: Database) -> None:
        """Use `db` for every call."""
        self.db = db

    def embeddings(self, model: str, ids: builtins.list[str] | None = None
                   ) -> tuple[builtins.list[str], np.ndarray]:
        """Stored vectors of `model`: (image ids, [n, dim] float32 matrix), sorted by id.

        `ids` limits it to those images (ids without a vector are left out).
        """
        columns = (ImageEmbeddingRow.image_id, ImageEmbeddingRow.dim, ImageEmbeddingRow.vector)
        query = select(*columns).where(ImageEmbeddingRow.model == model)
        with self.db.session() as session:
            if ids is None:
                rows = session.execute(query.order_by(ImageEmbeddingRow.image_id)).all()
            else:
                rows = [row for chunk in chunks(sorted(set(ids)))
                        for row in session.execute(
                            query.where(ImageEmbeddingRow.image_id.in_(chunk)))]
                rows.sort(key=lambda row: row[0])
        return _matrix(rows)

    def embedding_ids(self, model: str) -> builtins.list[str]:
        """The ids of the images that have a vector of `model`, sorted."""
        query = (select(ImageEmbeddingRow.image_id).where(ImageEmbeddingRow.model == model)
                 .order_by(ImageEmbeddingRow.image_id))
        with self.db.session() as session:
            return builtins.list(session.scalars(query))

    def embeddings_since(self, model: str, since: datetime | None
                         ) -> tuple[builtins.list[str], np.ndarray, datetime | None]:
        """Vectors of `model` written after `since` (None: all), sorted by id, and the newest
        write time seen, to pass as `since` next time (`since` itself when nothing is new).

        Vectors written before migration 0004 have no time: they count as older than any
        datetime, so they come back only when `since` is None.
        """
        if since is not None and since.tzinfo is None:
            raise InputError(f"since={since!r} has no timezone: pass a timezone-aware "
                             "datetime (UTC), e.g. the one the previous call returned")
        query = (select(ImageEmbeddingRow.image_id, ImageEmbeddingRow.dim,
                        ImageEmbeddingRow.vector, ImageEmbeddingRow.created_at)
                 .where(ImageEmbeddingRow.model == model).order_by(ImageEmbeddingRow.image_id))
        if since is not None:
            query = query.where(ImageEmbeddingRow.created_at > since)
        with self.db.session() as session:
            rows = session.execute(query).all()
        times = [row[3] for row in rows if row[3] is not None]
        newest = max(times) if times else since
        if since is not None and newest is not None:
            newest = max(newest, since)
        ids, matrix = _matrix(rows)
        return ids, matrix, newest

    def version(self) -> int:
        """A number that grows whenever vectors are written or dropped, or images deleted:
        one primary-key read, so a retriever can check it before every search."""
        with self.db.session() as session:
            return int(session.scalar(select(LibraryVersionRow.version)
                                      .where(LibraryVersionRow.id == 1)) or 0)

    def embedding_state(self, model: str) -> tuple[int, datetime | None]:
        """(number of vectors of `model`, newest write time): one cheap aggregate query that
        tells an index whether anything was added, replaced or deleted since it last looked."""
        query = (select(func.count(), func.max(ImageEmbeddingRow.created_at))
                 .where(ImageEmbeddingRow.model == model))
        with self.db.session() as session:
            count, newest = session.execute(query).one()
        return int(count), newest

    def put_embeddings(self, model: str, items: builtins.list[tuple[str, np.ndarray]],
                       kind: str = "caption") -> None:
        """Store (or replace) one vector per image for `model`; all must share one dim.

        `kind` is "caption" (the vector embeds the caption text, dropped when it changes) or
        "image" (it embeds the pixels). Every row written gets the current time.
        """
        if kind not in EMBEDDING_KINDS:
            raise InputError(f"embedding kind {kind!r} is not one of {list(EMBEDDING_KINDS)}: "
                             "use 'caption' for text vectors, 'image' for pixel vectors")
        if not items:
            return
        vectors = {image_id: np.asarray(vector, dtype=VECTOR_DTYPE).reshape(-1)
                   for image_id, vector in items}  # a repeated id: the last vector wins
        dims = {vector.shape[0] for vector in vectors.values()}
        if len(dims) != 1 or 0 in dims:
            raise InputError(f"embeddings for model {model!r} have dims {sorted(dims)}: "
                             "every vector of one model must have the same, non-zero length")
        dim = dims.pop()
        now = utcnow()
        with self.db.session() as session:
            stored = session.scalar(select(ImageEmbeddingRow.dim)
                                    .where(ImageEmbeddingRow.model == model).limit(1))
            if stored is not None and stored != dim:
                raise InputError(f"model {model!r} has {stored}-dim vectors stored, got {dim}: "
                                 "use another model name for a different embedder")
            for chunk in chunks(sorted(vectors)):
                known = set(session.scalars(select(ImageRow.id).where(ImageRow.id.in_(chunk))))
                for image_id in chunk:
                    if image_id not in known:
                        image_row(session, image_id)  # raises NotFoundError naming it
                session.execute(delete(ImageEmbeddingRow)
                                .where(ImageEmbeddingRow.model == model,
                                       ImageEmbeddingRow.image_id.in_(chunk)))
                session.add_all([ImageEmbeddingRow(image_id=image_id, model=model, dim=dim,
                                                   vector=vectors[image_id].tobytes(),
                                                   kind=kind, created_at=now)
                                 for image_id in chunk])
                session.flush()
            bump_version(session)

    def missing_embeddings(self, model: str) -> builtins.list[LibraryImage]:
        """Images without a vector for `model` (oldest first): what an indexer must embed."""
        has_vector = (select(ImageEmbeddingRow.image_id)
                      .where(ImageEmbeddingRow.model == model,
                             ImageEmbeddingRow.image_id == ImageRow.id))
        query = (select(ImageRow).where(~has_vector.exists())
                 .order_by(ImageRow.created_at, ImageRow.id))
        with self.db.session() as session:
            return [to_image(row) for row in session.scalars(query)]


def bump_version(session: Session) -> None:
    """Count one more change to the library's vectors (in the caller's transaction)."""
    session.execute(update(LibraryVersionRow).where(LibraryVersionRow.id == 1)
                    .values(version=LibraryVersionRow.version + 1))


def drop_caption_vectors(session: Session, image_id: str) -> None:
    """Delete an image's caption vectors (stale once its caption changed); pixel ones stay."""
    bump_version(session)
    session.execute(delete(ImageEmbeddingRow)
                    .where(ImageEmbeddingRow.image_id == image_id,
                           ImageEmbeddingRow.kind == "caption"))


def _matrix(rows: builtins.list[Any]) -> tuple[builtins.list[str], np.ndarray]:
    """(ids, [n, dim] float32) from rows of (image_id, dim, vector, ...), in row order."""
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    matrix = np.stack([np.frombuffer(row[2], dtype=VECTOR_DTYPE, count=row[1])
                       for row in rows]).astype(np.float32)
    return [row[0] for row in rows], matrix
