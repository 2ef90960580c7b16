"""The image library: validated image files on disk and their records.

Images are content-addressed: the id is the sha256 of the bytes a person gave (for a private
upload, of the owner and that hash: `copy_id`) and the file lives at
`images_dir/<id[:2]>/<id>.<ext>`, so adding the same picture twice stores it once. The stored
file is checked, turned upright per EXIF and has no GPS position (storage/image_files.py,
storage/imaging.py); a perceptual hash catches resized or recompressed copies of a picture
already in the library (storage/near_duplicates.py). ImageStore also offers the library's
vectors (storage/image_vectors.py) and OCR text (storage/image_text.py), so callers hold one
object for the whole library.
"""

from __future__ import annotations

import builtins
import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from composer.config import MAX_IMAGE_BYTES
from composer.types import InputError, LibraryImage
from storage.db import Database
from storage.image_files import (
    ALLOWED_FORMATS,
    THUMBNAIL_SIZES,
    thumbnail_path,
    validate_image,
    write_atomically,
)
from storage.image_files import thumbnail as make_or_find_thumbnail
from storage.image_text import ImageTexts
from storage.image_vectors import ImageVectors, bump_version, drop_caption_vectors
from storage.imaging import prepare_image
from storage.near_duplicates import NearDuplicateError, PhashIndex
from storage.rows import (
    check_caption,
    check_caption_source,
    chunks,
    image_row,
    to_image,
)
from storage.tables import ImageRow, utcnow


class ImageStore(ImageVectors, ImageTexts):
    """The library of images; see docs/contracts.md (storage/images.py)."""

    def __init__(self, db: Database, images_dir: str | Path,
                 thumbs_dir: str | Path | None = None) -> None:
        """Keep records in `db`, files under `images_dir` and thumbnails under `thumbs_dir`
        (default `images_dir/thumbs`); the folders are created when needed."""
        super().__init__(db)
        self.images_dir = Path(images_dir)
        self.thumbs_dir = Path(thumbs_dir) if thumbs_dir is not None else self.images_dir / "thumbs"
        self._phashes = PhashIndex(db, self.images_dir)

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
        write_atomically(self.images_dir / relative, prepared.data)
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
        self._phashes.added(row)
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
            return to_image(image_row(session, image_id))

    def get_many(self, image_ids: builtins.list[str]) -> dict[str, LibraryImage]:
        """{id: image} of those ids still in the library (unknown ids left out), one query."""
        found: dict[str, LibraryImage] = {}
        with self.db.session() as session:
            for chunk in chunks(sorted(set(image_ids))):
                for row in session.scalars(select(ImageRow).where(ImageRow.id.in_(chunk))):
                    found[row.id] = to_image(row)
        return found

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

    def owners(self) -> dict[str, str]:
        """{id: owner} of every privately uploaded image (the shared library is left out)."""
        query = select(ImageRow.id, ImageRow.owner).where(ImageRow.owner.is_not(None))
        with self.db.session() as session:
            return dict(session.execute(query).tuples().all())

    def captions(self, image_ids: builtins.list[str]) -> dict[str, str]:
        """{id: caption} of those images still in the library (unknown ids left out)."""
        found: dict[str, str] = {}
        with self.db.session() as session:
            for chunk in chunks(sorted(set(image_ids))):
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
            row = image_row(session, image_id)
            if caption is not None and caption != row.caption:
                check_caption(caption)
                row.caption = caption
                if caption_source is None:
                    caption_source = "user" if caption else ""
                row.caption_source = caption_source
                drop_caption_vectors(session, image_id)
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
            row = image_row(session, image_id)
            bump_version(session)
            relative, hashed = row.path, row.phash is not None
            session.delete(row)
        (self.images_dir / relative).unlink(missing_ok=True)
        for size in THUMBNAIL_SIZES:
            thumbnail_path(self.thumbs_dir, image_id, size).unlink(missing_ok=True)
        self._phashes.removed(image_id, hashed)

    def thumbnail(self, image_id: str, size: int = 256) -> Path:
        """The path of a JPEG thumbnail whose longer side is at most `size` (128, 256, 512).

        Made once, written atomically, then served from `thumbs_dir/<id[:2]>/<id>-<size>.jpg`;
        RGB, with transparent parts on white. NotFoundError for an unknown image.
        """
        return make_or_find_thumbnail(self.thumbs_dir, image_id, size, self.path)

    # -- near-duplicates -------------------------------------------------------------------

    def near_duplicates(self, image_id: str) -> builtins.list[tuple[LibraryImage, int]]:
        """Other library images within NEAR_DUPLICATE_DISTANCE of this one: (image, distance),
        closest first (then oldest first); [] for a flat image, which has no usable hash."""
        close = self._phashes.close_to(image_id)
        images = self.get_many([found_id for _, found_id in close])
        return [(images[found_id], distance) for distance, found_id in close
                if found_id in images]

    def backfill_phashes(self) -> int:
        """Compute the perceptual hash of images stored without one (added before migration
        0004); returns how many were filled. Unreadable files get "" (no hash) and a warning.

        Called by the first near-duplicate check of a store, so it runs once, lazily.
        """
        return self._phashes.backfill()

    def _refuse_near_duplicate(self, label: str, image_id: str, phash: str,
                               owner: str | None = None) -> None:
        """NearDuplicateError if a library image other than `image_id` that `owner` sees is
        within the limit (the closest, then the oldest); other people's private images never
        count, so the error cannot describe them."""
        close = self._phashes.close_to(image_id, phash)
        images = self.get_many([found_id for _, found_id in close])
        for distance, found_id in close:
            existing = images.get(found_id)  # None: deleted meanwhile
            if existing is not None and _visible(existing.owner, owner):
                raise NearDuplicateError(label, existing, distance)

    # -- helpers ---------------------------------------------------------------------------

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
                drop_caption_vectors(session, image_id)
            if not (self.images_dir / row.path).exists():
                write_atomically(self.images_dir / row.path,
                                 prepare_image(data, image_format).data)
            return to_image(row)

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


def _caption_source(caption: str, caption_source: str) -> str:
    """The caption source to store: as given, else "user" when a caption is given."""
    check_caption_source(caption_source)
    return caption_source or ("user" if caption else "")


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
