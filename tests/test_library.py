"""composer/library.py: the default seed photos and importing files and folders."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from composer import library
from composer.library import (
    CC0,
    CC_BY_2,
    PUBLIC_DOMAIN,
    SEED_PHOTOS,
    AddResult,
    add_images,
    available_seed_photos,
    seed_default_library,
)
from composer.retrieval.retriever import Retriever
from storage.imaging import NEAR_DUPLICATE_DISTANCE
from tests.support_library import *  # noqa: F403
from tests.support_library import png_bytes
from tests.test_imaging import encoded
from tests.test_imaging import photo as skimage_photo

# -- the seed photos -----------------------------------------------------------------------


def test_every_seed_photo_is_inside_an_installed_wheel():
    found = available_seed_photos()
    assert len(found) == len(SEED_PHOTOS) >= 15
    for photo, path in found:
        assert path.is_file() and path.stat().st_size > 1000
        assert f"site-packages/{photo.package}/" in path.as_posix()


def test_every_seed_photo_has_caption_license_and_attribution():
    names = [photo.relative_path for photo in SEED_PHOTOS]
    assert len(set(names)) == len(names)
    for photo in SEED_PHOTOS:
        assert len(photo.caption.split()) >= 10, photo.relative_path
        assert photo.attribution.strip(), photo.relative_path
        if photo.package == "skimage":  # only public domain / CC0 from scikit-image
            assert photo.license in (PUBLIC_DOMAIN, CC0), photo.relative_path
        else:
            assert (photo.package, photo.license) == ("sklearn", CC_BY_2)


def test_seed_is_idempotent_and_indexes(store, embedder):
    retriever = Retriever(store, embedder)
    assert seed_default_library(store, retriever) == len(SEED_PHOTOS)
    assert seed_default_library(store, retriever) == 0
    assert store.count() == len(SEED_PHOTOS)
    assert store.missing_embeddings(retriever.model) == []
    for image in store.list():
        assert image.caption and image.license and image.attribution
        assert image.source.startswith(("scikit-image ", "scikit-learn "))
        assert image.caption_source == "seed"


def test_seed_without_retriever_only_stores(store):
    assert seed_default_library(store) == len(SEED_PHOTOS)
    assert len(store.missing_embeddings("any-model")) == len(SEED_PHOTOS)


def test_a_missing_seed_file_is_skipped_with_a_warning(store, monkeypatch, caplog):
    gone = replace(SEED_PHOTOS[0], relative_path="data/not-there.png")
    monkeypatch.setattr(library, "SEED_PHOTOS", (gone, SEED_PHOTOS[1]))
    with caplog.at_level(logging.WARNING, logger="composer.library"):
        assert seed_default_library(store) == 1
    assert "not-there.png" in caplog.text


# -- add_images ----------------------------------------------------------------------------


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _captions(result: AddResult) -> dict[str, str]:
    return {Path(image.source).name: image.caption for image in result.added + result.existing}


def test_captions_from_sidecars_json_and_csv(store, tmp_path):
    folder = tmp_path / "photos"
    _write(folder / "a.png", png_bytes((1, 0, 0)))
    _write(folder / "a.png.txt", "  A red fox in the snow.\n")
    _write(folder / "b.png", png_bytes((2, 0, 0)))
    _write(folder / "b.txt", "A lighthouse at night.")
    _write(folder / "c.png", png_bytes((3, 0, 0)))
    _write(folder / "captions.json", json.dumps({"c.png": "A bowl of ramen."}))
    _write(folder / "trip" / "d.png", png_bytes((4, 0, 0)))
    _write(folder / "trip" / "e.png", png_bytes((5, 0, 0)))
    _write(folder / "trip" / "captions.csv",
           'filename,caption\nd.png,"Boats in a harbour, at dawn"\n\ne.png,A mountain lake\n')
    result = add_images(store, [folder], license="CC0 1.0", attribution="me")
    assert result.failed == [] and result.existing == [] and result.uncaptioned == []
    assert _captions(result) == {
        "a.png": "A red fox in the snow.", "b.png": "A lighthouse at night.",
        "c.png": "A bowl of ramen.", "d.png": "Boats in a harbour, at dawn",
        "e.png": "A mountain lake"}
    assert {image.license for image in result.added} == {"CC0 1.0"}
    assert store.count() == 5


def test_caption_argument_wins_and_readding_is_existing(store, tmp_path):
    image = _write(tmp_path / "x.png", png_bytes((6, 0, 0)))
    _write(tmp_path / "x.png.txt", "from the sidecar")
    first = add_images(store, [image], caption="from the argument")
    assert [i.caption for i in first.added] == ["from the argument"]
    again = add_images(store, [str(image)])
    assert again.added == [] and [i.id for i in again.existing] == [first.added[0].id]
    assert again.images == [(again.existing[0], False)]


def test_a_broken_file_is_reported_while_the_others_go_in(store, tmp_path):
    folder = tmp_path / "mixed"
    _write(folder / "good1.png", png_bytes((7, 0, 0)))
    _write(folder / "broken.png", b"this is not an image at all")
    _write(folder / "truncated.png", png_bytes((8, 0, 0), size=(64, 64))[:60])
    _write(folder / "good2.png", png_bytes((9, 0, 0)))
    _write(folder / "notes.md", "ignored: not an image suffix")
    _write(folder / ".hidden" / "secret.png", png_bytes((10, 0, 0)))
    missing = tmp_path / "nowhere.png"
    result = add_images(store, [folder, missing], caption="a test colour")
    assert sorted(Path(i.source).name for i in result.added) == ["good1.png", "good2.png"]
    failed = dict(result.failed)
    assert set(failed) == {str(folder / "broken.png"), str(folder / "truncated.png"),
                           str(missing)}
    assert "not an image" in failed[str(folder / "broken.png")]
    assert "no such file" in failed[str(missing)]
    assert store.count() == 2


def test_uncaptioned_images_are_reported(store, tmp_path):
    image = _write(tmp_path / "plain.png", png_bytes((11, 0, 0)))
    result = add_images(store, image)
    assert [i.id for i in result.uncaptioned] == [result.added[0].id]


def test_malformed_caption_files_are_reported_and_images_still_added(store, tmp_path):
    _write(tmp_path / "json" / "a.png", png_bytes((12, 0, 0)))
    _write(tmp_path / "json" / "captions.json", "{not json")
    _write(tmp_path / "csv" / "b.png", png_bytes((13, 0, 0)))
    _write(tmp_path / "csv" / "captions.csv", "b.png\n")
    result = add_images(store, [tmp_path / "json", tmp_path / "csv"])
    assert len(result.added) == 2
    messages = dict(result.failed)
    assert "not valid JSON" in messages[str(tmp_path / "json" / "captions.json")]
    assert "filename,caption" in messages[str(tmp_path / "csv" / "captions.csv")]


def test_a_too_long_caption_fails_that_file_only(store, tmp_path):
    _write(tmp_path / "long.png", png_bytes((14, 0, 0)))
    _write(tmp_path / "long.png.txt", "word " * 1000)
    _write(tmp_path / "ok.png", png_bytes((15, 0, 0)))
    _write(tmp_path / "ok.png.txt", "fine")
    result = add_images(store, [tmp_path])
    assert [Path(i.source).name for i in result.added] == ["ok.png"]
    assert "caption" in dict(result.failed)[str(tmp_path / "long.png")]


@pytest.mark.parametrize("caption", [None, "", "   "])
def test_blank_caption_argument_falls_back_to_files(store, tmp_path, caption):
    image = _write(tmp_path / "y.png", png_bytes((16, 0, 0)))
    _write(tmp_path / "y.txt", "from y.txt")
    assert add_images(store, [image], caption=caption).added[0].caption == "from y.txt"


def test_caption_sources(store, tmp_path):
    _write(tmp_path / "side" / "a.png", png_bytes((17, 0, 0)))
    _write(tmp_path / "side" / "a.png.txt", "from a sidecar")
    _write(tmp_path / "side" / "b.png", png_bytes((18, 0, 0)))
    _write(tmp_path / "side" / "captions.json", json.dumps({"b.png": "from captions.json"}))
    _write(tmp_path / "side" / "c.png", png_bytes((19, 0, 0)))
    typed = _write(tmp_path / "typed.png", png_bytes((20, 0, 0)))
    result = add_images(store, [tmp_path / "side"])
    assert {Path(i.source).name: i.caption_source for i in result.added} == {
        "a.png": "sidecar", "b.png": "sidecar", "c.png": ""}
    assert add_images(store, typed, caption="typed in").added[0].caption_source == "user"
    filled = add_images(store, tmp_path / "side" / "c.png", caption="filled in later")
    assert [(i.caption, i.caption_source) for i in filled.existing] == [
        ("filled in later", "user")]


def test_near_duplicates_are_reported_and_can_be_kept(store, tmp_path):
    cat = skimage_photo("chelsea.png").convert("RGB")
    _write(tmp_path / "a" / "chelsea.png", encoded(cat, "PNG"))
    _write(tmp_path / "a" / "coffee.png", encoded(skimage_photo("coffee.png").convert("RGB"), "PNG"))
    small = _write(tmp_path / "b" / "chelsea-small.jpg",
                   encoded(cat.resize((cat.width // 2, cat.height // 2)), "JPEG", quality=70))
    first = add_images(store, [tmp_path / "a"])
    assert len(first.added) == 2 and first.near_duplicates == []
    original = next(i for i in first.added if i.source == "chelsea.png")
    second = add_images(store, [tmp_path / "b"])
    assert second.added == [] and second.failed == [] and second.existing == []
    ((path, existing, distance),) = second.near_duplicates
    assert (path, existing.id) == (str(small), original.id)
    assert 0 <= distance <= NEAR_DUPLICATE_DISTANCE
    kept = add_images(store, [small], allow_near_duplicates=True)
    assert [Path(i.source).name for i in kept.added] == ["chelsea-small.jpg"]
    assert kept.near_duplicates == [] and store.count() == 3


# -- big imports: progress, batches, interruption ---------------------------------------------


class CountingEmbedder:
    """The real embedder, counting how many texts each encode() call got."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts):
        self.calls.append(len(texts))
        return self.inner.encode(texts)


