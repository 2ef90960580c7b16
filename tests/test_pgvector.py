"""composer/retrieval/pgvector.py: detection everywhere, and the index on a server with pgvector.

The server with pgvector: COMPOSER_TEST_PGVECTOR (a psycopg2 URL) when set, else a throwaway
PostgreSQL 16 + pgvector started from the `pgserver` wheel (requirements-dev.txt) in a
temporary folder, stopped and deleted after the module. Running as root, pgserver runs the
server as a system user `pgserver` that it creates once (PostgreSQL refuses to run as
root). Without either, those tests skip with the reason.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from composer.retrieval.pgvector import (
    PgVectorIndex,
    drop_vectors,
    pgvector_available,
    table_name,
)
from storage.db import Database
from tests.support_storage import postgres_server
from tests.test_vector_index import DIM, brute_force, clustered, found, names

__all__ = ["postgres_server"]  # the fixture, re-exported for pytest



# ------------------------------------------------------------ detection, no pgvector needed


def test_sqlite_has_no_pgvector(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    db = Database(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        with caplog.at_level(logging.INFO, logger="composer.retrieval.pgvector"):
            assert pgvector_available(db) is False
        assert "not PostgreSQL" in caplog.text
        with pytest.raises(RuntimeError, match="no pgvector extension"):
            PgVectorIndex(db, "model", DIM)
    finally:
        db.dispose()


@pytest.mark.postgres
def test_detection_on_the_local_server_matches_its_extensions(postgres_server: URL) -> None:
    """The local server (no pgvector here): False with a reason; True wherever it exists."""
    db = Database(postgres_server)
    try:
        with db.engine.connect() as connection:
            offered = connection.execute(text(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
        assert pgvector_available(db) is (offered is not None)
    finally:
        db.dispose()


def test_table_names_are_safe_and_distinct() -> None:
    models = ["sentence-transformers/all-MiniLM-L6-v2", 'Robert"); DROP TABLE images;--',
              "a/b", "a-b", "ÜberModell", "x" * 300]
    tables = [table_name(model) for model in models]
    for table in tables:
        assert re.fullmatch(r"[a-z0-9_]{1,58}", table), table
    assert len(set(tables)) == len(tables)
    assert table_name("a/b") == table_name("a/b")
    with pytest.raises(ValueError, match="empty"):
        table_name("  ")


# ------------------------------------------------------------------ with a pgvector server


@pytest.fixture(scope="module")
def pgvector_url() -> Iterator[str]:
    """A database URL on a server that has pgvector (see the module docstring)."""
    configured = os.environ.get("COMPOSER_TEST_PGVECTOR")
    if configured:
        yield configured
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            import pgserver
    except ImportError:
        pytest.skip("no pgvector server: set COMPOSER_TEST_PGVECTOR or "
                    "`pip install -r requirements-dev.txt` (pgserver)")
    folder = tempfile.mkdtemp(prefix="composer-pgvector-")
    try:
        server = pgserver.get_server(folder, cleanup_mode="delete")
    except (OSError, RuntimeError, AssertionError, subprocess.SubprocessError) as error:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pgserver could not start PostgreSQL: {error}")
    try:
        yield f"postgresql+psycopg2://postgres@/postgres?host={folder}"
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def vector_db(pgvector_url: str) -> Iterator[Database]:
    db = Database(pgvector_url)
    if not pgvector_available(db):
        db.dispose()
        pytest.skip(f"{pgvector_url}: the server has no pgvector extension")
    try:
        yield db
    finally:
        db.dispose()


def fill(db: Database, model: str) -> tuple[PgVectorIndex, list[str], np.ndarray]:
    """An index of 3000 clustered vectors under `model` (replacing any left over)."""
    drop_vectors(db, model)
    index = PgVectorIndex(db, model, DIM)
    ids, vectors = names(3000), clustered(3000)
    index.upsert(ids, vectors)
    return index, ids, vectors


@pytest.fixture
def filled(vector_db: Database, request: pytest.FixtureRequest
           ) -> Iterator[tuple[PgVectorIndex, list[str], np.ndarray]]:
    """An index of 3000 clustered vectors under a model name unique to the test (to change)."""
    model = f"test/{request.node.name}"
    yield fill(vector_db, model)
    drop_vectors(vector_db, model)


@pytest.fixture(scope="module")
def filled_once(pgvector_url: str) -> Iterator[tuple[PgVectorIndex, list[str], np.ndarray]]:
    """The same 3000 vectors, filled once for the tests that only read them (a fill takes
    seconds on a busy machine)."""
    db = Database(pgvector_url)
    try:
        if not pgvector_available(db):
            pytest.skip(f"{pgvector_url}: the server has no pgvector extension")
        yield fill(db, "test/read-only")
        drop_vectors(db, "test/read-only")
    finally:
        db.dispose()


def test_available_and_creates_the_table_with_an_hnsw_index(vector_db: Database) -> None:
    assert pgvector_available(vector_db) is True
    index = PgVectorIndex(vector_db, "test/created", DIM)
    with vector_db.engine.connect() as connection:
        definition = connection.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = :t AND indexname LIKE '%hnsw'"
        ), {"t": index.table}).scalar()
    assert "hnsw" in definition and "vector_ip_ops" in definition
    assert len(index) == 0 and index.search(clustered(1)[0], 4) == []
    drop_vectors(vector_db, "test/created")


def test_search_matches_brute_force(filled_once) -> None:
    index, ids, vectors = filled_once
    hits, queries = 0, clustered(30, seed=1)
    for query in queries:
        results = index.search(query, 8)
        assert len(results) == 8
        scores = [score for _, score in results]
        assert scores == sorted(scores, reverse=True)
        expected = vectors[[ids.index(i) for i in found(results)]] @ query
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
        hits += len(set(found(results)) & set(brute_force(ids, vectors, query, 8)))
    assert hits / (8 * len(queries)) >= 0.95


def test_exclude_still_returns_k_when_the_best_are_excluded(filled_once) -> None:
    index, ids, vectors = filled_once
    query = clustered(1, seed=5)[0]
    exclude = set(brute_force(ids, vectors, query, 200))
    results = found(index.search(query, 8, exclude=exclude))
    assert len(results) == 8 and not set(results) & exclude
    assert len(set(results) & set(brute_force(ids, vectors, query, 8, exclude=exclude))) >= 7


def test_allowed_small_is_exact_and_large_is_filtered(filled_once) -> None:
    index, ids, vectors = filled_once
    rng = np.random.default_rng(11)
    small = set(rng.choice(ids, 300, replace=False).tolist()) | {"not-in-index"}
    exclude = set(sorted(small)[:5])
    for query in clustered(5, seed=12):
        assert found(index.search(query, 8, allowed=small, exclude=exclude)) == brute_force(
            ids, vectors, query, 8, exclude=exclude, allowed=small)
    large = set(ids[: 2 * len(ids) // 3])
    for query in clustered(5, seed=13):
        results = found(index.search(query, 8, allowed=large))
        assert len(results) == 8 and set(results) <= large
    assert index.search(clustered(1)[0], 4, allowed=set()) == []


def test_upsert_replaces_and_remove_deletes(filled) -> None:
    index, ids, vectors = filled
    index.upsert([ids[10]], -vectors[10][None])
    assert len(index) == 3000
    assert found(index.search(-vectors[10], 1)) == [ids[10]]
    index.remove([ids[0], ids[1], "never-added"])
    assert len(index) == 2998 and ids[0] not in index and ids[2] in index
    assert ids[0] not in found(index.search(vectors[0], 5))
    assert index.ids() == set(ids[2:])


def test_reopening_keeps_vectors_and_checks_the_dim(filled_once, vector_db: Database) -> None:
    index, ids, _ = filled_once
    again = PgVectorIndex(vector_db, index.model, DIM)  # another connection pool
    assert len(again) == 3000 and ids[5] in again
    with pytest.raises(ValueError, match="dim 32, not 64"):
        PgVectorIndex(vector_db, index.model, 64)


def test_bad_input_is_rejected_before_the_database(filled_once) -> None:
    index, _, _ = filled_once
    with pytest.raises(ValueError, match=r"expected \(1, 32\)"):
        index.upsert(["x"], np.ones((1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="dim 32"):
        index.search(np.ones(8, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="from 1 to 2000"):
        PgVectorIndex(index.db, "test/too-wide", 4096)


# ---------------------------------------------------------- the retriever on pgvector


def test_retriever_keeps_its_vectors_in_pgvector(vector_db: Database, tmp_path) -> None:
    from composer.retrieval.retriever import Retriever
    from storage.images import ImageStore
    from tests.support_library import shared_embedder
    from tests.support_storage import photo_bytes

    vector_db.migrate()
    store = ImageStore(vector_db, tmp_path / "images")
    cat, _ = store.add(photo_bytes("chelsea.png"), caption="a tabby cat with green eyes")
    coffee, _ = store.add(photo_bytes("coffee.png"), caption="a cup of espresso coffee")
    embedder = shared_embedder()
    retriever = Retriever(store, embedder, vector_db=vector_db, index_dir=tmp_path / "unused")
    try:
        retriever.index()
        assert type(retriever._captions.index).__name__ == "PgVectorIndex"
        assert retriever.search("a kitten", k=1)[0].image_id == cat.id
        assert not (tmp_path / "unused").exists()  # nothing saved in files
        # Another process: it opens the same table, synced to where the first one was.
        store.update(coffee.id, caption="a red motorcycle in a garage")
        other = Retriever(store, embedder, vector_db=vector_db)
        other.index()
        assert other.search("a motorbike", k=1)[0].image_id == coffee.id
        assert other._captions.index.ids() == {cat.id, coffee.id}
        store.delete(cat.id)
        assert [c.image_id for c in other.search("a kitten", k=2)] == [coffee.id]
    finally:
        drop_vectors(vector_db, embedder.name)
