"""composer/retrieval/{exact,hnsw,choose,index_files}.py: exact and HNSW indexes, filters,
updates, persistence, promotion."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from composer.retrieval import index_files
from composer.retrieval.choose import build_index, choose_index, load_index, maybe_promote
from composer.retrieval.contract import SMALL_ALLOWED, IndexFileError
from composer.retrieval.exact import ExactIndex
from composer.retrieval.hnsw import ApproximateIndex

DIM = 32
KINDS = [pytest.param(ExactIndex, id="exact"), pytest.param(ApproximateIndex, id="hnsw")]


def clustered(n: int, dim: int = DIM, seed: int = 0, centres: int = 50) -> np.ndarray:
    """n unit vectors around `centres` random centres (not uniform: neighbours exist)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim))
    points = middle[rng.integers(0, centres, n)] + rng.standard_normal((n, dim)) * 0.5
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def names(n: int, start: int = 0) -> list[str]:
    return [f"img{number:05d}" for number in range(start, start + n)]


def brute_force(ids: list[str], vectors: np.ndarray, query: np.ndarray, k: int,
                exclude: set[str] = frozenset(), allowed: set[str] | None = None) -> list[str]:
    """The true top-k ids, for comparison."""
    scores = vectors @ query
    order = np.argsort(-scores, kind="stable")
    keep = [ids[row] for row in order
            if ids[row] not in exclude and (allowed is None or ids[row] in allowed)]
    return keep[:k]


def filled(kind: type, n: int, seed: int = 0) -> tuple[ExactIndex | ApproximateIndex,
                                                          list[str], np.ndarray]:
    ids, vectors = names(n), clustered(n, seed=seed)
    index = kind(DIM, model="test-model")
    index.upsert(ids, vectors)
    return index, ids, vectors


def found(results: list[tuple[str, float]]) -> list[str]:
    return [image_id for image_id, _ in results]


# ------------------------------------------------------------------------ search


def test_exact_matches_brute_force() -> None:
    index, ids, vectors = filled(ExactIndex, 500)
    queries = clustered(20, seed=1)
    for k in (1, 4, 8, 30):
        for query in queries:
            results = index.search(query, k)
            assert found(results) == brute_force(ids, vectors, query, k)
            scores = [score for _, score in results]
            assert scores == sorted(scores, reverse=True)
            expected = vectors[[ids.index(i) for i in found(results)]] @ query
            np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_exact_with_k_past_the_size_returns_everything() -> None:
    index, ids, _ = filled(ExactIndex, 5)
    assert sorted(found(index.search(clustered(1, seed=3)[0], 10))) == ids


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index_returns_nothing(kind: type) -> None:
    index = kind(DIM)
    assert index.search(clustered(1)[0], 4) == []
    assert len(index) == 0 and index.ids() == set()


def test_approximate_recall_on_clustered_vectors() -> None:
    index, ids, vectors = filled(ApproximateIndex, 3000)
    queries = clustered(100, seed=7)
    hits = 0
    for query in queries:
        hits += len(set(found(index.search(query, 10))) & set(brute_force(ids, vectors, query, 10)))
    assert hits / (10 * len(queries)) >= 0.95


@pytest.mark.parametrize("kind", KINDS)
def test_exclude_still_returns_k_when_the_best_are_excluded(kind: type) -> None:
    index, ids, vectors = filled(kind, 3000)
    query = clustered(1, seed=5)[0]
    exclude = set(brute_force(ids, vectors, query, 200))  # the 200 best are already used
    results = found(index.search(query, 8, exclude=exclude))
    assert len(results) == 8
    assert not set(results) & exclude
    truth = brute_force(ids, vectors, query, 8, exclude=exclude)
    assert len(set(results) & set(truth)) >= 7


@pytest.mark.parametrize("kind", KINDS)
def test_everything_excluded_gives_nothing(kind: type) -> None:
    index, ids, _ = filled(kind, 50)
    assert index.search(clustered(1)[0], 4, exclude=set(ids)) == []
    assert len(index.search(clustered(1)[0], 4, exclude=set(ids[:48]))) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_small_allowed_set_is_exact(kind: type) -> None:
    index, ids, vectors = filled(kind, 3000)
    rng = np.random.default_rng(11)
    allowed = set(rng.choice(ids, 300, replace=False).tolist()) | {"not-in-index"}
    exclude = set(sorted(allowed)[:5])
    for query in clustered(10, seed=12):
        results = found(index.search(query, 8, allowed=allowed, exclude=exclude))
        assert results == brute_force(ids, vectors, query, 8, exclude=exclude, allowed=allowed)


@pytest.mark.parametrize("kind", KINDS)
def test_large_allowed_set_filters_inside_the_search(kind: type) -> None:
    index, ids, vectors = filled(kind, 6000)
    allowed = set(ids[::2])  # 3000 ids: past SMALL_ALLOWED, so HNSW filters in the graph
    assert len(allowed) >= SMALL_ALLOWED
    hits = 0
    queries = clustered(30, seed=13)
    for query in queries:
        results = found(index.search(query, 8, allowed=allowed))
        assert len(results) == 8 and set(results) <= allowed
        hits += len(set(results) & set(brute_force(ids, vectors, query, 8, allowed=allowed)))
    assert hits / (8 * len(queries)) >= 0.95


