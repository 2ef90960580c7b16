"""ImageStore and validate_image on SQLite and PostgreSQL: validation, files, embeddings."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from composer.config import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from composer.types import ImageBlock, InputError, NotFoundError
from storage.documents import DocumentRepository
from storage.images import ImageStore, validate_image
from tests.support_storage import *  # noqa: F403
from tests.support_storage import image_bytes, png_bomb


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
