"""storage/imaging.py: perceptual hash, EXIF orientation and GPS removal, thumbnails.

The photos are scikit-image's sample photos (installed with it); the variants are made in the
tests with Pillow, so every number here is deterministic.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageDraw, ImageEnhance

from storage.imaging import (
    NEAR_DUPLICATE_DISTANCE,
    distances,
    has_location,
    make_thumbnail,
    phash,
    phash_array,
    phash_distance,
    prepare_image,
    strip_jpeg_metadata,
)

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "camera.png", "rocket.jpg",
          "retina.jpg", "brick.png", "horse.png")


def photo(name: str) -> Image.Image:
    """One of scikit-image's sample photos, loaded."""
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    with Image.open(path) as image:
        image.load()
        return image.copy()


def encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def arrow(size: tuple[int, int] = (60, 40)) -> Image.Image:
    """An asymmetric picture: red left half, blue right half, a white dot near the top-left."""
    image = Image.new("RGB", size, (220, 30, 30))
    draw = ImageDraw.Draw(image)
    draw.rectangle((size[0] // 2, 0, size[0], size[1]), fill=(30, 30, 220))
    draw.rectangle((2, 2, 8, 8), fill=(255, 255, 255))
    return image


def exif_with(orientation: int | None = None, gps: bool = False) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        location = exif.get_ifd(ExifTags.IFD.GPSInfo)
        location[ExifTags.GPS.GPSLatitudeRef] = "N"
        location[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
        location[ExifTags.GPS.GPSLongitudeRef] = "E"
        location[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 0.0)
    return exif.tobytes()


# -- perceptual hash -----------------------------------------------------------------------


def test_phash_is_64_bits_in_hex_and_deterministic() -> None:
    value = phash(photo("astronaut.png"))
    assert len(value) == 16 and int(value, 16) >= 0
    assert phash(photo("astronaut.png")) == value
    assert phash(photo("astronaut.png").convert("L")) == value  # the hash is of the grayscale


@pytest.mark.parametrize("name", ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"])
def test_copies_of_a_photo_are_near_duplicates(name: str) -> None:
    original = photo(name).convert("RGB")
    half = original.resize((original.width // 2, original.height // 2))
    recompressed = decoded(encoded(original, "JPEG", quality=70))
    brighter = ImageEnhance.Brightness(original).enhance(1.1)
    reference = phash(original)
    for copy in (half, recompressed, brighter):
        assert phash_distance(reference, phash(copy)) <= NEAR_DUPLICATE_DISTANCE


def test_different_photos_are_not_near_duplicates() -> None:
    hashes = {name: phash(photo(name)) for name in PHOTOS}
    for first, second in itertools.combinations(PHOTOS, 2):
        distance = phash_distance(hashes[first], hashes[second])
        assert distance > 2 * NEAR_DUPLICATE_DISTANCE, (first, second, distance)


def test_drawn_pictures_and_their_copies() -> None:
    rng = np.random.default_rng(7)
    scene = Image.new("RGB", (320, 240), (120, 170, 230))
    draw = ImageDraw.Draw(scene)
    draw.rectangle((0, 160, 320, 240), fill=(40, 80, 160))
    draw.ellipse((200, 30, 260, 90), fill=(250, 220, 60))
    draw.polygon([(0, 240), (0, 120), (140, 170), (180, 240)], fill=(90, 80, 70))
    noise = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    reference = phash(scene)
    assert phash_distance(reference, phash(scene.resize((160, 120)))) <= NEAR_DUPLICATE_DISTANCE
    assert phash_distance(reference, phash(scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT))) \
        > NEAR_DUPLICATE_DISTANCE  # a mirrored picture is a different picture
    assert phash_distance(reference, phash(noise)) > NEAR_DUPLICATE_DISTANCE


def test_flat_images_have_no_hash() -> None:
    for color in ((0, 0, 0), (255, 255, 255), (200, 40, 40)):
        assert phash(Image.new("RGB", (64, 48), color)) == ""
    assert phash(decoded(encoded(Image.new("RGB", (33, 17), (9, 99, 199)), "JPEG"))) == ""
    assert phash(Image.new("RGBA", (20, 20), (0, 0, 0, 0))) == ""  # transparent = white
    assert phash(Image.new("I;16", (20, 20), 4000)) == ""


def test_transparency_is_hashed_as_white() -> None:
    hole = arrow((64, 64)).convert("RGBA")
    ImageDraw.Draw(hole).rectangle((32, 0, 64, 64), fill=(0, 0, 0, 0))  # blue half transparent
    on_white = arrow((64, 64))
    ImageDraw.Draw(on_white).rectangle((32, 0, 64, 64), fill=(255, 255, 255))
    assert phash(hole) == phash(on_white)


def test_distance_and_vectorised_distances() -> None:
    assert phash_distance("0" * 16, "f" * 16) == 64
    assert phash_distance("00000000000000ff", "000000000000000f") == 4
    values = ["0" * 16, "f" * 16, "00000000000000ff"]
    array = phash_array(values)
    assert array.dtype == np.uint64
    assert distances(array, "000000000000000f").tolist() == [4, 60, 4]


# -- what is stored --------------------------------------------------------------------------


def test_an_upright_image_is_kept_byte_for_byte() -> None:
    plain = encoded(arrow(), "JPEG", quality=90, exif=exif_with(orientation=1))
    prepared = prepare_image(plain, "JPEG")
    assert prepared.data == plain and (prepared.width, prepared.height) == (60, 40)
    assert prepared.phash == phash(decoded(plain))


def test_orientation_6_is_turned_upright() -> None:
    turned = encoded(arrow(), "JPEG", quality=95, exif=exif_with(orientation=6))
    prepared = prepare_image(turned, "JPEG")
    assert (prepared.width, prepared.height) == (40, 60)
    stored = decoded(prepared.data)
    assert stored.format == "JPEG" and stored.size == (40, 60)
    assert ExifTags.Base.Orientation not in stored.getexif() and "exif" not in stored.info
    # turned a quarter clockwise: the red left half is now on top, the dot top-right
    assert _near(stored.getpixel((20, 10)), (220, 30, 30))
    assert _near(stored.getpixel((20, 50)), (30, 30, 220))
    assert _near(stored.getpixel((34, 5)), (255, 255, 255))


@pytest.mark.parametrize("orientation,size", [(2, (60, 40)), (3, (60, 40)), (4, (60, 40)),
                                              (5, (40, 60)), (7, (40, 60)), (8, (40, 60))])
def test_every_turned_orientation_is_applied_losslessly_to_png(orientation: int,
                                                               size: tuple[int, int]) -> None:
    data = encoded(arrow(), "PNG", exif=exif_with(orientation=orientation))
    prepared = prepare_image(data, "PNG")
    stored = decoded(prepared.data)
    assert stored.format == "PNG" and stored.size == size == (prepared.width, prepared.height)
    assert not stored.getexif()
    expected = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}[orientation]
    assert np.array_equal(np.asarray(stored), np.asarray(arrow().transpose(expected)))


def test_turning_keeps_the_icc_profile() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    turned = encoded(arrow(), "JPEG", exif=exif_with(orientation=8), icc_profile=profile)
    stored = decoded(prepare_image(turned, "JPEG").data)
    assert stored.info.get("icc_profile") == profile and stored.size == (40, 60)


def test_a_jpeg_with_gps_loses_its_metadata_but_not_a_pixel() -> None:
    data = encoded(photo("coffee.png").convert("RGB"), "JPEG", quality=80,
                   exif=exif_with(gps=True))
    assert has_location(decoded(data))
    prepared = prepare_image(data, "JPEG")
    stored = decoded(prepared.data)
    assert prepared.data != data and b"Exif\x00\x00" not in prepared.data
    assert not has_location(stored) and not stored.getexif()
    assert np.array_equal(np.asarray(stored), np.asarray(decoded(data)))  # a lossless cut
    assert (prepared.width, prepared.height) == stored.size


def test_gps_in_xmp_is_removed_too() -> None:
    xmp = b'<x:xmpmeta><rdf:Description exif:GPSLatitude="52,31.2N"/></x:xmpmeta>'
    data = encoded(arrow(), "JPEG", xmp=xmp)
    assert has_location(decoded(data))
    stored = prepare_image(data, "JPEG").data
    assert b"GPSLatitude" not in stored and not has_location(decoded(stored))
    turned = encoded(arrow(), "JPEG", xmp=xmp, exif=exif_with(orientation=6, gps=True))
    stored = prepare_image(turned, "JPEG").data
    assert b"GPSLatitude" not in stored and not has_location(decoded(stored))
    assert decoded(stored).size == (40, 60)


def test_exif_without_gps_is_kept() -> None:
    data = encoded(arrow(), "JPEG", exif=exif_with())
    assert prepare_image(data, "JPEG").data == data


def test_a_png_with_gps_is_re_encoded_without_exif() -> None:
    data = encoded(arrow(), "PNG", exif=exif_with(gps=True))
    stored = decoded(prepare_image(data, "PNG").data)
    assert stored.format == "PNG" and not stored.getexif()
    assert np.array_equal(np.asarray(stored), np.asarray(arrow()))


def test_strip_drops_data_appended_after_the_image() -> None:
    data = encoded(arrow(), "JPEG", exif=exif_with(gps=True))
    appended = data + encoded(arrow((8, 8)), "JPEG", exif=exif_with(gps=True))
    stripped = strip_jpeg_metadata(appended)
    assert stripped.endswith(b"\xff\xd9") and stripped.count(b"\xff\xd8") == 1
    assert np.array_equal(np.asarray(decoded(stripped)), np.asarray(decoded(data)))


# -- thumbnails ------------------------------------------------------------------------------


def test_thumbnail_of_a_large_photo(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(encoded(photo("astronaut.png").resize((1024, 768)), "JPEG"))
    small = decoded(make_thumbnail(path, 128))
    assert small.format == "JPEG" and small.mode == "RGB" and small.size == (128, 96)


def _near(pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=False))