@pytest.mark.parametrize("kind", KINDS)
def test_empty_allowed_set_gives_nothing(kind: type) -> None:
    index, _, _ = filled(kind, 100)
    assert index.search(clustered(1)[0], 4, allowed=set()) == []


# ------------------------------------------------------------------------ updates


@pytest.mark.parametrize("kind", KINDS)
def test_upsert_replaces_a_known_vector(kind: type) -> None:
    index, ids, vectors = filled(kind, 400)
    target = ids[10]
    new_vector = -vectors[10]  # far from where it was
    index.upsert([target], new_vector[None])
    assert len(index) == 400
    assert found(index.search(new_vector, 1)) == [target]
    near_old = found(index.search(vectors[10], 20))
    assert target not in near_old
    if kind is ApproximateIndex:
        assert index.dead == 1


@pytest.mark.parametrize("kind", KINDS)
def test_remove_drops_ids_and_ignores_unknown_ones(kind: type) -> None:
    index, ids, vectors = filled(kind, 400)
    gone = set(ids[:30])
    index.remove(list(gone) + ["never-added"])
    assert len(index) == 370 and index.ids() == set(ids[30:])
    assert ids[0] not in index and ids[30] in index
    for query in vectors[:30]:
        assert not set(found(index.search(query, 10))) & gone


def test_dead_labels_past_the_share_trigger_a_rebuild() -> None:
    index, ids, vectors = filled(ApproximateIndex, 1000)
    index.remove(ids[:150])
    assert index.dead == 150  # 15%: below MAX_DEAD_SHARE, kept as tombstones
    index.remove(ids[150:250])
    assert index.dead == 0 and len(index) == 750  # 25%: rebuilt
    assert index._index.ntotal == 750
    query = vectors[500]
    assert found(index.search(query, 5)) == brute_force(ids[250:], vectors[250:], query, 5)


def test_explicit_compact_keeps_results() -> None:
    index, ids, vectors = filled(ApproximateIndex, 1000)
    index.remove(ids[:50])
    index.upsert(ids[50:60], vectors[50:60] * -1)
    before = [index.search(query, 5) for query in vectors[100:120]]
    index.compact()
    assert index.dead == 0 and len(index) == 950
    after = [index.search(query, 5) for query in vectors[100:120]]
    assert [found(r) for r in after] == [found(r) for r in before]


