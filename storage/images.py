"""The image library: validated image files on disk, their records, and caption embeddings.

Images are content-addressed: the id is the sha256 of the bytes and the file lives at
`images_dir/<id[:2]>/<id>.<ext>`, so adding the same picture twice stores it once. Every
image is checked with Pillow before it is kept (size, pixel count, format, a full decode), so
the rest of the app can open library files without guarding against bombs or broken files.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from composer.config import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from composer.types import InputError, LibraryImage, NotFoundError
from storage.db import Database
from storage.rows import check_caption, to_image
from storage.tables import ImageEmbeddingRow, ImageRow, ImageTextRow, utcnow

# Pillow format name -> file extension.
ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp",
                   "TIFF": "tif"}
VECTOR_DTYPE = np.dtype("<f4")  # little-endian float32, the same bytes on every machine


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
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, EOFError ...
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
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
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

    def __init__(self, db: Database, images_dir: str | Path) -> None:
        """Keep records in `db` and files under `images_dir` (created when needed)."""
        self.db = db
        self.images_dir = Path(images_dir)

    # -- images ----------------------------------------------------------------------------

    def validate_image(self, data: bytes, name: str) -> tuple[str, int, int]:
        """The module-level `validate_image`, offered here for callers holding a store."""
        return validate_image(data, name)

    def add(self, data: bytes, *, name: str = "", caption: str = "", source: str = "",
            license: str = "", attribution: str = "") -> tuple[LibraryImage, bool]:
        """Validate and store an image; returns (image, created).

        The same bytes added again return (existing, False); a caption given then fills the
        existing one if it was empty. The file is written before the record is committed.
        """
        check_caption(caption)
        image_format, width, height = validate_image(data, name)
        image_id = hashlib.sha256(data).hexdigest()
        relative = f"{image_id[:2]}/{image_id}.{ALLOWED_FORMATS[image_format]}"
        existing = self._existing(image_id, data, caption)
        if existing is not None:
            return existing, False
        _write_atomically(self.images_dir / relative, data)
        row = ImageRow(id=image_id, path=relative, format=image_format, width=width,
                       height=height, bytes=len(data), caption=caption, source=source,
                       license=license, attribution=attribution, created_at=utcnow())
        try:
            with self.db.session() as session:
                session.add(row)
            return to_image(row), True
        except IntegrityError:  # another process added the same bytes meanwhile
            existing = self._existing(image_id, data, caption)
            if existing is None:
                raise
            return existing, False

    def add_file(self, path: str | Path, *, name: str = "", caption: str = "", source: str = "",
                 license: str = "", attribution: str = "") -> tuple[LibraryImage, bool]:
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
                        license=license, attribution=attribution)

    def get(self, image_id: str) -> LibraryImage:
        """The record of one image; NotFoundError if the library has no such id."""
        with self.db.session() as session:
            return to_image(self._row(session, image_id))

    def path(self, image_id: str) -> Path:
        """The absolute path of an image's file."""
        return self.images_dir / self.get(image_id).path

    def list(self, limit: int | None = None) -> builtins.list[LibraryImage]:
        """The images, oldest first (the order they were added)."""
        query = select(ImageRow).order_by(ImageRow.created_at, ImageRow.id)
        if limit is not None:
            query = query.limit(limit)
        with self.db.session() as session:
            return [to_image(row) for row in session.scalars(query)]

    def count(self) -> int:
        """How many images the library holds."""
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(ImageRow)) or 0

    def update(self, image_id: str, *, caption: str | None = None, license: str | None = None,
               attribution: str | None = None) -> LibraryImage:
        """Change an image's caption, license or attribution (None leaves a field as it is).

        A new caption makes its stored embeddings stale, so they are deleted; the next
        `Retriever.index()` embeds the new caption.
        """
        with self.db.session() as session:
            row = self._row(session, image_id)
            if caption is not None and caption != row.caption:
                check_caption(caption)
                row.caption = caption
                session.execute(delete(ImageEmbeddingRow)
                                .where(ImageEmbeddingRow.image_id == image_id))
            if license is not None:
                row.license = license
            if attribution is not None:
                row.attribution = attribution
            return to_image(row)

    def delete(self, image_id: str) -> None:
        """Delete an image's record, embeddings and file; blocks showing it lose the image."""
        with self.db.session() as session:
            row = self._row(session, image_id)
            relative = row.path
            session.delete(row)
        (self.images_dir / relative).unlink(missing_ok=True)

    # -- embeddings ------------------------------------------------------------------------

    def embeddings(self, model: str) -> tuple[builtins.list[str], np.ndarray]:
        """All stored vectors of `model`: (image ids, [n, dim] float32 matrix), by id."""
        query = (select(ImageEmbeddingRow.image_id, ImageEmbeddingRow.dim,
                        ImageEmbeddingRow.vector)
                 .where(ImageEmbeddingRow.model == model).order_by(ImageEmbeddingRow.image_id))
        with self.db.session() as session:
            rows = session.execute(query).all()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        matrix = np.stack([np.frombuffer(vector, dtype=VECTOR_DTYPE, count=dim)
                           for _, dim, vector in rows]).astype(np.float32)
        return [image_id for image_id, _, _ in rows], matrix

    def put_embeddings(self, model: str,
                       items: builtins.list[tuple[str, np.ndarray]]) -> None:
        """Store (or replace) one vector per image for `model`; all must share one dim."""
        if not items:
            return
        vectors = [(image_id, np.asarray(vector, dtype=VECTOR_DTYPE).reshape(-1))
                   for image_id, vector in items]
        dims = {vector.shape[0] for _, vector in vectors}
        if len(dims) != 1 or 0 in dims:
            raise InputError(f"embeddings for model {model!r} have dims {sorted(dims)}: "
                             "every vector of one model must have the same, non-zero length")
        dim = dims.pop()
        with self.db.session() as session:
            stored = session.scalar(select(ImageEmbeddingRow.dim)
                                    .where(ImageEmbeddingRow.model == model).limit(1))
            if stored is not None and stored != dim:
                raise InputError(f"model {model!r} has {stored}-dim vectors stored, got {dim}: "
                                 "use another model name for a different embedder")
            for image_id, vector in vectors:
                self._row(session, image_id)
                session.merge(ImageEmbeddingRow(image_id=image_id, model=model, dim=dim,
                                                vector=vector.tobytes()))

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

    def _existing(self, image_id: str, data: bytes, caption: str) -> LibraryImage | None:
        """The stored record of these bytes (file restored if lost, caption filled), or None."""
        with self.db.session() as session:
            row = session.get(ImageRow, image_id)
            if row is None:
                return None
            if caption and not row.caption:
                row.caption = caption
                session.execute(delete(ImageEmbeddingRow)
                                .where(ImageEmbeddingRow.image_id == image_id))
            if not (self.images_dir / row.path).exists():
                _write_atomically(self.images_dir / row.path, data)
            return to_image(row)
