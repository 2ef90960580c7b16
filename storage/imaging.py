"""Pixel helpers of the image library: EXIF orientation and location, perceptual hash, thumbnails.

Everything here works on already validated images (storage/image_files.py `validate_image`) and is
deterministic: the same bytes give the same stored file, the same hash and the same thumbnail.

- `prepare_image` turns the bytes a person gave into the bytes that are stored: turned upright
  when EXIF says the camera was held sideways (so every viewer shows it the same way), and
  without EXIF when it carries a GPS position (articles are shared; the location must not be).
- `phash` is the standard 64-bit DCT perceptual hash (grayscale 32x32, 2-D DCT, the 8x8 lowest
  frequencies against their median); `phash_distance` counts differing bits. A resized,
  recompressed or slightly brightened copy of a photo lies within NEAR_DUPLICATE_DISTANCE bits;
  unrelated photos differ in about 32 of the 64.
- `make_thumbnail` renders a small RGB JPEG (transparent parts on white).
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
from PIL import ExifTags, Image, ImageOps

from composer.config import MAX_IMAGE_BYTES
from composer.types import InputError

log = logging.getLogger(__name__)

NEAR_DUPLICATE_DISTANCE = 8  # bits of 64; copies measure 0-6, unrelated photos 18 and more
PHASH_SIZE = 32  # the grayscale image the DCT is taken of
PHASH_LOW = 8  # the 8x8 lowest frequencies make the 64 bits
# A 32x32 grayscale with a standard deviation below this (of 255) is flat: a solid colour or
# nearly so. Its hash would be noise, and every flat picture would be everyone's duplicate.
FLAT_STD = 2.0
JPEG_QUALITY = 95  # re-encoding a turned photo
THUMBNAIL_QUALITY = 85
ORIENTATION_TAG = ExifTags.Base.Orientation
GPS_IFD_TAG = ExifTags.IFD.GPSInfo
WHITE = (255, 255, 255)
TURNED_ORIENTATIONS = range(2, 9)  # EXIF orientations that need a flip or turn


@dataclass(frozen=True)
class PreparedImage:
    """What is stored for a given image: the file's bytes, its size and its perceptual hash.

    `phash` is 16 hex digits, or "" for a flat image that has no meaningful hash.
    """

    data: bytes
    width: int
    height: int
    phash: str


def prepare_image(data: bytes, image_format: str, name: str = "") -> PreparedImage:
    """The bytes to store for a validated image, with their size and perceptual hash.

    An EXIF orientation other than 1 is applied (the pixels are turned, the file re-encoded in
    the same format without EXIF, the ICC profile kept), so width and height are the upright
    size. A JPEG with a GPS position loses its EXIF and XMP segments (a lossless cut: the
    compressed pixels are untouched); other formats with GPS are re-encoded without EXIF.
    Anything else is kept byte for byte. Multi-frame files (animated GIF, PNG and WebP,
    multi-page TIFF) are kept as given: only their first frame would survive re-encoding.
    """
    with Image.open(io.BytesIO(data), formats=[image_format]) as image:
        image.load()
        if getattr(image, "n_frames", 1) > 1:
            return PreparedImage(data, image.width, image.height, phash(image))
        orientation, located = _metadata(image)
        if orientation in TURNED_ORIENTATIONS:
            upright = ImageOps.exif_transpose(image)
            stored = _encode(upright, image_format, image.info)
            _check_size(stored, name)
            return PreparedImage(stored, upright.width, upright.height, phash(upright))
        if located:
            stored = _without_location(data, image, image_format)
            _check_size(stored, name)
            return PreparedImage(stored, image.width, image.height, phash(image))
        return PreparedImage(data, image.width, image.height, phash(image))


def _metadata(image: Image.Image) -> tuple[int, bool]:
    """(EXIF orientation, whether a GPS position is present); EXIF that cannot be read
    counts as upright and as holding a position, so it is removed rather than kept."""
    try:
        exif = image.getexif()
        return int(exif.get(ORIENTATION_TAG, 1) or 1), has_location(image, exif)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError,
            struct.error) as error:
        log.warning("unreadable EXIF (%s): storing the image without it", error)
        return 1, True


def _without_location(data: bytes, image: Image.Image, image_format: str) -> bytes:
    """The image's file without EXIF: a lossless cut for JPEG (checked), else re-encoded."""
    if image_format == "JPEG":
        try:
            stripped = strip_jpeg_metadata(data)
            with Image.open(io.BytesIO(stripped), formats=["JPEG"]) as check:
                check.load()
                if check.size == image.size and not has_location(check):
                    return stripped
        except (InputError, OSError, SyntaxError, ValueError, EOFError) as error:
            log.warning("could not cut the metadata out of a JPEG (%s): re-encoding it", error)
    return _encode(image, image_format, image.info)


