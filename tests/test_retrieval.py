"""models/retrieval.py: indexing captions and cosine search over a real ImageStore."""

from __future__ import annotations

import numpy as np
import pytest

from models.retrieval import Retriever
from tests.support_library import *  # noqa: F403
from tests.support_library import png_bytes


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