class CountingSpotter:
    """A text spotter that reads no text and counts the images it read."""

    name = "counting"

    def __init__(self) -> None:
        self.read_paths: list[Path] = []

    def read(self, path):
        from models.ocr import VisibleText

        self.read_paths.append(path)
        return VisibleText(engine=self.name)


def _captioned(store, count: int) -> list[str]:
    return [store.add(png_bytes((index, 40, 200)), caption=f"a blue square number {index}")[0].id
            for index in range(count)]


def test_index_embeds_in_batches_writing_each_before_reporting_it(store, embedder, monkeypatch):
    from composer.retrieval import retriever as retrieval

    monkeypatch.setattr(retrieval, "INDEX_BATCH", 4)
    _captioned(store, 10)
    counting = CountingEmbedder(embedder)
    retriever = Retriever(store, counting)
    reports = []

    def progress(done, total, stage):
        stored = len(store.embedding_ids(counting.name)) if stage == retrieval.CAPTIONS_STAGE \
            else None
        reports.append((done, total, stage, stored))

    assert retriever.index(progress=progress) == 10
    assert counting.calls == [4, 4, 2]
    assert reports == [(4, 10, retrieval.CAPTIONS_STAGE, 4), (8, 10, retrieval.CAPTIONS_STAGE, 8),
                       (10, 10, retrieval.CAPTIONS_STAGE, 10)]
    assert retriever.index(progress=progress) == 0 and counting.calls == [4, 4, 2]