def has_location(image: Image.Image, exif: Image.Exif | None = None) -> bool:
    """True when an image's metadata holds a GPS position (EXIF GPS tags or XMP exif:GPS*)."""
    exif = image.getexif() if exif is None else exif
    if GPS_IFD_TAG in exif and exif.get_ifd(GPS_IFD_TAG):
        return True
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "replace")
    return b"GPSLatitude" in xmp or b"GPSLongitude" in xmp


def _encode(image: Image.Image, image_format: str, info: dict) -> bytes:
    """`image` saved in `image_format` without EXIF, keeping its ICC profile (and PNG alpha)."""
    options: dict[str, object] = {}
    if info.get("icc_profile"):
        options["icc_profile"] = info["icc_profile"]
    if image_format in ("JPEG", "WEBP"):
        options["quality"] = JPEG_QUALITY
    if image_format in ("PNG", "GIF") and info.get("transparency") is not None:
        options["transparency"] = info["transparency"]
    if image_format == "TIFF":
        options["compression"] = "tiff_lzw"
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _check_size(stored: bytes, name: str) -> None:
    if len(stored) > MAX_IMAGE_BYTES:
        raise InputError(f"{name or 'the image'} is {len(stored):,} bytes once turned upright "
                         f"or cleared of its GPS position, over the limit of "
                         f"{MAX_IMAGE_BYTES:,} bytes: resize or recompress it")


def strip_jpeg_metadata(data: bytes) -> bytes:
    """A JPEG without its APP1 segments (EXIF, XMP), MPF index and anything after its end.

    The segments before the image data are walked by their length fields and copied except
    APP1 and the APP2 "MPF" index; the compressed scans are copied unchanged up to the EOI
    marker, so no quality is lost. Data after EOI (appended preview or gain-map images, which
    carry their own EXIF) is dropped.
    """
    if data[:2] != b"\xff\xd8":
        raise InputError("not a JPEG (no SOI marker): cannot strip its metadata")
    kept = [data[:2]]
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise InputError(f"JPEG marker expected at byte {position}: the file is corrupt")
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before a marker
            position += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: the rest is image data
            break
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        end = position + 2 + length
        segment = data[position:end]
        if not (marker == 0xE1 or (marker == 0xE2 and segment[4:8] == b"MPF\x00")):
            kept.append(segment)
        position = end
    end_of_image = data.find(b"\xff\xd9", position)
    kept.append(data[position:] if end_of_image < 0 else data[position:end_of_image + 2])
    return b"".join(kept)


def oriented(image: Image.Image) -> Image.Image:
    """The image turned upright per its EXIF orientation (a copy; as is when upright)."""
    if image.getexif().get(ORIENTATION_TAG, 1) in TURNED_ORIENTATIONS:
        return ImageOps.exif_transpose(image)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy: transparent parts composited on white, 16-bit and float images scaled."""
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        pixels = np.asarray(image.convert("I") if image.mode != "F" else image,
                            dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode in ("P", "L", "RGB") and image.info.get("transparency") is not None)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def phash(image: Image.Image) -> str:
    """The 64-bit DCT perceptual hash of an image as 16 hex digits; "" for a flat image.

    Grayscale (transparent parts on white), resized to 32x32, 2-D DCT-II; the 8x8 lowest
    frequencies are compared with the median of their 63 AC terms, one bit each (the DC
    term, the mean brightness, is bit 63 and always 0), row by row from the most significant
    bit. Coefficients are rounded first so that ties do not depend on float noise.
    """
    gray = to_rgb(image).convert("L")
    small = gray.resize((PHASH_SIZE, PHASH_SIZE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.asarray(small, dtype=np.float64)
    if pixels.std() < FLAT_STD:
        return ""
    low = scipy.fft.dctn(pixels, type=2, norm="ortho")[:PHASH_LOW, :PHASH_LOW]
    terms = np.round(low, 3).reshape(-1)
    bits = terms > np.median(terms[1:])
    bits[0] = False
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def phash_file(path: str | Path) -> str:
    """The perceptual hash of an image file as it is shown (EXIF orientation applied)."""
    with Image.open(path) as image:
        image.load()
        return phash(oriented(image))


def phash_distance(a: str, b: str) -> int:
    """The Hamming distance of two 16-hex-digit hashes: how many of the 64 bits differ."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def phash_array(hashes: list[str]) -> np.ndarray:
    """16-hex-digit hashes as a uint64 array (for vectorised distances)."""
    return np.array([int(value, 16) for value in hashes], dtype=np.uint64)


def distances(hashes: np.ndarray, value: str) -> np.ndarray:
    """Hamming distances from one hash to each of a uint64 array of hashes."""
    return np.bitwise_count(hashes ^ np.uint64(int(value, 16))).astype(np.int64)


def make_thumbnail(path: str | Path, size: int) -> bytes:
    """A JPEG of the image at `path` whose longer side is at most `size` pixels.

    RGB (transparent parts on white), upright per EXIF, never enlarged; the first frame of
    an animation. JPEGs are decoded at a reduced scale first (fast for large photos).
    """
    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        image.load()
        picture = to_rgb(oriented(image))
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()
