"""The image library: validated image files on disk, their records, thumbnails and vectors.

Images are content-addressed: the id is the sha256 of the bytes a person gave (for a private
upload, of the owner and that hash: `copy_id`) and the file lives at
`images_dir/<id[:2]>/<id>.<ext>`, so adding the same picture twice stores it once.
Every image is checked with Pillow before it is kept (size, pixel count, format, a full
decode), so the rest of the app can open library files without guarding against bombs or
broken files. The stored file is turned upright per EXIF and has no GPS position
(storage/imaging.py); a perceptual hash catches resized or recompressed copies of a picture
already in the library (near-duplicates), against an in-memory array of all hashes.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import logging
import os
import re
import tempfile
import threading
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from composer.config import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from composer.types import InputError, LibraryImage, NotFoundError
from storage.db import Database
from storage.faults import file_faults
from storage.imaging import (
    NEAR_DUPLICATE_DISTANCE,
    distances,
    make_thumbnail,
    phash_array,
    phash_distance,
    phash_file,
    prepare_image,
)
from storage.rows import check_caption, to_image
from storage.tables import (
    ImageEmbeddingRow,
    ImageRow,
    ImageTextRow,
    LibraryVersionRow,
    utcnow,
)

__all__ = ["ALLOWED_FORMATS", "CAPTION_SOURCES", "EMBEDDING_KINDS", "NEAR_DUPLICATE_DISTANCE",
           "THUMBNAIL_SIZES", "ImageStore", "NearDuplicateError", "copy_id", "phash_distance",
           "validate_image"]

log = logging.getLogger(__name__)

# Pillow format name -> file extension.
ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp",
                   "TIFF": "tif"}
VECTOR_DTYPE = np.dtype("<f4")  # little-endian float32, the same bytes on every machine
EMBEDDING_KINDS = ("caption", "image")  # what a vector embeds: the caption text or the pixels
# Who wrote a caption; "model:<captioner name>" is allowed as well.
CAPTION_SOURCES = ("", "user", "sidecar", "seed", "web")
MODEL_CAPTION_PREFIX = "model:"
MAX_CAPTION_SOURCE_CHARS = 64
THUMBNAIL_SIZES = (128, 256, 512)  # longest side in pixels
IN_LIST_CHUNK = 500  # ids per IN (...) list: SQLite allows a limited number of parameters
BACKFILL_BATCH = 200
IMAGE_ID = re.compile(r"[0-9a-f]{64}")


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


def check_caption_source(caption_source: str) -> None:
    """InputError unless `caption_source` is one of CAPTION_SOURCES or "model:<name>"."""
    known = caption_source in CAPTION_SOURCES or (
        caption_source.startswith(MODEL_CAPTION_PREFIX)
        and len(caption_source) > len(MODEL_CAPTION_PREFIX))
    if not known or len(caption_source) > MAX_CAPTION_SOURCE_CHARS:
        raise InputError(f"caption source {caption_source!r} is not one of "
                         f"{list(CAPTION_SOURCES)} or 'model:<captioner name>' (at most "
                         f"{MAX_CAPTION_SOURCE_CHARS} characters): use one of those")


def _caption_source(caption: str, caption_source: str) -> str:
    """The caption source to store: as given, else "user" when a caption is given."""
    check_caption_source(caption_source)
    return caption_source or ("user" if caption else "")


def _chunks(values: builtins.list[str]) -> builtins.list[builtins.list[str]]:
    return [values[start:start + IN_LIST_CHUNK] for start in range(0, len(values), IN_LIST_CHUNK)]


def _matrix(rows: builtins.list[Any]) -> tuple[builtins.list[str], np.ndarray]:
    """(ids, [n, dim] float32) from rows of (image_id, dim, vector, ...), in row order."""
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    matrix = np.stack([np.frombuffer(row[2], dtype=VECTOR_DTYPE, count=row[1])
                       for row in rows]).astype(np.float32)
    return [row[0] for row in rows], matrix


def validate_image(data: bytes, name: str) -> tuple[str, int, int]:
    """Check that `data` is a whole image of an allowed format within the limits.

    Returns (format, width, height). The byte size is checked before Pillow sees the data,
    the pixel count from the header before anything is decoded (decompression bombs), then
    the file is verified and fully decoded to catch truncated or corrupt files.
    """
    label = name or "the image"
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"{label} is {len(data):,} bytes, over the limit of "
                         f"{MAX_IMAGE_BYTES:,} bytes: resize or recompress it")
    if not data:
        raise InputError(f"{label} is empty (0 bytes): choose an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as image:
                image_format, (width, height) = image.format, image.size
                _check_header(label, image_format, width, height)
                image.verify()
            with Image.open(io.BytesIO(data), formats=[str(image_format)]) as image:
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(f"{label} looks like a decompression bomb: it claims more than the "
                         f"limit of {MAX_IMAGE_PIXELS:,} pixels (Pillow: {error}): "
                         "use a smaller image") from None
    except UnidentifiedImageError:
        raise InputError(f"{label} is not an image in an allowed format "
                         f"{sorted(ALLOWED_FORMATS)}: convert it to PNG or JPEG") from None
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError ...
        raise InputError(f"{label} is truncated or corrupt ({error}): "
                         "re-export or re-download it") from None
    return str(image_format), width, height


def _check_header(label: str, image_format: str | None, width: int, height: int) -> None:
    if image_format not in ALLOWED_FORMATS:
        raise InputError(f"{label} is a {image_format} image; allowed formats are "
                         f"{sorted(ALLOWED_FORMATS)}: convert it first")
    if width < 1 or height < 1:
        raise InputError(f"{label} has no pixels ({width}x{height}): use another image")
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{label} is {width}x{height} = {width * height:,} pixels, over the "
                         f"limit of {MAX_IMAGE_PIXELS:,} pixels: scale it down")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file.

    A read-only folder or a full disk raises StorageError naming `path` (storage/faults.py).
    """
    with file_faults(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(handle, "wb") as temp:
                temp.write(data)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


class ImageStore:
    """The library of images; see docs/contracts.md (storage/images.py)."""

    def __init__(self, db: Database, images_dir: str | Path,
                 thumbs_dir: str | Path | None = None) -> None:
        """Keep records in `db`, files under `images_dir` and thumbnails under `thumbs_dir`
        (default `images_dir/thumbs`); the folders are created when needed."""
        self.db = db
        self.images_dir = Path(images_dir)
        self.thumbs_dir = Path(thumbs_dir) if thumbs_dir is not None else self.images_dir / "thumbs"
        # The near-duplicate index: every usable phash of the library, oldest first, and the
        # library state (count, count without phash, newest created_at) it was loaded at.
        self._index_lock = threading.RLock()
        self._index_ids: builtins.list[str] = []
        self._index_hashes = np.zeros(0, dtype=np.uint64)
        self._index_state: tuple[int, int, datetime | None] | None = None
        self._backfilled = False

    # -- images ----------------------------------------------------------------------------

    def validate_image(self, data: bytes, name: str) -> tuple[str, int, int]:
        """The module-level `validate_image`, offered here for callers holding a store."""
        return validate_image(data, name)

    def add(self, data: bytes, *, name: str = "", caption: str = "", source: str = "",
            license: str = "", attribution: str = "", caption_source: str = "",
            allow_near_duplicate: bool = False, owner: str | None = None
            ) -> tuple[LibraryImage, bool]:
        """Validate and store an image; returns (image, created).

        The same bytes added again return (existing, False); a caption given then fills the
        existing one if it was empty. A different image whose perceptual hash is within
        NEAR_DUPLICATE_DISTANCE of a library image raises NearDuplicateError unless
        `allow_near_duplicate`. `caption_source` says who wrote the caption ("user" when a
        caption comes without one). `owner` None adds to the shared library, else to that
        person's private images. The file is written before the record is committed.

        Only images `owner` can see count (the shared library and their own; everything for
        None, the operator): bytes someone else keeps privately become the owner's own copy
        (see `copy_id`), and a look-alike of another person's image is no near-duplicate,
        so nothing here tells one person about another's files.
        """
        check_caption(caption)
        caption_source = _caption_source(caption, caption_source)
        image_format, _, _ = validate_image(data, name)
        content_id = hashlib.sha256(data).hexdigest()
        existing = self._visible_copy(content_id, owner, data, image_format, caption,
                                      caption_source)
        if existing is not None:
            return existing, False
        image_id = copy_id(content_id, owner)
        prepared = prepare_image(data, image_format, name)
        if not allow_near_duplicate and prepared.phash:
            self._refuse_near_duplicate(name or "the image", image_id, prepared.phash, owner)
        relative = f"{image_id[:2]}/{image_id}.{ALLOWED_FORMATS[image_format]}"
        _write_atomically(self.images_dir / relative, prepared.data)
        row = ImageRow(id=image_id, path=relative, format=image_format, width=prepared.width,
                       height=prepared.height, bytes=len(prepared.data), caption=caption,
                       source=source, license=license, attribution=attribution,
                       created_at=utcnow(), phash=prepared.phash, caption_source=caption_source,
                       owner=owner)
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:  # another process added the same bytes meanwhile
            existing = self._visible_copy(content_id, owner, data, image_format, caption,
                                          caption_source)
            if existing is None:
                raise
            return existing, False
        self._index_added(row)
        return to_image(row), True

    def add_file(self, path: str | Path, *, name: str = "", caption: str = "", source: str = "",
                 license: str = "", attribution: str = "", caption_source: str = "",
                 allow_near_duplicate: bool = False,
                 owner: str | None = None) -> tuple[LibraryImage, bool]:
        """`add` for a file on disk (named by its path in errors); size checked before reading."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as error:
            raise InputError(f"cannot read {path}: {error.strerror}: check the path") from None
        if size > MAX_IMAGE_BYTES:
            raise InputError(f"{path} is {size:,} bytes, over the limit of "
                             f"{MAX_IMAGE_BYTES:,} bytes: resize or recompress it")
        return self.add(path.read_bytes(), name=name or str(path), caption=caption, source=source,
                        license=license, attribution=attribution, caption_source=caption_source,
                        allow_near_duplicate=allow_near_duplicate, owner=owner)

    def get(self, image_id: str) -> LibraryImage:
        """The record of one image; NotFoundError if the library has no such id."""
        with self.db.session() as session:
            return to_image(self._row(session, image_id))

    def path(self, image_id: str) -> Path:
        """The absolute path of an image's file."""
        return self.images_dir / self.get(image_id).path

    def list(self, limit: int | None = None, offset: int = 0, *, source: str | None = None,
             license: str | None = None, search: str | None = None, owner: str | None = None,
             newest_first: bool = False) -> builtins.list[LibraryImage]:
        """The images, oldest first (the order they were added), one page of them.

        `source` and `license` keep exact matches; `search` keeps captions containing it
        (case-insensitive); `owner` keeps what that person sees (the shared library and their
        own uploads). `limit` None means all; `offset` skips that many first.
        """
        if offset < 0 or (limit is not None and limit < 0):
            raise InputError(f"limit {limit} and offset {offset} must not be negative: "
                             "pass 0 or more")
        query = _filtered(select(ImageRow), source, license, search, owner)
        order = (ImageRow.created_at.desc(), ImageRow.id.desc()) if newest_first \
            else (ImageRow.created_at, ImageRow.id)
        query = query.order_by(*order).offset(offset or None)
        if limit is not None:
            query = query.limit(limit)
        with self.db.session() as session:
            return [to_image(row) for row in session.scalars(query)]

    def count(self, *, source: str | None = None, license: str | None = None,
              search: str | None = None, owner: str | None = None) -> int:
        """How many images the library holds (those `list` would return with these filters)."""
        query = _filtered(select(func.count()).select_from(ImageRow), source, license, search,
                          owner)
        with self.db.session() as session:
            return session.scalar(query) or 0

    def ids(self, *, source: str | None = None, license: str | None = None,
            owner: str | None = None) -> builtins.list[str]:
        """The ids of the images matching the filters (sorted): a retrieval allow-list."""
        query = _filtered(select(ImageRow.id), source, license, None, owner).order_by(ImageRow.id)
        with self.db.session() as session:
            return builtins.list(session.scalars(query))

    def private_ids(self, except_owner: str) -> builtins.list[str]:
        """Ids of images other people uploaded privately: what `except_owner` must not see."""
        return [image_id for image_id, owner in self.owners().items() if owner != except_owner]

    def owners(self) -> dict[str, str]:
        """{id: owner} of every privately uploaded image (the shared library is left out)."""
        query = select(ImageRow.id, ImageRow.owner).where(ImageRow.owner.is_not(None))
        with self.db.session() as session:
            return dict(session.execute(query).tuples().all())

    def captions(self, image_ids: builtins.list[str]) -> dict[str, str]:
        """{id: caption} of those images still in the library (unknown ids left out)."""
        found: dict[str, str] = {}
        with self.db.session() as session:
            for chunk in _chunks(sorted(set(image_ids))):
                query = select(ImageRow.id, ImageRow.caption).where(ImageRow.id.in_(chunk))
                found.update({image_id: caption for image_id, caption in session.execute(query)})
        return found

    def sources(self, owner: str | None = None) -> builtins.list[str]:
        """The distinct non-empty sources, sorted (for a filter drop-down)."""
        return self._distinct(ImageRow.source, owner)

    def licenses(self, owner: str | None = None) -> builtins.list[str]:
        """The distinct non-empty licenses, sorted (for a filter drop-down)."""
        return self._distinct(ImageRow.license, owner)

    def update(self, image_id: str, *, caption: str | None = None, license: str | None = None,
               attribution: str | None = None,
               caption_source: str | None = None) -> LibraryImage:
        """Change an image's caption, license, attribution or caption source (None = keep).

        A new caption makes the image's caption vectors stale, so those (kind "caption") are
        deleted and the next `Retriever.index()` embeds the new text; pixel vectors (kind
        "image") stay. A changed caption without a `caption_source` is marked "user" (""
        when the caption is cleared).
        """
        if caption_source is not None:
            check_caption_source(caption_source)
        with self.db.session() as session:
            row = self._row(session, image_id)
            if caption is not None and caption != row.caption:
                check_caption(caption)
                row.caption = caption
                if caption_source is None:
                    caption_source = "user" if caption else ""
                row.caption_source = caption_source
                _drop_caption_vectors(session, image_id)
            elif caption_source is not None:
                row.caption_source = caption_source
            if license is not None:
                row.license = license
            if attribution is not None:
                row.attribution = attribution
            return to_image(row)

    def delete(self, image_id: str) -> None:
        """Delete an image's record, embeddings, file and thumbnails; blocks lose the image."""
        with self.db.session() as session:
            row = self._row(session, image_id)
            _bump_version(session)
            relative, hashed = row.path, row.phash is not None
            session.delete(row)
        (self.images_dir / relative).unlink(missing_ok=True)
        for size in THUMBNAIL_SIZES:
            self._thumbnail_path(image_id, size).unlink(missing_ok=True)
        self._index_removed(image_id, hashed)

    # -- thumbnails ------------------------------------------------------------------------

    def thumbnail(self, image_id: str, size: int = 256) -> Path:
        """The path of a JPEG thumbnail whose longer side is at most `size` (128, 256, 512).

        Made once, written atomically, then served from `thumbs_dir/<id[:2]>/<id>-<size>.jpg`;
        RGB, with transparent parts on white. NotFoundError for an unknown image.
        """
        if size not in THUMBNAIL_SIZES:
            raise InputError(f"thumbnail size {size} is not one of {list(THUMBNAIL_SIZES)}: "
                             "use one of those")
        if not IMAGE_ID.fullmatch(image_id):
            raise NotFoundError(f"no image with id {image_id!r} in the library: ids are 64 "
                                "hex digits; list the library to find the right one")
        target = self._thumbnail_path(image_id, size)
        if not target.exists():
            source = self.path(image_id)
            try:
                data = make_thumbnail(source, size)
            except OSError as error:
                raise NotFoundError(f"the file of image {image_id[:12]} ({source}) cannot be "
                                    f"read ({error}): add the picture again to restore it"
                                    ) from None
            _write_atomically(target, data)
        return target

    def _thumbnail_path(self, image_id: str, size: int) -> Path:
        return self.thumbs_dir / image_id[:2] / f"{image_id}-{size}.jpg"

    # -- near-duplicates -------------------------------------------------------------------

    def near_duplicates(self, image_id: str) -> builtins.list[tuple[LibraryImage, int]]:
        """Other library images within NEAR_DUPLICATE_DISTANCE of this one: (image, distance),
        closest first (then oldest first); [] for a flat image, which has no usable hash."""
        with self._index_lock:
            self._refresh_index()
            phash = self.get(image_id).phash
            if not phash or not self._index_ids:
                return []
            found = distances(self._index_hashes, phash)
            close = [(int(found[number]), number, self._index_ids[number])
                     for number in np.flatnonzero(found <= NEAR_DUPLICATE_DISTANCE)
                     if self._index_ids[number] != image_id]
        close.sort()
        images = self.get_many([found_id for _, _, found_id in close])
        return [(images[found_id], distance) for distance, _, found_id in close
                if found_id in images]

    def backfill_phashes(self) -> int:
        """Compute the perceptual hash of images stored without one (added before migration
        0004); returns how many were filled. Unreadable files get "" (no hash) and a warning.

        Called by the first near-duplicate check of a store, so it runs once, lazily.
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

    def _file_phash(self, relative: str) -> str:
        try:
            return phash_file(self.images_dir / relative)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
            log.warning("cannot hash library file %s (%s): it gets no near-duplicate checks",
                        relative, error)
            return ""

    def _refuse_near_duplicate(self, label: str, image_id: str, phash: str,
                               owner: str | None = None) -> None:
        """NearDuplicateError if a library image other than `image_id` that `owner` sees is
        within the limit (the closest, then the oldest); other people's private images never
        count, so the error cannot describe them."""
        with self._index_lock:
            self._refresh_index()
            if not self._index_ids:
                return
            found = distances(self._index_hashes, phash)
            close = sorted((int(found[number]), number, self._index_ids[number])
                           for number in np.flatnonzero(found <= NEAR_DUPLICATE_DISTANCE)
                           if self._index_ids[number] != image_id)
        images = self.get_many([found_id for _, _, found_id in close])
        for distance, _, found_id in close:
            existing = images.get(found_id)  # None: deleted meanwhile
            if existing is not None and _visible(existing.owner, owner):
                raise NearDuplicateError(label, existing, distance)

    def _refresh_index(self) -> None:
        """Reload the (id, phash) array when the library changed (image count, count without
        a hash or newest image differ from what it was loaded at); backfills hashes once."""
        if not self._backfilled:
            self.backfill_phashes()
            self._backfilled = True
        with self.db.session() as session:
            state = _library_state(session)
            if state == self._index_state:
                return
            rows = session.execute(select(ImageRow.id, ImageRow.phash)
                                   .where(ImageRow.phash.is_not(None), ImageRow.phash != "")
                                   .order_by(ImageRow.created_at, ImageRow.id)).all()
        self._index_ids = [image_id for image_id, _ in rows]
        self._index_hashes = phash_array([phash for _, phash in rows])
        self._index_state = state

    def _index_added(self, row: ImageRow) -> None:
        """Put a newly stored image into the loaded index and the state it expects."""
        with self._index_lock:
            if self._index_state is None:
                return
            count, unhashed, newest = self._index_state
            newest = row.created_at if newest is None else max(newest, row.created_at)
            self._index_state = (count + 1, unhashed, newest)
            if row.phash:
                self._index_ids.append(row.id)
                self._index_hashes = np.append(self._index_hashes, phash_array([row.phash]))

    def _index_removed(self, image_id: str, hashed: bool) -> None:
        """Take a deleted image out of the loaded index (a newest one forces a reload)."""
        with self._index_lock:
            if self._index_state is None:
                return
            count, unhashed, newest = self._index_state
            self._index_state = (count - 1, unhashed - int(not hashed), newest)
            if image_id in self._index_ids:
                number = self._index_ids.index(image_id)
                del self._index_ids[number]
                self._index_hashes = np.delete(self._index_hashes, number)

    # -- embeddings ------------------------------------------------------------------------

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
                rows = [row for chunk in _chunks(sorted(set(ids)))
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
            for chunk in _chunks(sorted(vectors)):
                known = set(session.scalars(select(ImageRow.id).where(ImageRow.id.in_(chunk))))
                for image_id in chunk:
                    if image_id not in known:
                        self._row(session, image_id)  # raises NotFoundError naming it
                session.execute(delete(ImageEmbeddingRow)
                                .where(ImageEmbeddingRow.model == model,
                                       ImageEmbeddingRow.image_id.in_(chunk)))
                session.add_all([ImageEmbeddingRow(image_id=image_id, model=model, dim=dim,
                                                   vector=vectors[image_id].tobytes(),
                                                   kind=kind, created_at=now)
                                 for image_id in chunk])
                session.flush()
            _bump_version(session)

    def missing_embeddings(self, model: str) -> builtins.list[LibraryImage]:
        """Images without a vector for `model` (oldest first): what an indexer must embed."""
        has_vector = (select(ImageEmbeddingRow.image_id)
                      .where(ImageEmbeddingRow.model == model,
                             ImageEmbeddingRow.image_id == ImageRow.id))
        query = (select(ImageRow).where(~has_vector.exists())
                 .order_by(ImageRow.created_at, ImageRow.id))
        with self.db.session() as session:
            return [to_image(row) for row in session.scalars(query)]

    # -- visible text (OCR) ----------------------------------------------------------------

    def put_text(self, image_id: str, words: builtins.list[str], area: float,
                 engine: str) -> None:
        """Store (or replace) what an image visibly says: its words and their area share."""
        if not 0.0 <= area <= 1.0:
            raise InputError(f"text area {area} must be between 0 and 1")
        with self.db.session() as session:
            self._row(session, image_id)
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

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _row(session: Session, image_id: str) -> ImageRow:
        row = session.get(ImageRow, image_id)
        if row is None:
            raise NotFoundError(f"no image with id {image_id!r} in the library: "
                                "list the library to find the right id")
        return row

    def _visible_copy(self, content_id: str, owner: str | None, data: bytes,
                      image_format: str, caption: str, caption_source: str
                      ) -> LibraryImage | None:
        """The stored copy of these bytes that `owner` sees: the shared one (or, from before
        private copies had ids of their own, theirs under the plain hash), else their own
        private copy; None when they have none."""
        for image_id in dict.fromkeys([content_id, copy_id(content_id, owner)]):
            found = self._existing(image_id, owner, data, image_format, caption,
                                   caption_source)
            if found is not None:
                return found
        return None

    def _existing(self, image_id: str, owner: str | None, data: bytes, image_format: str,
                  caption: str, caption_source: str) -> LibraryImage | None:
        """The stored record `image_id` if `owner` sees it (file restored if lost, caption
        filled), or None."""
        with self.db.session() as session:
            row = session.get(ImageRow, image_id)
            if row is None or not _visible(row.owner, owner):
                return None
            if caption and not row.caption:
                row.caption = caption
                row.caption_source = caption_source
                _drop_caption_vectors(session, image_id)
            if not (self.images_dir / row.path).exists():
                _write_atomically(self.images_dir / row.path,
                                  prepare_image(data, image_format).data)
            return to_image(row)

    def get_many(self, image_ids: builtins.list[str]) -> dict[str, LibraryImage]:
        """{id: image} of those ids still in the library (unknown ids left out), one query."""
        found: dict[str, LibraryImage] = {}
        with self.db.session() as session:
            for chunk in _chunks(sorted(set(image_ids))):
                for row in session.scalars(select(ImageRow).where(ImageRow.id.in_(chunk))):
                    found[row.id] = to_image(row)
        return found

    def _distinct(self, column: Any, owner: str | None) -> builtins.list[str]:
        query = _filtered(select(column).distinct().where(column != ""), None, None, None, owner)
        query = query.order_by(column)
        with self.db.session() as session:
            return builtins.list(session.scalars(query))


def copy_id(content_id: str, owner: str | None) -> str:
    """The id of an image added by `owner`: the sha256 of its bytes (`content_id`) in the
    shared library (owner None); for a private upload, the sha256 of the owner and that hash.

    So every person holds their own copy of a picture (caption, license, vectors, file),
    deleting it removes only theirs, and an id never tells whether someone else holds the
    same bytes.
    """
    if owner is None:
        return content_id
    return hashlib.sha256(f"private copy\n{owner}\n{content_id}".encode("utf-8")).hexdigest()


def _visible(image_owner: str | None, owner: str | None) -> bool:
    """Whether `owner` sees an image owned by `image_owner` (None: the operator sees all)."""
    return owner is None or image_owner is None or image_owner == owner


def _filtered(query: Any, source: str | None, license: str | None, search: str | None,
              owner: str | None = None) -> Any:
    """`query` restricted to a source, a license, captions containing `search`, and what
    `owner` may see (the shared library and their own uploads)."""
    if owner is not None:
        query = query.where(or_(ImageRow.owner.is_(None), ImageRow.owner == owner))
    if source is not None:
        query = query.where(ImageRow.source == source)
    if license is not None:
        query = query.where(ImageRow.license == license)
    if search is not None and search.strip():
        query = query.where(ImageRow.caption.icontains(search.strip(), autoescape=True))
    return query


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


def _bump_version(session: Session) -> None:
    """Count one more change to the library's vectors (in the caller's transaction)."""
    session.execute(update(LibraryVersionRow).where(LibraryVersionRow.id == 1)
                    .values(version=LibraryVersionRow.version + 1))


def _drop_caption_vectors(session: Session, image_id: str) -> None:
    """Delete an image's caption vectors (stale once its caption changed); pixel ones stay."""
    _bump_version(session)
    session.execute(delete(ImageEmbeddingRow)
                    .where(ImageEmbeddingRow.image_id == image_id,
                           ImageEmbeddingRow.kind == "caption"))