def test_an_interrupted_index_keeps_its_batches_and_the_next_run_embeds_the_rest(
        store, embedder, monkeypatch):
    from composer.retrieval import retriever as retrieval

    monkeypatch.setattr(retrieval, "INDEX_BATCH", 4)
    _captioned(store, 10)
    counting = CountingEmbedder(embedder)
    retriever = Retriever(store, counting)

    def interrupt(done, total, stage):
        if done == 8:
            raise KeyboardInterrupt  # what Ctrl-C or the CLI's SIGTERM handler raises

    with pytest.raises(KeyboardInterrupt):
        retriever.index(progress=interrupt)
    assert len(store.embedding_ids(counting.name)) == 8
    assert retriever.index() == 2 and counting.calls == [4, 4, 2]
    assert len(store.embedding_ids(counting.name)) == 10
    assert retriever.search("a blue square number 7", k=1)[0].caption.endswith("7")


def test_a_stop_event_ends_indexing_after_the_current_batch(store, embedder, monkeypatch):
    import threading

    from composer.retrieval import retriever as retrieval

    monkeypatch.setattr(retrieval, "INDEX_BATCH", 4)
    _captioned(store, 10)
    spotter = CountingSpotter()
    retriever = Retriever(store, CountingEmbedder(embedder), spotter)
    stop = threading.Event()
    assert retriever.index(progress=lambda done, total, stage: stop.set(), stop=stop) == 4
    assert spotter.read_paths == []  # later stages do not start once stopped
    assert retriever.index() == 6 and len(spotter.read_paths) == 10


def test_text_reading_reports_each_image_and_resumes_where_it_stopped(store, embedder):
    from composer.retrieval import retriever as retrieval

    ids = _captioned(store, 5)
    spotter = CountingSpotter()
    retriever = Retriever(store, CountingEmbedder(embedder), spotter)
    reports = []

    def progress(done, total, stage):
        if stage == retrieval.TEXT_STAGE:
            reports.append((done, total))
            if done == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retriever.index(progress=progress)
    assert reports == [(1, 5), (2, 5), (3, 5)]
    assert len(store.missing_text()) == 2
    retriever.index(progress=lambda done, total, stage: reports.append((done, total)))
    assert reports[3:] == [(1, 2), (2, 2)] and len(spotter.read_paths) == 5
    assert store.missing_text() == [] and set(store.texts(ids)) == set(ids)


def test_add_images_reports_every_file_it_handled(store, tmp_path):
    for index in range(3):
        _write(tmp_path / "in" / f"{index}.png", png_bytes((index, 90, 90)))
    _write(tmp_path / "in" / "broken.png", "not an image")
    reports = []
    result = add_images(store, [tmp_path / "in"],
                        progress=lambda done, total, stage: reports.append((done, total, stage)))
    assert len(result.added) == 3 and len(result.failed) == 1
    assert reports == [(done, 4, library.ADDING_STAGE) for done in range(1, 5)]
