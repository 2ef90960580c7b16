"""Likes and dislikes of paragraphs and documents (composer.types.FeedbackRecord).

One rating per (document, paragraph, person): rating again replaces it, 0 clears it. The
paragraph's kind and origin are stored with the rating, so the feedback report
(composer/loop.py) still counts it after the paragraph is edited or deleted.
"""

from __future__ import annotations

import builtins

from sqlalchemy import select

from composer.types import FeedbackRecord, InputError, NotFoundError
from storage.db import Database
from storage.tables import DocumentRow, FeedbackRow, utcnow

DOCUMENT_TARGET = 0  # block_id stored for a rating of the whole document


class FeedbackRepository:
    """Stores and reads ratings; each method runs in its own transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def rate(self, doc_id: str, block_id: int | None, owner: str, value: int,
             kind: str = "", origin: str = "") -> None:
        """Like (+1), dislike (-1) or clear (0) a paragraph (block_id) or the document (None)."""
        if value not in (-1, 0, 1):
            raise InputError(f"rating {value!r} must be 1 (like), -1 (dislike) or 0 (clear)")
        if not owner:
            raise InputError("a rating needs who gave it: reload the page")
        target = DOCUMENT_TARGET if block_id is None else int(block_id)
        with self.db.session() as session:
            if session.get(DocumentRow, doc_id) is None:
                raise NotFoundError(f"no document with id {doc_id!r}: reload the page")
            row = session.scalar(select(FeedbackRow).where(
                FeedbackRow.document_id == doc_id, FeedbackRow.block_id == target,
                FeedbackRow.owner == owner))
            if value == 0:
                if row is not None:
                    session.delete(row)
                return
            now = utcnow()
            if row is None:
                session.add(FeedbackRow(document_id=doc_id, block_id=target, owner=owner,
                                        value=value, kind=kind[:16], origin=origin[:16],
                                        created_at=now, updated_at=now))
            else:
                row.value, row.updated_at = value, now
                row.kind, row.origin = kind[:16] or row.kind, origin[:16] or row.origin

    def for_document(self, doc_id: str, owner: str) -> dict[int | None, int]:
        """{block_id (None: the document): value} of `owner`'s ratings of one document."""
        with self.db.session() as session:
            rows = session.execute(select(FeedbackRow.block_id, FeedbackRow.value).where(
                FeedbackRow.document_id == doc_id, FeedbackRow.owner == owner))
            return {(None if block == DOCUMENT_TARGET else block): value
                    for block, value in rows}

    def all(self) -> builtins.list[FeedbackRecord]:
        """Every rating, oldest first (the feedback report's input)."""
        with self.db.session() as session:
            rows = session.scalars(select(FeedbackRow).order_by(FeedbackRow.id))
            return [FeedbackRecord(
                document_id=row.document_id,
                block_id=None if row.block_id == DOCUMENT_TARGET else row.block_id,
                owner=row.owner, value=row.value, kind=row.kind, origin=row.origin,
                created_at=row.created_at.isoformat()) for row in rows]
