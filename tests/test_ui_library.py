"""The Library view's handlers (ui/library.py) on real storage and real image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image

from composer.types import InputError, NotFoundError
from tests.support_app import services  # noqa: F401  (fixture)
from tests.support_storage import photo_bytes
from ui import library as lh

ALICE, BOB = "key:alice-browser-key-0001", "key:bob-browser-key-00002"


def _file(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def test_page_lists_the_shared_library_with_cached_thumbnails(services):
    page = lh.library_page(services, ALICE)
    assert page.total == services.images.count() == len(page.items) == len(page.ids)
    thumb, label = page.items[0]
    with Image.open(thumb) as opened:
        assert opened.format == "JPEG" and max(opened.size) <= lh.THUMB_SIZE
    assert label and page.summary() == f"{page.total} images · page 1 of 1"
    harbor = lh.library_page(services, ALICE, search="HARBOR")
    assert harbor.total == 1 and "harbor" in harbor.items[0][1]
    assert lh.library_page(services, ALICE, license="no such license").summary() == \
        "No images match."
    with pytest.raises(InputError, match="page 'x' must be a number from 1 to 1"):
        lh.library_page(services, ALICE, page="x")


def test_uploads_belong_to_the_uploader_and_stay_private(services, tmp_path):
    files = [_file(tmp_path / "up", "cat.png", photo_bytes("chelsea.png")),
             _file(tmp_path / "up", "broken.png", b"\x89PNG\r\n\x1a\n broken")]
    message = lh.upload_images(services, ALICE, files, caption="my <b>cat</b>",
                               license="CC0 1.0", attribution="Alice")
    assert "Added 1 image(s)." in message
    assert "Not added: broken.png" in message and "<b>" not in message
    mine = lh.library_page(services, ALICE, search="my <b>cat</b>")
    assert mine.total == 1
    image = services.images.get(mine.ids[0])
    assert image.owner == ALICE and image.caption_source == "user"
    assert lh.library_page(services, BOB, search="cat").total == 0
    with pytest.raises(NotFoundError):
        lh.image_details(services, image.id, BOB)
    with pytest.raises(NotFoundError):
        lh.delete_image(services, image.id, BOB, confirmed=True)
    assert "CC0 1.0" in lh.filter_choices(services, ALICE)[1]
    assert "CC0 1.0" not in lh.filter_choices(services, BOB)[1]


def test_a_file_someone_else_holds_privately_is_simply_added(services, tmp_path):
    data = photo_bytes("chelsea.png")
    lh.upload_images(services, ALICE, [_file(tmp_path / "a", "cat.png", data)],
                     caption="Alice's cat")
    message = lh.upload_images(services, BOB, [_file(tmp_path / "b", "mine.png", data)],
                               caption="Bob's cat")
    assert message == "- Added 1 image(s)."  # no word about anyone else's library
    bobs = lh.library_page(services, BOB, search="cat")
    assert bobs.total == 1 and services.images.get(bobs.ids[0]).caption == "Bob's cat"
    look_alike = _file(tmp_path / "c", "small.png", photo_bytes("chelsea.png", 0.5))
    message = lh.upload_images(services, BOB, [look_alike])
    assert "Alice" not in message and "Skipped small.png" in message  # Bob's own copy
    lh.delete_image(services, bobs.ids[0], BOB, confirmed=True)
    assert lh.library_page(services, ALICE, search="Alice's cat").total == 1


def test_near_duplicate_upload_is_skipped_unless_kept(services, tmp_path):
    lh.upload_images(services, ALICE, [_file(tmp_path / "a", "cat.png",
                                             photo_bytes("chelsea.png"))], caption="a cat")
    smaller = _file(tmp_path / "b", "cat-small.png", photo_bytes("chelsea.png", 0.5))
    message = lh.upload_images(services, ALICE, [smaller])
    assert "Skipped cat-small.png" in message and "Keep near-duplicates" in message
    assert lh.library_page(services, ALICE, search="a cat").total == 1
    kept = lh.upload_images(services, ALICE, [smaller], keep_near_duplicates=True)
    assert "Added 1 image(s)." in kept and "no caption yet" in kept
    assert "sidecar files" in kept  # no captioning model is configured here


def test_upload_limits_and_empty_uploads_are_explained(services, tmp_path):
    with pytest.raises(InputError, match="choose one or more image files"):
        lh.upload_images(services, ALICE, [])
    many = [tmp_path / f"{number}.png" for number in range(lh.MAX_UPLOAD_FILES + 1)]
    with pytest.raises(InputError, match="upload at most 50 at a time"):
        lh.upload_images(services, ALICE, many)


def test_editing_saves_caption_license_and_attribution(services):
    image = services.images.list()[0]
    updated = lh.save_image(services, image.id, ALICE, "  A new caption  ", "CC BY 4.0",
                            "Someone")
    assert (updated.caption, updated.license, updated.attribution, updated.caption_source) == \
        ("A new caption", "CC BY 4.0", "Someone", "user")
    details = lh.image_details(services, image.id, ALICE)
    assert details.editable and "Caption by: a person" in details.notes


def test_shared_library_is_read_only_on_a_multi_user_server(services, tmp_path):
    services.settings = dataclasses.replace(services.settings, auth="admin:secret")
    shared = services.images.list()[0]
    assert not lh.image_details(services, shared.id, ALICE).editable
    with pytest.raises(InputError, match="shared library is read-only"):
        lh.save_image(services, shared.id, ALICE, "changed", "", "")
    with pytest.raises(InputError, match="shared library is read-only"):
        lh.delete_image(services, shared.id, ALICE, confirmed=True)
    lh.upload_images(services, ALICE, [_file(tmp_path, "c.png", photo_bytes("coffee.png"))],
                     caption="coffee")
    own = lh.library_page(services, ALICE, search="coffee").ids[0]
    assert lh.image_details(services, own, ALICE).editable
    lh.save_image(services, own, ALICE, "espresso", "", "")
    assert services.images.get(own).caption == "espresso"


def test_delete_needs_confirmation_and_removes_the_image(services):
    image = services.images.list()[0]
    with pytest.raises(InputError, match="tick 'Yes, delete'"):
        lh.delete_image(services, image.id, ALICE, confirmed=False)
    lh.delete_image(services, image.id, ALICE, confirmed=True)
    with pytest.raises(NotFoundError):
        services.images.get(image.id)
    with pytest.raises(NotFoundError, match="click a thumbnail first"):
        lh.image_details(services, None, ALICE)


def test_notes_flag_a_caption_that_only_spells_the_visible_text(services, tmp_path):
    image, _ = services.images.add(photo_bytes("rocket.jpg"), caption="ROCKET LAUNCH",
                                   source="<script>alert(1)</script>")
    services.images.put_text(image.id, ["rocket", "launch"], 0.2, "test")
    details = lh.image_details(services, image.id, ALICE)
    assert details.spelled_caption
    assert "only spells the text visible" in details.notes
    assert "<script>" not in details.notes and "&lt;script&gt;" in details.notes
    services.images.update(image.id, caption="A rocket on its launch pad at dusk")
    assert not lh.image_details(services, image.id, ALICE).spelled_caption


def test_caption_hint_says_where_captions_come_from(services):
    assert "no captioning model is configured" in lh.caption_hint(services)
    services.settings = dataclasses.replace(services.settings, captioner="some/model")
    assert "captioning model writes them" in lh.caption_hint(services)


def test_uncaptioned_uploads_are_captioned_in_the_background(services, tmp_path):
    services.settings = dataclasses.replace(services.settings,
                                            captioner="tests.fake_captioner:colour_captioner")
    message = lh.upload_images(services, ALICE, [_file(tmp_path, "h.png",
                                                       photo_bytes("horse.png"))])
    assert "captioning model writes them" in message
    worker = services.captions
    assert worker.wait(timeout=30)
    status = worker.status()
    assert not status.running and status.done >= 1
    assert lh.caption_status_text(status).startswith("Captioning finished:")
    uploaded = next(image for image in services.images.list(owner=ALICE)
                    if image.owner == ALICE)
    assert uploaded.caption and uploaded.caption_source.startswith("model:")
    assert "Caption by: the captioning model" in lh.image_details(services, uploaded.id,
                                                                 ALICE).notes
