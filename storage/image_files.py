"""The image library's files on disk: validation before anything is kept, atomic writes, thumbnails.

Every image is checked with Pillow before it is kept (size, pixel count, format, a full
decode), so the rest of the app can open library files without guarding against bombs or
broken files. Files are written to a temporary name and renamed, so readers never see half a
file. Thumbnails are made once and served from `thumbs_dir/<id[:2]>/<id>-<size>.jpg`.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from composer.config import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from composer.types import InputError, NotFoundError
from storage.faults import file_faults
from storage.imaging import make_thumbnail

# Pillow format name -> file extension.
ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp",
                   "TIFF": "tif"}
THUMBNAIL_SIZES = (128, 256, 512)  # longest side in pixels
IMAGE_ID = re.compile(r"[0-9a-f]{64}")


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


def write_atomically(path: Path, data: bytes) -> None:
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


def thumbnail_path(thumbs_dir: Path, image_id: str, size: int) -> Path:
    """Where the thumbnail of `image_id` at `size` lives (whether or not it was made yet)."""
    return thumbs_dir / image_id[:2] / f"{image_id}-{size}.jpg"


def thumbnail(thumbs_dir: Path, image_id: str, size: int,
              source: Callable[[str], Path]) -> Path:
    """The thumbnail's path, made from the file `source(image_id)` names on first use.

    InputError for a size not in THUMBNAIL_SIZES; NotFoundError for an id that is no image id
    or whose file cannot be read.
    """
    if size not in THUMBNAIL_SIZES:
        raise InputError(f"thumbnail size {size} is not one of {list(THUMBNAIL_SIZES)}: "
                         "use one of those")
    if not IMAGE_ID.fullmatch(image_id):
        raise NotFoundError(f"no image with id {image_id!r} in the library: ids are 64 "
                            "hex digits; list the library to find the right one")
    target = thumbnail_path(thumbs_dir, image_id, size)
    if not target.exists():
        original = source(image_id)
        try:
            data = make_thumbnail(original, size)
        except OSError as error:
            raise NotFoundError(f"the file of image {image_id[:12]} ({original}) cannot be "
                                f"read ({error}): add the picture again to restore it"
                                ) from None
        write_atomically(target, data)
    return target
