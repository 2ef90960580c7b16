"""Near-duplicate detection: resized or recompressed copies of a picture already in the library.

Every image's 64-bit perceptual hash (storage/imaging.py) is kept in an in-memory uint64 array,
oldest first, and compared with a new image's hash in one vectorised pass. The array is
reloaded only when the library changed (image count, count without a hash, newest image), so
other processes' adds and deletes are seen without a reload per check; this process's own adds
and deletes update it in place. Hashes of images stored before migration 0004 are computed
lazily, once, by the first check.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from composer.types import InputError, LibraryImage
from storage.db import Database
from storage.imaging import NEAR_DUPLICATE_DISTANCE, distances, phash_array, phash_file
from storage.rows import image_row
from storage.tables import ImageRow

log = logging.getLogger(__name__)

BACKFILL_BATCH = 200


class NearDuplicateError(InputError):
    """A new image looks like one already in the library (perceptual hashes within the limit).

    `existing` is the library image it resembles, `distance` how many of the 64 hash bits
    differ (0 = the same picture to the eye).
    """

    def __init__(self, label: str, existing: LibraryImage, distance: int) -> None:
        described = existing.caption or existing.source or existing.path
        if len(described) > 60:
            described = described[:57] + "..."
        super().__init__(
            f"{label} looks like a near-duplicate of library image {existing.id[:12]} "
            f"({described!r}): their perceptual hashes differ in {distance} of 64 bits, "
            f"within the limit of {NEAR_DUPLICATE_DISTANCE}, so it is probably the same "
            "picture resized, recompressed or re-exported; to keep both anyway, add it again "
            "with allow_near_duplicate=True")
        self.existing = existing
        self.distance = distance


class PhashIndex:
    """The (id, phash) array of one store's library, kept in step with the database."""

    def __init__(self, db: Database, images_dir: Path) -> None:
        """Read hashes from `db`; backfill missing ones from the files under `images_dir`."""
        self.db = db
        self.images_dir = images_dir
        # Every usable phash of the library, oldest first, and the library state (count,
        # count without phash, newest created_at) it was loaded at.
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._state: tuple[int, int, datetime | None] | None = None
        self._backfilled = False

    def close_to(self, image_id: str, phash: str | None = None) -> list[tuple[int, str]]:
        """(distance, id) of library images other than `image_id` within
        NEAR_DUPLICATE_DISTANCE of `phash`, closest first, then oldest first.

        `phash` None means the stored hash of `image_id` (NotFoundError if there is no such
        image); an empty hash (a flat image) is close to nothing.
        """
        with self._lock:
            self._refresh()
            if phash is None:
                with self.db.session() as session:
                    phash = image_row(session, image_id).phash
            if not phash or not self._ids:
                return []
            found = distances(self._hashes, phash)
            close = sorted((int(found[number]), number, self._ids[number])
                           for number in np.flatnonzero(found <= NEAR_DUPLICATE_DISTANCE)
                           if self._ids[number] != image_id)
        return [(distance, found_id) for distance, _, found_id in close]

    def backfill(self) -> int:
        """Compute the perceptual hash of images stored without one (added before migration
        0004); returns how many were filled. Unreadable files get "" (no hash) and a warning.
        """
        filled = 0
        while True:
            with self.db.session() as session:
                rows = session.execute(select(ImageRow.id, ImageRow.path)
                                       .where(ImageRow.phash.is_(None))
                                       .order_by(ImageRow.id).limit(BACKFILL_BATCH)).all()
            if not rows:
                return filled
            values = {image_id: self._file_phash(relative) for image_id, relative in rows}
            with self.db.session() as session:
                for image_id, value in values.items():
                    session.execute(update(ImageRow)
                                    .where(ImageRow.id == image_id, ImageRow.phash.is_(None))
                                    .values(phash=value))
            filled += len(values)

    def added(self, row: ImageRow) -> None:
        """Put a newly stored image into the loaded index and the state it expects."""
        with self._lock:
            if self._state is None:
                return
            count, unhashed, newest = self._state
            newest = row.created_at if newest is None else max(newest, row.created_at)
            self._state = (count + 1, unhashed, newest)
            if row.phash:
                self._ids.append(row.id)
                self._hashes = np.append(self._hashes, phash_array([row.phash]))

    def removed(self, image_id: str, hashed: bool) -> None:
        """Take a deleted image out of the loaded index (a newest one forces a reload)."""
        with self._lock:
            if self._state is None:
                return
            count, unhashed, newest = self._state
            self._state = (count - 1, unhashed - int(not hashed), newest)
            if image_id in self._ids:
                number = self._ids.index(image_id)
                del self._ids[number]
                self._hashes = np.delete(self._hashes, number)

    def _file_phash(self, relative: str) -> str:
        try:
            return phash_file(self.images_dir / relative)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
            log.warning("cannot hash library file %s (%s): it gets no near-duplicate checks",
                        relative, error)
            return ""

    def _refresh(self) -> None:
        """Reload the (id, phash) array when the library changed (image count, count without
        a hash or newest image differ from what it was loaded at); backfills hashes once."""
        if not self._backfilled:
            self.backfill()
            self._backfilled = True
        with self.db.session() as session:
            state = _library_state(session)
            if state == self._state:
                return
            rows = session.execute(select(ImageRow.id, ImageRow.phash)
                                   .where(ImageRow.phash.is_not(None), ImageRow.phash != "")
                                   .order_by(ImageRow.created_at, ImageRow.id)).all()
        self._ids = [image_id for image_id, _ in rows]
        self._hashes = phash_array([phash for _, phash in rows])
        self._state = state


def _library_state(session: Session) -> tuple[int, int, datetime | None]:
    """(images, images without a phash yet, newest created_at): changes when the library does.

    Three subqueries in one statement, each answered from an index (no table scan).
    """
    count = select(func.count()).select_from(ImageRow).scalar_subquery()
    unhashed = (select(func.count()).select_from(ImageRow)
                .where(ImageRow.phash.is_(None)).scalar_subquery())
    newest = select(func.max(ImageRow.created_at)).scalar_subquery()
    images, missing, latest = session.execute(select(count, unhashed, newest)).one()
    return int(images), int(missing), latest
