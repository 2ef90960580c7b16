"""What library images visibly say: the words OCR read in them and the share of area they cover.

Retrieval penalises pictures whose visible text matches the query, so an image of a sign
saying "tea" does not win a search for tea. ImageStore (storage/images.py) offers these
methods to its callers.
"""

from __future__ import annotations

import builtins

from sqlalchemy import select

from composer.types import InputError, LibraryImage
from storage.db import Database
from storage.rows import image_row, to_image
from storage.tables import ImageRow, ImageTextRow, utcnow


class ImageTexts:
    """Stores and reads OCR results; each method runs in its own transaction."""

    def __init__(self, db: Database) -> None:
        """Use `db` for every call."""
        self.db = db

    def put_text(self, image_id: str, words: builtins.list[str], area: float,
                 engine: str) -> None:
        """Store (or replace) what an image visibly says: its words and their area share."""
        if not 0.0 <= area <= 1.0:
            raise InputError(f"text area {area} must be between 0 and 1")
        with self.db.session() as session:
            image_row(session, image_id)
            session.merge(ImageTextRow(image_id=image_id, engine=engine, words=list(words),
                                       area=float(area), created_at=utcnow()))

    def texts(self, image_ids: builtins.list[str]) -> dict[str, tuple[builtins.list[str], float]]:
        """(words, area) of those images that have been read; unread ones are left out."""
        if not image_ids:
            return {}
        query = select(ImageTextRow).where(ImageTextRow.image_id.in_(image_ids))
        with self.db.session() as session:
            return {row.image_id: (list(row.words), row.area) for row in session.scalars(query)}

    def missing_text(self) -> builtins.list[LibraryImage]:
        """Images not read by OCR yet (oldest first)."""
        read = select(ImageTextRow.image_id).where(ImageTextRow.image_id == ImageRow.id)
        query = select(ImageRow).where(~read.exists()).order_by(ImageRow.created_at, ImageRow.id)
        with self.db.session() as session:
            return [to_image(row) for row in session.scalars(query)]
