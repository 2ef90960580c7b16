"""composer/retrieval/retriever.py: indexing captions and cosine search over a real ImageStore."""

from __future__ import annotations

import numpy as np
import pytest

from composer.retrieval.retriever import Retriever
from tests.support_library import *  # noqa: F403
from tests.support_library import png_bytes
from tests.tiny_models import tiny_clip_dir  # noqa: F401  (fixture)


def _seed_id(store, file_name: str) -> str:
    """The id of the seed photo whose source names `file_name`."""
    matches = [image.id for image in store.list() if f"/{file_name}" in image.source]
    assert len(matches) == 1, f"{file_name} not seeded once"
    return matches[0]


@pytest.mark.parametrize("query, expected", [
    ("a cat lying down", "chelsea.png"),
    ("an astronaut", "astronaut.png"),
    ("a cup of coffee", "coffee.png"),
    ("a rocket launch", "rocket.jpg"),
    ("galaxies in deep space", "hubble_deep_field.jpg"),
    ("a flower in bloom", "flower.jpg"),
    ("a photographer with a camera", "camera.png"),
    ("a Chinese temple by a lake", "china.jpg"),
])
def test_clear_queries_rank_the_right_seed_photo_first(seeded, query, expected):
    store, retriever = seeded
    results = retriever.search(query, k=4)
    assert results[0].image_id == _seed_id(store, expected), [r.caption for r in results]


def test_results_are_sorted_and_carry_store_metadata(seeded):
    store, retriever = seeded
    results = retriever.search("an animal", k=5)
    assert len(results) == 5
    scores = [result.score for result in results]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= score <= 1.0 for score in scores)
    for result in results:
        image = store.get(result.image_id)
        assert (result.caption, result.license, result.attribution) == \
            (image.caption, image.license, image.attribution)
        assert result.caption and result.license and result.attribution


def test_exclude_skips_used_images(seeded):
    store, retriever = seeded
    astronaut = _seed_id(store, "astronaut.png")
    results = retriever.search("an astronaut", k=3, exclude={astronaut})
    assert len(results) == 3
    assert astronaut not in {result.image_id for result in results}
    everything = {image.id for image in store.list()}
    assert retriever.search("an astronaut", k=3, exclude=everything) == []


def test_k_larger_than_the_library_returns_everything(seeded):
    store, retriever = seeded
    assert len(retriever.search("anything at all", k=1000)) == store.count()


def test_bad_arguments_are_rejected(seeded):
    _, retriever = seeded
    with pytest.raises(ValueError, match="empty"):
        retriever.search("   ")
    with pytest.raises(ValueError, match="k=0"):
        retriever.search("a cat", k=0)


def test_empty_library_gives_no_candidates(store, embedder):
    retriever = Retriever(store, embedder)
    assert retriever.index() == 0
    assert retriever.search("a cat") == []


