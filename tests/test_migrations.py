"""Migrations and Database on SQLite and PostgreSQL: schema = ORM metadata, idempotent, locked."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, inspect, text

import storage.db
from composer.config import Settings
from composer.types import TextBlock
from storage.db import Database, alembic_config, head_revision
from storage.documents import DocumentRepository
from storage.images import ImageStore
from storage.tables import Base, DocumentRow
from tests.support_storage import *  # noqa: F403

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"alembic_version", "blocks", "documents", "image_embeddings", "image_text", "images",
          "library_version", "revisions", "changes", "feedback", "preference_pairs"}


def _diffs(database: Database, metadata: MetaData = Base.metadata) -> list[Any]:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def _tables(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def test_migrations_produce_exactly_the_orm_schema(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    try:
        assert database.current_revision() is None and _tables(database) == set()
        database.migrate()
        assert database.current_revision() == head_revision()
        assert _tables(database) == TABLES
        assert _diffs(database) == []
        # the comparison is not vacuous: a table the database lacks is reported
        extra = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(extra)
        Table("not_migrated", extra, Column("id", Integer, primary_key=True))
        assert [diff[0] for diff in _diffs(database, extra)] == ["add_table"]
    finally:
        database.dispose()


def test_migrate_twice_is_a_noop(db: Database) -> None:
    repo = DocumentRepository(db)
    document = repo.create("kept", "i", "en", {})
    repo.append_blocks(document.id, [TextBlock("still here")])
    db.migrate()
    db.migrate()
    assert db.current_revision() == head_revision()
    assert repo.get(document.id).blocks == repo.get(document.id).blocks
    assert repo.get(document.id).blocks[0].text == "still here"
    assert _diffs(db) == []


def test_concurrent_migrations(empty_database_url: str) -> None:
    """Three processes migrating one empty database at once all succeed."""
    script = ("import sys; from storage.db import Database; "
              "db = Database(sys.argv[1]); db.migrate(); db.dispose()")
    processes = [subprocess.Popen([sys.executable, "-c", script, empty_database_url], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], errors
    database = Database(empty_database_url)
    try:
        assert database.current_revision() == head_revision() and _diffs(database) == []
    finally:
        database.dispose()


class _RacingCursor:
    """A cursor whose first pragmas meet another process turning on WAL: "locked" at once."""

    def __init__(self, locked_times: int, message: str = "database is locked") -> None:
        self.locked_times, self.message, self.tries = locked_times, message, 0

    def execute(self, statement: str) -> None:
        self.tries += 1
        if self.tries <= self.locked_times:
            raise sqlite3.OperationalError(self.message)


def test_turning_on_wal_retries_while_another_process_does(monkeypatch) -> None:
    """SQLite answers "locked" without waiting when two processes switch a new file to WAL
    (test_concurrent_migrations failed so once in a while): the pragma is tried again."""
    monkeypatch.setattr(storage.db, "WAL_RETRY_S", 0.0)
    racing = _RacingCursor(locked_times=3)
    storage.db._set_wal(racing)
    assert racing.tries == 4
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        storage.db._set_wal(_RacingCursor(locked_times=1, message="disk I/O error"))
    monkeypatch.setattr(storage.db, "SQLITE_BUSY_TIMEOUT_S", -1.0)  # waited long enough
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        storage.db._set_wal(_RacingCursor(locked_times=1))


def test_migration_files_are_one_ordered_chain() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    chain = list(reversed(list(scripts.walk_revisions())))
    assert chain[0].down_revision is None
    for number, script in enumerate(chain, start=1):
        assert script.revision == f"{number:04d}"
        assert Path(script.path).name.startswith(f"{number:04d}_")
        if number > 1:
            assert script.down_revision == f"{number - 1:04d}"


def test_session_commits_or_rolls_back(db: Database) -> None:
    repo = DocumentRepository(db)
    document = repo.create("before", "i", "en", {})
    with pytest.raises(RuntimeError):
        with db.session() as session:
            session.get(DocumentRow, document.id).title = "changed"  # type: ignore[union-attr]
            session.flush()
            raise RuntimeError("boom")
    assert repo.get(document.id).title == "before"
    with db.session() as session:
        session.get(DocumentRow, document.id).title = "after"  # type: ignore[union-attr]
    assert repo.get(document.id).title == "after"


def test_timestamps_are_aware_utc(db: Database) -> None:
    document = DocumentRepository(db).create("t", "i", "en", {})
    with db.session() as session:
        row = session.get(DocumentRow, document.id)
        assert row is not None
        assert row.created_at.tzinfo == timezone.utc
        assert row.updated_at.utcoffset() is not None


def test_sqlite_pragmas(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        database.migrate()
        with database.engine.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        database.dispose()


def test_sqlite_in_memory() -> None:
    database = Database("sqlite://")
    try:
        database.migrate()
        database.migrate()
        repo = DocumentRepository(database)
        document = repo.create("memory", "i", "en", {})
        assert repo.get(document.id).title == "memory"
    finally:
        database.dispose()


def test_open_creates_directories_and_migrates(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path / "home",
                                 database_url=f"sqlite:///{tmp_path / 'nested' / 'db' / 'c.db'}")
    database = Database.open(settings)
    try:
        assert settings.images_dir.is_dir() and settings.cache_dir.is_dir()
        assert (tmp_path / "nested" / "db" / "c.db").exists()
        assert database.current_revision() == head_revision()
        assert "sqlite" in repr(database) and database.dialect == "sqlite"
    finally:
        database.dispose()


def _migrate(database: Database, revision: str, *, down: bool = False) -> None:
    """Upgrade (or downgrade) to one revision, on the connection `migrate()` would use."""
    config = alembic_config()
    with database._migration_connection() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def _columns(database: Database, table: str) -> set[str]:
    with database.engine.connect() as connection:
        return {column["name"] for column in inspect(connection).get_columns(table)}


def test_migration_0004_keeps_existing_rows_up_and_down(empty_database_url: str,
                                                        tmp_path: Path) -> None:
    image_id = "ab" * 32
    database = Database(empty_database_url)
    try:
        _migrate(database, "0003")
        doc_id = "d" * 32
        with database.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO documents (id, slug, title, instruction, language, status, "
                "options, version, created_at, updated_at) VALUES (:id, 'slug', 't', 'i', 'en', "
                "'done', '{}', 1, '2024-01-02 03:04:05', '2024-01-02 03:04:05')"), {"id": doc_id})
            connection.execute(text(
                "INSERT INTO images (id, path, format, width, height, bytes, caption, source, "
                "license, attribution, created_at) VALUES (:id, :path, 'PNG', 4, 3, 99, "
                "'old caption', 'src', 'CC0', 'me', '2024-01-02 03:04:05')"),
                {"id": image_id, "path": f"ab/{image_id}.png"})
            connection.execute(text(
                "INSERT INTO image_embeddings (image_id, model, dim, vector) "
                "VALUES (:id, 'mini', 2, :vector)"),
                {"id": image_id, "vector": bytes(8)})
            connection.execute(text(
                "INSERT INTO blocks (document_id, position, kind, section, text, caption, "
                "image_id, candidates, created_at, updated_at) VALUES (:doc, 0, 'image', 0, "
                "'', 'c', :id, '[]', '2024-01-02 03:04:05', '2024-01-02 03:04:05')"),
                {"doc": doc_id, "id": image_id})

        _migrate(database, "head")
        assert database.current_revision() == head_revision() and _diffs(database) == []
        store = ImageStore(database, tmp_path / "images")
        image = store.get(image_id)
        assert (image.caption, image.phash, image.caption_source) == ("old caption", "", "")
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT phash FROM images")).scalar() is None
            kind, created = connection.execute(
                text("SELECT kind, created_at FROM image_embeddings")).one()
        assert (kind, created) == ("caption", None)
        assert store.embedding_state("mini") == (1, None)
        assert store.embeddings_since("mini", None)[0] == [image_id]

        _migrate(database, "0003", down=True)
        assert database.current_revision() == "0003"
        assert not {"phash", "caption_source"} & _columns(database, "images")
        assert not {"kind", "created_at"} & _columns(database, "image_embeddings")
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT caption FROM images")).scalar() == "old caption"
            assert connection.execute(text("SELECT count(*) FROM image_embeddings")).scalar() == 1
            assert connection.execute(text("SELECT image_id FROM blocks")).scalar() == image_id

        _migrate(database, "head")
        assert _diffs(database) == [] and store.get(image_id).caption == "old caption"
    finally:
        database.dispose()


def test_library_version_row_exists_after_migrating(db: Database) -> None:
    from storage.images import ImageStore

    assert ImageStore(db, "/nonexistent").version() == 0
