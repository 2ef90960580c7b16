"""Private images on SQLite and PostgreSQL: every person holds their own copy, and nothing the
store answers tells one person about another's files (issue 12, item 6)."""

from __future__ import annotations

import hashlib

import pytest

from storage.images import ImageStore, copy_id
from storage.near_duplicates import NearDuplicateError
from storage.tables import ImageRow
from tests.support_storage import *  # noqa: F403
from tests.test_storage_images import _photo_bytes

ANN, BO = "key:ann-0123456789abcdef", "key:bo-0123456789abcdef0"


def test_the_same_bytes_held_privately_by_two_people_are_two_copies(store: ImageStore) -> None:
    data = _photo_bytes("astronaut.png")
    content_id = hashlib.sha256(data).hexdigest()
    ann, created = store.add(data, name="a.png", caption="Ann's secret", owner=ANN)
    assert created and ann.owner == ANN and ann.id == copy_id(content_id, ANN) != content_id
    again, created = store.add(data, owner=ANN)
    assert not created and again.id == ann.id  # the same person: stored once

    bo, created = store.add(data, name="b.png", caption="", owner=BO)  # no error, no hint
    assert created and bo.owner == BO and bo.id == copy_id(content_id, BO)
    assert bo.caption == "" and store.get(ann.id).caption == "Ann's secret"
    assert store.path(bo.id) != store.path(ann.id) and store.path(bo.id).exists()
    assert [image.id for image in store.list(owner=BO)] == [bo.id]

    store.update(bo.id, caption="Bo's own words")
    assert store.get(ann.id).caption == "Ann's secret"
    store.delete(bo.id)  # deleting a copy removes only that person's hold
    assert store.get(ann.id).owner == ANN and store.path(ann.id).exists()
    assert [image.id for image in store.list(owner=BO)] == []


def test_shared_bytes_are_reused_by_everyone(store: ImageStore) -> None:
    data = _photo_bytes("coffee.png")
    shared, created = store.add(data, caption="coffee")
    assert created and shared.id == hashlib.sha256(data).hexdigest()
    for owner in (ANN, BO):
        image, created = store.add(data, owner=owner)
        assert not created and image.id == shared.id
    assert store.count() == 1


def test_a_private_image_under_its_plain_hash_stays_its_owners(store: ImageStore) -> None:
    """Images uploaded before private copies had ids of their own keep working."""
    data = _photo_bytes("camera.png")
    legacy, _ = store.add(data, caption="old upload")
    with store.db.session() as session:
        session.get(ImageRow, legacy.id).owner = ANN
    again, created = store.add(data, owner=ANN)
    assert not created and again.id == legacy.id
    bo, created = store.add(data, owner=BO)
    assert created and bo.id != legacy.id and bo.caption == ""


def test_look_alikes_of_other_peoples_images_are_not_near_duplicates(store: ImageStore) -> None:
    ann, _ = store.add(_photo_bytes("astronaut.png"), caption="Ann's astronaut", owner=ANN)
    smaller = _photo_bytes("astronaut.png", 0.5)
    bo, created = store.add(smaller, name="small.png", owner=BO)  # nothing about Ann's
    assert created and bo.owner == BO
    with pytest.raises(NearDuplicateError) as caught:  # the owner is told about their own
        store.add(_photo_bytes("astronaut.png", fmt="JPEG", quality=70), owner=ANN)
    assert caught.value.existing.id == ann.id
    with pytest.raises(NearDuplicateError) as caught:
        store.add(_photo_bytes("astronaut.png", fmt="JPEG", quality=70), owner=BO)
    assert caught.value.existing.id == bo.id and "Ann" not in str(caught.value)