def test_index_is_idempotent_and_covers_every_captioned_image(store, embedder):
    store.add(png_bytes((255, 0, 0)), caption="a red square")
    store.add(png_bytes((0, 0, 255)), caption="a blue square")
    retriever = Retriever(store, embedder)
    assert retriever.index() == 2
    assert retriever.index() == 0
    ids, matrix = store.embeddings(retriever.model)
    assert len(ids) == 2 and matrix.shape == (2, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_uncaptioned_images_are_not_indexed_until_captioned(store, embedder):
    image, _ = store.add(png_bytes((0, 128, 0)))
    retriever = Retriever(store, embedder)
    assert retriever.index() == 0
    assert retriever.search("a green square") == []
    store.update(image.id, caption="a green square")
    assert retriever.index() == 1
    assert retriever.search("a green square")[0].image_id == image.id


def test_matrix_reloads_when_another_process_changes_the_library(store, embedder):
    red, _ = store.add(png_bytes((255, 0, 0)), caption="a red square")
    reader = Retriever(store, embedder)
    reader.index()
    assert [c.image_id for c in reader.search("a blue square")] == [red.id]
    # Another Retriever (another process) adds and indexes an image: no invalidate() here.
    writer = Retriever(store, embedder)
    blue, _ = store.add(png_bytes((0, 0, 255)), caption="a blue square")
    writer.index()
    assert reader.search("a blue square")[0].image_id == blue.id
    store.delete(blue.id)
    assert [c.image_id for c in reader.search("a blue square")] == [red.id]


def test_changed_license_shows_without_reindexing(store, embedder):
    image, _ = store.add(png_bytes((9, 9, 9)), caption="a dark square")
    retriever = Retriever(store, embedder)
    retriever.index()
    retriever.search("a dark square")
    store.update(image.id, license="CC0 1.0", attribution="me")
    result = retriever.search("a dark square")[0]
    assert (result.license, result.attribution) == ("CC0 1.0", "me")


def _library(store):
    """Three captioned images: two shared (different sources/licenses), one private."""
    from tests.support_storage import photo_bytes

    cat, _ = store.add(photo_bytes("chelsea.png"), caption="a tabby cat with green eyes",
                       source="skimage", license="CC0 1.0")
    coffee, _ = store.add(photo_bytes("coffee.png"), caption="a cup of espresso coffee",
                          source="camera roll", license="CC BY 2.0")
    private, _ = store.add(photo_bytes("astronaut.png"), caption="a cat astronaut costume",
                           owner="key:alice")
    return cat, coffee, private


def test_owner_sees_shared_images_and_only_their_own_private_ones(store, embedder):
    cat, coffee, private = _library(store)
    retriever = Retriever(store, embedder)
    retriever.index()
    ids = lambda **kw: [c.image_id for c in retriever.search("a cat", k=3, **kw)]  # noqa: E731
    assert private.id in ids(owner="key:alice")
    assert private.id not in ids(owner="key:bob")
    assert set(ids(owner="key:bob")) == {cat.id, coffee.id}
    assert private.id in ids()  # no owner: the CLI (the server's operator) sees everything


def test_source_and_license_filters_keep_only_matching_images(store, embedder):
    cat, coffee, _ = _library(store)
    retriever = Retriever(store, embedder)
    retriever.index()
    assert [c.image_id for c in retriever.search("a cat", k=3, license="CC BY 2.0")] == \
        [coffee.id]
    assert [c.image_id for c in retriever.search("coffee", k=3, source="skimage")] == [cat.id]
    assert retriever.search("a cat", k=3, source="nowhere") == []


def test_keyword_match_lifts_a_caption_that_names_the_query(store, embedder):
    cat, coffee, _ = _library(store)
    retriever = Retriever(store, embedder, keyword_weight=0.5)
    retriever.index()
    ranked = retriever.rank("espresso", k=2)
    assert ranked[0].image_id == coffee.id and ranked[0].keyword == pytest.approx(1.0)
    plain = Retriever(store, embedder, keyword_weight=0.0)
    assert plain.rank("espresso", k=1)[0].keyword == 0.0
    assert ranked[0].score == pytest.approx(plain.rank("espresso", k=1)[0].score + 0.5)


def test_saved_index_is_reused_and_brought_up_to_date(store, embedder, tmp_path):
    cat, coffee, private = _library(store)
    first = Retriever(store, embedder, index_dir=tmp_path / "index")
    first.index()
    saved = list((tmp_path / "index").iterdir())
    assert len(saved) == 1 and (saved[0] / "manifest.json").is_file()
    store.delete(private.id)
    store.update(coffee.id, caption="a red motorcycle in a garage")
    second = Retriever(store, embedder, index_dir=tmp_path / "index")  # a restart
    second.index()  # embeds the new caption; loads the saved index and syncs it
    assert second._captions.index.ids() == {cat.id, coffee.id}
    assert second.search("a motorbike", k=1)[0].image_id == coffee.id
    # A corrupt saved index is rebuilt from the database, not fatal.
    (saved[0] / "manifest.json").write_text("{not json")
    third = Retriever(store, embedder, index_dir=tmp_path / "index")
    assert third.search("a cat", k=1)[0].image_id == cat.id


def test_approximate_index_above_the_threshold_gives_the_same_top_result(store, embedder):
    cat, coffee, private = _library(store)
    exact = Retriever(store, embedder)
    approximate = Retriever(store, embedder, ann_threshold=1)
    approximate.index()
    assert type(approximate._captions.index).__name__ == "ApproximateIndex"
    for query in ("a cat", "coffee", "an astronaut"):
        assert approximate.search(query, k=1)[0].image_id == exact.search(query, k=1)[0].image_id


def test_clip_image_vectors_find_uncaptioned_images(store, embedder, tiny_clip_dir):
    from models.clip import ClipEmbedder
    from tests.support_storage import photo_bytes

    clip = ClipEmbedder.from_pretrained(tiny_clip_dir)
    uncaptioned, _ = store.add(photo_bytes("horse.png"))
    captioned, _ = store.add(photo_bytes("coffee.png"), caption="a cup of coffee")
    retriever = Retriever(store, embedder, clip=clip, clip_weight=0.5)
    retriever.index()
    assert store.missing_embeddings(retriever.image_model) == []
    ids, vectors = store.embeddings(retriever.image_model)
    assert set(ids) == {uncaptioned.id, captioned.id} and vectors.shape[1] == clip.dim
    ranked = retriever.rank("a horse", k=2)
    assert {item.image_id for item in ranked} == {uncaptioned.id, captioned.id}
    query = clip.encode(["a horse"])[0]
    expected = float(vectors[ids.index(uncaptioned.id)] @ query)
    horse = next(item for item in ranked if item.image_id == uncaptioned.id)
    assert horse.image == pytest.approx(expected, abs=1e-5)
    # A caption change keeps the pixel vectors (they do not depend on the caption).
    store.update(captioned.id, caption="an espresso")
    assert store.missing_embeddings(retriever.image_model) == []


def test_a_caption_edit_does_not_rewrite_the_saved_index(store, embedder, tmp_path):
    cat, coffee, _ = _library(store)
    retriever = Retriever(store, embedder, index_dir=tmp_path / "index")
    retriever.index()
    [folder] = list((tmp_path / "index").iterdir())
    saved = (folder / "manifest.json").read_bytes()
    store.update(coffee.id, caption="a red motorcycle in a garage")
    retriever.index()
    assert (folder / "manifest.json").read_bytes() == saved  # a change behind, on purpose
    assert retriever.search("a motorbike", k=1)[0].image_id == coffee.id
    restarted = Retriever(store, embedder, index_dir=tmp_path / "index")
    assert restarted.search("a motorbike", k=1)[0].image_id == coffee.id
