"""ImageStore and validate_image on SQLite and PostgreSQL: validation, files, EXIF, near-duplicates,
thumbnails, embeddings, filters."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import event, select, update

import storage.image_files as image_files_module
from composer.config import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from composer.types import ImageBlock, InputError, NotFoundError
from storage.db import Database
from storage.documents import DocumentRepository
from storage.image_files import THUMBNAIL_SIZES, validate_image
from storage.images import ImageStore
from storage.imaging import NEAR_DUPLICATE_DISTANCE, has_location
from storage.near_duplicates import NearDuplicateError
from storage.tables import ImageEmbeddingRow, ImageRow, utcnow
from tests.support_storage import *  # noqa: F403
from tests.support_storage import image_bytes, png_bomb
from tests.test_imaging import arrow, encoded, exif_with, photo


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_validate_allowed_formats(fmt: str) -> None:
    assert validate_image(image_bytes(fmt, (20, 10)), f"x.{fmt}") == (fmt, 20, 10)


def test_validate_rejects_non_image() -> None:
    with pytest.raises(InputError, match="notes.txt is not an image in an allowed format"):
        validate_image(b"hello, this is text and not a picture", "notes.txt")
    with pytest.raises(InputError, match="empty.png is empty"):
        validate_image(b"", "empty.png")


def test_validate_rejects_truncated() -> None:
    for fmt in ("PNG", "JPEG"):
        data = image_bytes(fmt, (64, 64))
        with pytest.raises(InputError, match=f"cut.{fmt} is truncated or corrupt"):
            validate_image(data[: len(data) * 2 // 3], f"cut.{fmt}")


def test_validate_rejects_corrupt_png_checksum() -> None:
    data = bytearray(image_bytes("PNG", (32, 32)))
    data[data.index(b"IDAT") + 6] ^= 0xFF  # inside the IDAT data: its CRC no longer matches
    with pytest.raises(InputError, match="bad.png is truncated or corrupt"):
        validate_image(bytes(data), "bad.png")


def test_validate_rejects_decompression_bombs() -> None:
    huge = png_bomb(100_000, 100_000)  # 10 gigapixels: Pillow's own bomb check fires
    assert len(huge) < 200
    bomb_message = f"bomb.png looks like a decompression bomb.*limit of {MAX_IMAGE_PIXELS:,}"
    with pytest.raises(InputError, match=bomb_message):
        validate_image(huge, "bomb.png")
    large = png_bomb(8_000, 8_000)  # 64 megapixels: above our limit, below Pillow's
    with pytest.raises(InputError, match=f"8000x8000 = 64,000,000 pixels.*{MAX_IMAGE_PIXELS:,}"):
        validate_image(large, "large.png")


def test_validate_rejects_oversize_bytes() -> None:
    data = image_bytes() + b"\x00" * MAX_IMAGE_BYTES
    with pytest.raises(InputError, match=f"big.png is .* bytes, over the limit of "
                                         f"{MAX_IMAGE_BYTES:,} bytes"):
        validate_image(data, "big.png")


def test_validate_rejects_other_formats() -> None:
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PPM")
    with pytest.raises(InputError, match=r"picture.ppm is not an image in an allowed format"):
        validate_image(buffer.getvalue(), "picture.ppm")


def test_add_stores_file_and_record(store: ImageStore) -> None:
    data = image_bytes("JPEG", (30, 20))
    image, created = store.add(data, name="red.jpg", caption="a red rectangle",
                               source="test", license="CC0", attribution="nobody")
    digest = hashlib.sha256(data).hexdigest()
    assert created and image.id == digest
    assert image.path == f"{digest[:2]}/{digest}.jpg"
    assert (image.format, image.width, image.height, image.bytes) == ("JPEG", 30, 20, len(data))
    assert store.path(image.id) == store.images_dir / image.path
    assert store.path(image.id).read_bytes() == data
    assert not [p for p in store.path(image.id).parent.iterdir() if p.name.startswith(".tmp")]
    assert store.get(image.id) == image and store.count() == 1


def test_add_rejects_bad_images_and_writes_nothing(store: ImageStore) -> None:
    with pytest.raises(InputError, match="junk.bin is not an image"):
        store.add(b"\x00" * 100, name="junk.bin")
    with pytest.raises(InputError, match="caption of 2001 characters"):
        store.add(image_bytes(), caption="x" * 2001)
    assert store.count() == 0
    assert not store.images_dir.exists() or not any(store.images_dir.rglob("*.*"))


def test_duplicate_add(store: ImageStore) -> None:
    data = image_bytes("PNG")
    first, created = store.add(data)
    assert created and first.caption == ""
    again, created = store.add(data, caption="filled later")
    assert not created and again.id == first.id and again.caption == "filled later"
    kept, created = store.add(data, caption="does not overwrite")
    assert not created and kept.caption == "filled later"
    store.path(first.id).unlink()  # a lost file is restored on the next add
    store.add(data)
    assert store.path(first.id).read_bytes() == data
    assert store.count() == 1


def test_add_file(store: ImageStore, tmp_path: Path) -> None:
    path = tmp_path / "blue.png"
    path.write_bytes(image_bytes("PNG", color=(0, 0, 255)))
    image, created = store.add_file(path, caption="blue")
    assert created and image.caption == "blue"
    with pytest.raises(InputError, match="missing.png"):
        store.add_file(tmp_path / "missing.png")


def test_list_update_delete(store: ImageStore, repo: DocumentRepository) -> None:
    images = [store.add(image_bytes(color=(i, i, i)), caption=f"grey {i}")[0]
              for i in range(3)]
    assert [image.id for image in store.list()] == [image.id for image in images]
    assert len(store.list(limit=2)) == 2
    updated = store.update(images[0].id, caption="dark", license="CC BY", attribution="A")
    assert (updated.caption, updated.license, updated.attribution) == ("dark", "CC BY", "A")
    document = repo.create("t", "i", "en", {})
    (block,) = repo.append_blocks(document.id, [ImageBlock("grey", image_id=images[1].id)])
    file = store.path(images[1].id)
    store.delete(images[1].id)
    assert not file.exists() and store.count() == 2
    assert repo.get(document.id).blocks[0].image_id is None  # ON DELETE SET NULL
    for call in (lambda: store.get(images[1].id), lambda: store.delete(images[1].id),
                 lambda: store.update("0" * 64, caption="x")):
        with pytest.raises(NotFoundError):
            call()


def test_embeddings_round_trip(store: ImageStore) -> None:
    ids = [store.add(image_bytes(color=(i, 0, 0)), caption=f"c{i}")[0].id for i in range(3)]
    empty_ids, empty = store.embeddings("mini")
    assert empty_ids == [] and empty.shape == (0, 0) and empty.dtype == np.float32
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 8)).astype(np.float32)
    store.put_embeddings("mini", [(ids[0], vectors[0]), (ids[2], vectors[2].astype(np.float64))])
    got_ids, matrix = store.embeddings("mini")
    order = sorted([(ids[0], vectors[0]), (ids[2], vectors[2])])
    assert got_ids == [item[0] for item in order]
    assert matrix.dtype == np.float32 and matrix.shape == (2, 8)
    np.testing.assert_array_equal(matrix, np.stack([item[1] for item in order]))
    assert [image.id for image in store.missing_embeddings("mini")] == [ids[1]]
    assert len(store.missing_embeddings("other-model")) == 3
    store.put_embeddings("mini", [(ids[0], vectors[1])])  # replaces
    _, matrix = store.embeddings("mini")
    np.testing.assert_array_equal(matrix[got_ids.index(ids[0])], vectors[1])
    with pytest.raises(InputError, match="8-dim vectors stored, got 4"):
        store.put_embeddings("mini", [(ids[1], np.ones(4))])
    with pytest.raises(InputError, match="same, non-zero length"):
        store.put_embeddings("new", [(ids[1], np.ones(4)), (ids[0], np.ones(5))])
    with pytest.raises(NotFoundError):
        store.put_embeddings("mini", [("0" * 64, np.ones(8))])


def test_caption_change_drops_stale_embeddings(store: ImageStore) -> None:
    image, _ = store.add(image_bytes(), caption="old")
    store.put_embeddings("mini", [(image.id, np.ones(4))])
    store.update(image.id, license="CC0")
    assert store.missing_embeddings("mini") == []
    store.update(image.id, caption="new")
    assert [i.id for i in store.missing_embeddings("mini")] == [image.id]
    store.put_embeddings("mini", [(image.id, np.ones(4))])
    store.delete(image.id)
    assert store.embeddings("mini")[0] == []


def test_concurrent_duplicate_adds(store: ImageStore) -> None:
    data = image_bytes("PNG", (40, 40))
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def add() -> None:
        barrier.wait()
        try:
            results.append(store.add(data, caption="same"))
        except Exception as error:  # collected for the assertion
            results.append(error)

    threads = [threading.Thread(target=add) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(isinstance(result, tuple) for result in results), results
    assert sorted(created for _, created in results) == [False, False, True]
    assert {image.id for image, _ in results} == {hashlib.sha256(data).hexdigest()}
    assert store.count() == 1


# -- EXIF orientation and location -----------------------------------------------------------


def test_exif_orientation_is_applied_to_the_stored_file(store: ImageStore) -> None:
    given = encoded(arrow(), "JPEG", quality=95, exif=exif_with(orientation=6))
    image, created = store.add(given, name="sideways.jpg")
    assert created and image.id == hashlib.sha256(given).hexdigest()
    assert (image.width, image.height) == (40, 60) and image.format == "JPEG"
    stored = store.path(image.id).read_bytes()
    assert stored != given and image.bytes == len(stored)
    with Image.open(store.path(image.id)) as upright:
        assert upright.size == (40, 60) and not upright.getexif()
        assert upright.getpixel((20, 10))[0] > 150  # the red half is on top now
    again, created = store.add(given, name="sideways again.jpg")
    assert not created and again == image and store.count() == 1
    store.path(image.id).unlink()  # a lost file comes back turned, as before
    store.add(given)
    assert store.path(image.id).read_bytes() == stored


def test_gps_position_is_not_stored(store: ImageStore) -> None:
    given = encoded(photo("coffee.png").convert("RGB"), "JPEG", exif=exif_with(gps=True))
    image, _ = store.add(given, name="holiday.jpg")
    assert image.id == hashlib.sha256(given).hexdigest()
    with Image.open(store.path(image.id)) as stored:
        assert not stored.getexif() and not has_location(stored)
    plain = encoded(photo("chelsea.png").convert("RGB"), "JPEG", exif=exif_with())
    kept, _ = store.add(plain)
    assert store.path(kept.id).read_bytes() == plain


# -- near-duplicates ---------------------------------------------------------------------------


def _photo_bytes(name: str, scale: float = 1.0, fmt: str = "PNG", **options: Any) -> bytes:
    image = photo(name).convert("RGB")
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    return encoded(image, fmt, **options)


def test_near_duplicates_are_refused_with_a_helpful_message(store: ImageStore) -> None:
    original, _ = store.add(_photo_bytes("astronaut.png"), name="astronaut.png",
                            caption="An astronaut")
    assert len(original.phash) == 16
    copies = {"half.png": _photo_bytes("astronaut.png", 0.5),
              "recompressed.jpg": _photo_bytes("astronaut.png", fmt="JPEG", quality=70)}
    for name, data in copies.items():
        with pytest.raises(NearDuplicateError) as caught:
            store.add(data, name=name)
        error = caught.value
        assert isinstance(error, InputError)
        assert error.existing == original and 0 <= error.distance <= NEAR_DUPLICATE_DISTANCE
        message = str(error)
        assert name in message and original.id[:12] in message and "An astronaut" in message
        assert "allow_near_duplicate=True" in message
    assert store.count() == 1
    other, created = store.add(_photo_bytes("coffee.png"), name="coffee.png")
    assert created
    kept, created = store.add(copies["half.png"], allow_near_duplicate=True)
    assert created and store.count() == 3
    near = store.near_duplicates(original.id)
    assert [(image.id, distance <= NEAR_DUPLICATE_DISTANCE) for image, distance in near] == \
        [(kept.id, True)]
    assert [image.id for image, _ in store.near_duplicates(kept.id)] == [original.id]
    assert store.near_duplicates(other.id) == []


def test_flat_images_are_never_near_duplicates(store: ImageStore) -> None:
    for shade in range(3):
        image, created = store.add(image_bytes(color=(shade, shade, shade)))
        assert created and image.phash == ""
        assert store.near_duplicates(image.id) == []


def test_the_hash_index_sees_other_stores_and_is_not_reloaded_per_add(
        db: Database, tmp_path: Path) -> None:
    loads: list[str] = []

    def count_loads(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("SELECT images.id, images.phash"):
            loads.append(statement)

    event.listen(db.engine, "before_cursor_execute", count_loads)
    try:
        first = ImageStore(db, tmp_path / "images")
        second = ImageStore(db, tmp_path / "images")
        astronaut, _ = first.add(_photo_bytes("astronaut.png"))
        first.add(_photo_bytes("camera.png"))
        first.add(_photo_bytes("horse.png"))
        assert len(loads) == 1  # loaded once, then kept up to date in place
        coffee, _ = second.add(_photo_bytes("coffee.png"))
        with pytest.raises(NearDuplicateError) as caught:
            first.add(_photo_bytes("coffee.png", 0.5))  # first must see second's image
        assert caught.value.existing.id == coffee.id
        second.delete(coffee.id)
        assert first.add(_photo_bytes("coffee.png", 0.5))[1]  # and its deletion
        assert len(loads) == 4
        first.delete(astronaut.id)
        assert first.add(_photo_bytes("astronaut.png", 0.5))[1]
        assert len(loads) == 4  # its own deletion needs no reload either
    finally:
        event.remove(db.engine, "before_cursor_execute", count_loads)


def test_hashes_of_older_images_are_backfilled_lazily(store: ImageStore, db: Database) -> None:
    chelsea, _ = store.add(_photo_bytes("chelsea.png"))
    flat, _ = store.add(image_bytes())
    turned = encoded(photo("camera.png").convert("RGB"), "JPEG", exif=exif_with(orientation=6))
    camera, _ = store.add(turned)
    with db.session() as session:  # as if stored before migration 0004, file as given
        session.execute(update(ImageRow).values(phash=None))
    store.path(camera.id).write_bytes(turned)
    fresh = ImageStore(db, store.images_dir)
    with pytest.raises(NearDuplicateError) as caught:
        fresh.add(_photo_bytes("chelsea.png", 0.5))
    assert caught.value.existing.id == chelsea.id
    assert (fresh.get(chelsea.id).phash, fresh.get(flat.id).phash) == (chelsea.phash, "")
    assert fresh.get(camera.id).phash == camera.phash  # hashed upright, like a new add
    assert fresh.backfill_phashes() == 0
    with db.session() as session:
        session.execute(update(ImageRow).where(ImageRow.id == chelsea.id).values(phash=None))
    store.path(chelsea.id).unlink()
    assert fresh.backfill_phashes() == 1  # an unreadable file gets "" and is not retried
    assert fresh.get(chelsea.id).phash == "" and fresh.backfill_phashes() == 0


# -- thumbnails --------------------------------------------------------------------------------


def test_thumbnails(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    wide, _ = store.add(_photo_bytes("astronaut.png"))  # 512 x 512
    tall, _ = store.add(encoded(photo("coffee.png").convert("RGB").resize((200, 300)), "PNG"))
    for size in THUMBNAIL_SIZES:
        path = store.thumbnail(wide.id, size)
        assert path == store.thumbs_dir / wide.id[:2] / f"{wide.id}-{size}.jpg"
        with Image.open(path) as thumb:
            assert thumb.format == "JPEG" and thumb.mode == "RGB"
            assert thumb.size == (size, size)
    with Image.open(store.thumbnail(tall.id, 128)) as thumb:
        assert thumb.size == (85, 128)
    with Image.open(store.thumbnail(tall.id, 512)) as thumb:
        assert thumb.size == (200, 300)  # never enlarged
    made: list[int] = []
    monkeypatch.setattr(image_files_module, "make_thumbnail",
                        lambda path, size: made.append(size) or b"")
    assert store.thumbnail(wide.id) == store.thumbs_dir / wide.id[:2] / f"{wide.id}-256.jpg"
    assert made == []  # made once, then served from the cache
    monkeypatch.undo()
    assert not [p for p in store.thumbs_dir.rglob(".tmp*")]
    store.delete(wide.id)
    assert not list(store.thumbs_dir.rglob(f"{wide.id}-*"))
    assert len(list(store.thumbs_dir.rglob(f"{tall.id}-*"))) == 2


def test_thumbnail_of_a_transparent_png_is_on_white(db: Database, tmp_path: Path) -> None:
    store = ImageStore(db, tmp_path / "images", thumbs_dir=tmp_path / "thumbs")
    picture = Image.new("RGBA", (300, 150), (0, 0, 0, 0))
    ImageDraw.Draw(picture).rectangle((0, 0, 149, 149), fill=(0, 0, 255, 255))
    image, _ = store.add(encoded(picture, "PNG"))
    path = store.thumbnail(image.id, 128)
    assert path.parent.parent == tmp_path / "thumbs"
    with Image.open(path) as thumb:
        assert thumb.size == (128, 64) and thumb.mode == "RGB"
        assert min(thumb.getpixel((120, 32))) > 240  # the transparent half is white
        blue = thumb.getpixel((20, 32))
        assert blue[2] > 200 and blue[0] < 40


def test_thumbnail_errors(store: ImageStore) -> None:
    image, _ = store.add(image_bytes())
    with pytest.raises(InputError, match=r"thumbnail size 100 is not one of \[128, 256, 512\]"):
        store.thumbnail(image.id, 100)
    for unknown in ("0" * 64, "../../etc/passwd"):
        with pytest.raises(NotFoundError):
            store.thumbnail(unknown)
    store.path(image.id).unlink()
    with pytest.raises(NotFoundError, match=f"file of image {image.id[:12]} .* add the picture"):
        store.thumbnail(image.id)


# -- embeddings: kinds and times ---------------------------------------------------------------


def _three_images(store: ImageStore) -> list[str]:
    return [store.add(image_bytes(color=(i, 0, 0)), caption=f"c{i}")[0].id for i in range(3)]


def test_embedding_kind_time_and_state(store: ImageStore, db: Database) -> None:
    ids = _three_images(store)
    assert store.embedding_state("mini") == (0, None)
    assert store.embeddings_since("mini", None)[0] == []
    before = utcnow()
    store.put_embeddings("mini", [(ids[0], np.ones(4)), (ids[1], np.ones(4) * 2)])
    count, newest = store.embedding_state("mini")
    assert count == 2 and newest is not None and newest >= before
    assert newest.tzinfo is not None
    got, matrix, seen = store.embeddings_since("mini", None)
    assert got == sorted(ids[:2]) and matrix.shape == (2, 4) and seen == newest
    assert store.embeddings_since("mini", seen)[0] == []
    assert store.embeddings_since("mini", seen)[2] == seen  # nothing new: pass it again
    store.put_embeddings("mini", [(ids[2], np.ones(4) * 3), (ids[0], np.ones(4) * 4)])
    got, matrix, later = store.embeddings_since("mini", seen)
    assert got == sorted([ids[0], ids[2]]) and later is not None and later > seen
    assert store.embedding_state("mini") == (3, later)
    assert store.embedding_ids("mini") == sorted(ids) and store.embedding_ids("x") == []
    with db.session() as session:
        kinds = dict(session.execute(select(ImageEmbeddingRow.image_id,
                                            ImageEmbeddingRow.kind)).tuples().all())
        # vectors stored before migration 0004 have no time
        session.execute(update(ImageEmbeddingRow).where(ImageEmbeddingRow.image_id == ids[1])
                        .values(created_at=None))
    assert set(kinds.values()) == {"caption"}
    assert ids[1] in store.embeddings_since("mini", None)[0]
    assert ids[1] not in store.embeddings_since("mini", datetime(2000, 1, 1, tzinfo=UTC))[0]
    with pytest.raises(InputError, match="no timezone"):
        store.embeddings_since("mini", datetime(2000, 1, 1))
    with pytest.raises(InputError, match="embedding kind 'pixels' is not one of"):
        store.put_embeddings("mini", [(ids[0], np.ones(4))], kind="pixels")


def test_embeddings_of_some_ids(store: ImageStore) -> None:
    ids = _three_images(store)
    vectors = {image_id: np.full(3, number, dtype=np.float32)
               for number, image_id in enumerate(ids)}
    store.put_embeddings("mini", list(vectors.items()))
    unknown = [f"{number:064x}" for number in range(1200)]  # more than one IN list
    got, matrix = store.embeddings("mini", ids=[ids[2], ids[0], ids[2]] + unknown)
    assert got == sorted([ids[0], ids[2]])
    np.testing.assert_array_equal(matrix, np.stack([vectors[image_id] for image_id in got]))
    got, matrix = store.embeddings("mini", ids=[])
    assert got == [] and matrix.shape == (0, 0)


def test_caption_change_keeps_pixel_vectors(store: ImageStore, db: Database) -> None:
    image, _ = store.add(image_bytes(), caption="old")
    store.put_embeddings("text-model", [(image.id, np.ones(4))])
    store.put_embeddings("clip-image", [(image.id, np.ones(8))], kind="image")
    store.update(image.id, caption="new")
    assert [i.id for i in store.missing_embeddings("text-model")] == [image.id]
    assert store.embedding_ids("clip-image") == [image.id]
    with db.session() as session:
        assert session.scalar(select(ImageEmbeddingRow.kind)) == "image"
    store.delete(image.id)
    assert store.embedding_ids("clip-image") == []


# -- caption sources ---------------------------------------------------------------------------


def test_caption_source(store: ImageStore) -> None:
    typed, _ = store.add(image_bytes(color=(1, 0, 0)), caption="typed")
    assert typed.caption_source == "user"
    blank, _ = store.add(image_bytes(color=(2, 0, 0)))
    assert blank.caption_source == ""
    filled, _ = store.add(image_bytes(color=(2, 0, 0)), caption="by a model",
                          caption_source="model:blip-base")
    assert (filled.caption, filled.caption_source) == ("by a model", "model:blip-base")
    assert store.update(filled.id, caption="fixed by hand").caption_source == "user"
    assert store.update(filled.id, caption="from the web",
                        caption_source="web").caption_source == "web"
    assert store.update(filled.id, license="CC0").caption_source == "web"
    assert store.update(filled.id, caption_source="sidecar").caption_source == "sidecar"
    assert store.get(filled.id).caption == "from the web"
    for bad in ("robot", "model:", "model:" + "x" * 60):
        with pytest.raises(InputError, match="caption source"):
            store.add(image_bytes(color=(3, 0, 0)), caption="x", caption_source=bad)
        with pytest.raises(InputError, match="caption source"):
            store.update(typed.id, caption_source=bad)
    assert store.count() == 2


# -- listing with filters ----------------------------------------------------------------------


def test_list_filters_and_distinct_values(store: ImageStore) -> None:
    specs = [("A Red Fox in the snow", "camera", "CC0"), ("a lighthouse", "camera", "CC BY"),
             ("Foxglove flowers", "web", "CC0"), ("100% cotton", "", "")]
    images = [store.add(image_bytes(color=(number, 1, 1)), caption=caption, source=source,
                        license=license)[0]
              for number, (caption, source, license) in enumerate(specs)]
    ids = [image.id for image in images]

    def listed(**filters: Any) -> list[str]:
        return [image.id for image in store.list(**filters)]

    assert listed() == ids
    assert listed(source="camera") == ids[:2] and store.count(source="camera") == 2
    assert listed(license="CC0") == [ids[0], ids[2]] and store.count(license="CC0") == 2
    assert listed(source="camera", license="CC0") == [ids[0]]
    assert listed(search="fox") == [ids[0], ids[2]] and store.count(search="FOX") == 2
    assert listed(search="%") == [ids[3]]  # LIKE wildcards are matched literally
    assert listed(search="  ") == ids and listed(license="") == [ids[3]]
    assert listed(limit=2, offset=1) == ids[1:3] and listed(offset=3) == [ids[3]]
    assert store.list(limit=2, offset=1, search="o") == store.list(search="o")[1:3]
    assert store.sources() == ["camera", "web"]
    assert store.licenses() == ["CC BY", "CC0"]
    assert store.ids(license="CC0") == sorted([ids[0], ids[2]])
    assert store.captions([ids[1], "0" * 64]) == {ids[1]: "a lighthouse"}
    with pytest.raises(InputError, match="must not be negative"):
        store.list(offset=-1)