@pytest.mark.parametrize("kind", KINDS)
def test_upsert_rejects_bad_input_naming_the_problem(kind: type) -> None:
    index = kind(DIM)
    with pytest.raises(ValueError, match=r"shape \(1, 8\), expected \(1, 32\)"):
        index.upsert(["a"], np.ones((1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="repeat"):
        index.upsert(["a", "a"], clustered(2))
    with pytest.raises(ValueError, match="NaN"):
        index.upsert(["a"], np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="non-empty strings"):
        index.upsert([""], clustered(1))
    with pytest.raises(ValueError, match="k=0"):
        index.search(clustered(1)[0], 0)
    with pytest.raises(ValueError, match="dim 32"):
        index.search(np.ones(8, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="ISO 8601"):
        index.synced_at = "yesterday"
    assert len(index) == 0


# ------------------------------------------------------------------------ persistence


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_give_equal_results(kind: type, tmp_path: Path) -> None:
    index, ids, _ = filled(kind, 1500)
    index.remove(ids[:10])
    index.synced_at = "2026-01-02T03:04:05+00:00"
    index.save(tmp_path / "index")
    loaded = kind.load(tmp_path / "index", model="test-model", dim=DIM)
    assert type(loaded) is kind
    assert loaded.ids() == index.ids() and loaded.model == "test-model"
    assert loaded.synced_at == "2026-01-02T03:04:05+00:00"
    for query in clustered(20, seed=21):
        assert loaded.search(query, 8, exclude={ids[20]}) == index.search(query, 8,
                                                                          exclude={ids[20]})
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["kind"] == kind.kind
    assert manifest["dim"] == DIM and manifest["count"] == 1490


@pytest.mark.parametrize("kind", KINDS)
def test_incremental_update_after_load(kind: type, tmp_path: Path) -> None:
    index, ids, _ = filled(kind, 500)
    index.save(tmp_path)
    loaded = load_index(tmp_path)
    extra_ids, extra = names(50, start=500), clustered(50, seed=30)
    loaded.upsert(extra_ids, extra)
    loaded.remove(ids[:5])
    assert found(loaded.search(extra[3], 1)) == [extra_ids[3]]
    loaded.save(tmp_path)
    again = load_index(tmp_path)
    assert len(again) == 545 and extra_ids[3] in again and ids[0] not in again
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("data-")]) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_save_keeps_the_previous_index(kind: type, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    index, ids, _ = filled(kind, 200)
    index.save(tmp_path)
    index.remove(ids[:100])

    def broken(path: Path, value: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(index_files, "write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path)
    monkeypatch.undo()
    assert len(load_index(tmp_path)) == 200
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_missing_or_corrupt_folders_raise_index_file_error(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="manifest.json is missing"):
        load_index(tmp_path / "nothing")

    index, _, _ = filled(ExactIndex, 100)
    index.save(tmp_path / "exact")
    manifest_path = tmp_path / "exact" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    vectors_file = tmp_path / "exact" / manifest["data"] / "vectors.npy"
    vectors_file.write_bytes(vectors_file.read_bytes()[:-100])  # truncated
    with pytest.raises(IndexFileError, match="bytes, the manifest says"):
        load_index(tmp_path / "exact")

    manifest_path.write_text("{not json")
    with pytest.raises(IndexFileError, match="unreadable"):
        load_index(tmp_path / "exact")
    manifest_path.write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(IndexFileError, match="format 99"):
        load_index(tmp_path / "exact")


def test_garbage_faiss_file_raises_index_file_error(tmp_path: Path) -> None:
    index, _, _ = filled(ApproximateIndex, 100)
    index.save(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    faiss_file = tmp_path / manifest["data"] / "index.faiss"
    size = faiss_file.stat().st_size
    faiss_file.write_bytes(b"\x07" * size)  # same size, wrong content
    with pytest.raises(IndexFileError, match="index.faiss"):
        load_index(tmp_path)


def test_loading_for_another_model_dim_or_kind_raises(tmp_path: Path) -> None:
    index, _, _ = filled(ExactIndex, 20)
    index.save(tmp_path)
    with pytest.raises(IndexFileError, match="model 'test-model', expected 'clip'"):
        load_index(tmp_path, model="clip")
    with pytest.raises(IndexFileError, match="dim 32, expected 512"):
        load_index(tmp_path, dim=512)
    with pytest.raises(IndexFileError, match="kind 'exact', expected 'hnsw'"):
        ApproximateIndex.load(tmp_path)


# ------------------------------------------------------------------ choosing, promotion


def test_choose_and_build_pick_the_kind_by_threshold() -> None:
    assert type(choose_index(100, DIM, threshold=100)) is ExactIndex
    assert type(choose_index(101, DIM, threshold=100)) is ApproximateIndex
    ids, vectors = names(50), clustered(50)
    assert type(build_index(ids, vectors, threshold=100)) is ExactIndex
    approximate = build_index(ids, vectors, threshold=10, model="m")
    assert type(approximate) is ApproximateIndex and len(approximate) == 50
    assert approximate.model == "m"
    empty = build_index([], np.zeros((0, 0)), dim=DIM)
    assert len(empty) == 0 and empty.dim == DIM
    with pytest.raises(ValueError, match="pass dim"):
        build_index([], np.zeros((0, 0)))


def test_promotion_past_the_threshold() -> None:
    index, _, _ = filled(ExactIndex, 300)
    index.synced_at = "2026-03-01T00:00:00+00:00"
    assert maybe_promote(index, threshold=300) is index
    index.upsert(names(1, start=300), clustered(1, seed=40))
    promoted = maybe_promote(index, threshold=300)
    assert type(promoted) is ApproximateIndex
    assert promoted.ids() == index.ids() and promoted.model == "test-model"
    assert promoted.synced_at == "2026-03-01T00:00:00+00:00"
    for query in clustered(10, seed=41):
        assert found(promoted.search(query, 5)) == found(index.search(query, 5))
    assert maybe_promote(promoted, threshold=10_000) is promoted  # never demoted


# ------------------------------------------------------------------------ threads


@pytest.mark.parametrize("kind", KINDS)
def test_searches_while_another_thread_writes(kind: type) -> None:
    index, ids, _ = filled(kind, 1000)
    stop = threading.Event()
    queries = clustered(50, seed=50)

    def search() -> int:
        rounds = 0
        while rounds == 0 or not stop.is_set():  # at least one round, overlapping the writes
            for query in queries:
                results = index.search(query, 8, exclude={ids[0]})
                assert len(results) == 8 and ids[0] not in found(results)
            rounds += 1
        return rounds

    with ThreadPoolExecutor(max_workers=3) as pool:
        searchers = [pool.submit(search) for _ in range(3)]
        try:
            for batch in range(20):
                new_ids = names(50, start=1000 + 50 * batch)
                index.upsert(new_ids, clustered(50, seed=100 + batch))
                index.upsert(ids[100 + batch:101 + batch], clustered(1, seed=200 + batch))
                index.remove(new_ids[:10])
            index.remove(ids[200:600])  # HNSW: past MAX_DEAD_SHARE, rebuilt while searches run
        finally:
            stop.set()
        assert all(searcher.result() >= 1 for searcher in searchers)  # re-raises their errors
    assert len(index) == 1000 + 20 * 40 - 400
    if kind is ApproximateIndex:
        assert index.dead == 0
