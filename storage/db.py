"""The database: one engine, sessions that commit or roll back, and schema migrations.

SQLite and PostgreSQL are both supported. For SQLite the engine turns on foreign keys (off by
default there, and the cascades depend on them) and WAL mode for files (readers do not block
the writer). `migrate()` runs Alembic's `upgrade head` in-process, under a lock, so that two
processes starting at once do not both create the tables; turning on WAL is retried while
another process is doing it (SQLite does not wait for that one).

A SQLite file this process cannot write (a read-only file or data directory) is opened
read-only, without WAL or migrations, so that listing and exporting still work. Storage faults
(read-only, disk full, server unreachable) become one-line StorageErrors (storage/faults.py).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, StaticPool

from composer.config import Settings
from composer.types import StorageError
from storage.faults import (
    database_faults,
    database_name,
    directory_error,
    read_only_error,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
WAL_RETRY_S = 0.01  # pause between tries to turn on WAL while another process does
# An arbitrary constant naming this app's migration lock among PostgreSQL advisory locks.
MIGRATION_LOCK_KEY = 0x1C0_5E_2024


def alembic_config() -> Config:
    """An Alembic Config pointing at `storage/migrations`; no alembic.ini is needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration's revision id (what `migrate()` brings a database to)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "storage/migrations/versions holds no migration"
    return head


def _is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _sqlite_on_connect(dbapi_connection: Any, wal: bool, foreign_keys: bool) -> None:
    cursor = dbapi_connection.cursor()
    if foreign_keys:
        cursor.execute("PRAGMA foreign_keys=ON")
    if wal:
        _set_wal(cursor)
    cursor.close()


def _set_wal(cursor: Any) -> None:
    """Turn on WAL, retrying while another process is turning it on (up to the busy timeout).

    Switching a new file to WAL reads its header, then upgrades to a write to set the WAL
    flag; SQLite answers "database is locked" at once, without waiting for the busy timeout,
    when another connection started that write first (two processes migrating a new database
    at the same time). Once that one is done the file is in WAL and the pragma is a no-op.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(WAL_RETRY_S)


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory SQLite."""
    if url.get_backend_name() != "sqlite" or _is_sqlite_memory(url):
        return None
    return Path(url.database or "").expanduser()


def _cannot_write(file: Path) -> bool:
    """True when an existing SQLite file, or the folder its journal goes in, is not writable."""
    return file.exists() and not (os.access(file, os.W_OK) and os.access(file.parent, os.W_OK))


def _read_only_creator(file: Path) -> Any:
    """Opens `file` read-only.

    In a folder this process cannot write, SQLite cannot create the WAL index (-shm) beside
    the file. With no pending WAL the file is then opened immutable (no locks, no WAL); with
    a WAL and its index already there, SQLite reads both read-only; a WAL without its index
    cannot be read without writing, which StorageError says.
    """
    uri = file.absolute().as_uri() + "?mode=ro"
    wal, index = Path(f"{file}-wal"), Path(f"{file}-shm")
    if not os.access(file.parent, os.W_OK):
        if not wal.exists() or wal.stat().st_size == 0:
            uri += "&immutable=1"
        elif not index.exists():
            raise StorageError(f"the database {file} is read-only and its last changes are "
                               f"still in {wal.name}: open it once with write access, or "
                               "give a writable --home or COMPOSER_HOME")
    return lambda: sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S,
                                   check_same_thread=False)


def _create_engine(url: URL, read_only: bool = False) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    file = sqlite_file(url)
    if read_only and file is not None:
        engine = create_engine(url, creator=_read_only_creator(file))
    elif _is_sqlite_memory(url):
        # One shared connection, or every checkout would see a different empty database.
        engine = create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    wal = not _is_sqlite_memory(url) and not read_only

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _sqlite_on_connect(dbapi_connection, wal=wal, foreign_keys=True)

    return engine


def _sqlite_migration_engine(url: URL) -> Engine:
    """An engine whose transactions start with BEGIN IMMEDIATE: the write lock is taken first.

    Foreign keys stay off here, as SQLite's docs ask for schema changes (a batch migration
    that copies and drops a table would otherwise cascade deletes into its children).
    """
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below decide
        _sqlite_on_connect(dbapi_connection, wal=True, foreign_keys=False)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _note_write(session: Session, _context: Any) -> None:
    session.info["wrote"] = True


def _note_write_statement(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info["wrote"] = True


class Database:
    """The app's database: `.engine`, `.session()`, `.migrate()`, `.dispose()`.

    `.writes` counts the sessions of this process that committed a change: a cache of what the
    database holds can skip asking again while it has not moved.
    """

    def __init__(self, url: str | URL, read_only: bool = False) -> None:
        """Create the engine for a SQLAlchemy URL (nothing is connected or created yet).

        read_only=True opens a SQLite file read-only: writes raise StorageError.
        """
        self.url = make_url(url)
        self.read_only = read_only
        self.engine = _create_engine(self.url, read_only)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.writes = 0
        event.listen(self._sessions, "after_flush", _note_write)
        event.listen(self._sessions, "do_orm_execute", _note_write_statement)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        """The backend's name: "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @staticmethod
    def open(settings: Settings) -> Database:
        """Create the data directories, connect to `settings.database_url` and migrate it.

        An existing SQLite file that cannot be written (read-only file or folder) is opened
        read-only instead, and must already be at the newest migration. StorageError names
        the path or URL when the folder cannot be created or the server cannot be reached.
        """
        url = make_url(settings.database_url)
        file = sqlite_file(url)
        read_only = file is not None and _cannot_write(file)
        if not read_only:
            settings.ensure_dirs()
            if file is not None:
                try:
                    file.parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise directory_error(file.parent, error) from error
        database = Database(url, read_only=read_only)
        if read_only:
            database._check_read_only_schema()
        else:
            database.migrate()
        return database

    def require_writable(self) -> None:
        """StorageError naming the database when it was opened read-only."""
        if self.read_only:
            raise read_only_error(database_name(self.url))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A Session that commits when the block ends and rolls back if it raises.

        A read-only, full or unreachable database raises StorageError (storage/faults.py).
        """
        with database_faults(self.url):
            session = self._sessions()
            try:
                yield session
                session.commit()
                if session.info.pop("wrote", False):
                    self.writes += 1
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    def migrate(self) -> None:
        """Bring the schema to the newest migration; a no-op when it is already there.

        The whole upgrade runs in one transaction that first takes a lock (SQLite: BEGIN
        IMMEDIATE; PostgreSQL: an advisory lock), so a second process starting at the same
        time waits, then finds the schema current and does nothing.
        """
        config = alembic_config()
        with database_faults(self.url), self._migration_connection() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def current_revision(self) -> str | None:
        """The migration the database is at, or None for an empty database."""
        with database_faults(self.url), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def _check_read_only_schema(self) -> None:
        """A read-only database cannot be migrated: it must already be at the newest one."""
        current, head = self.current_revision(), head_revision()
        if current != head:
            found = f"schema {current}" if current else "no tables"
            raise StorageError(f"the database {database_name(self.url)} is read-only and has "
                               f"{found}, but this version needs schema {head}: open it once "
                               "with write access so that it is upgraded, or give a writable "
                               "--home or COMPOSER_HOME")

    def dispose(self) -> None:
        """Close every pooled connection (call when the app shuts down or a test ends)."""
        self.engine.dispose()

    @contextmanager
    def _migration_connection(self) -> Iterator[Connection]:
        if self.dialect == "sqlite" and not _is_sqlite_memory(self.url):
            engine = _sqlite_migration_engine(self.url)
            try:
                with engine.begin() as connection:
                    yield connection
            finally:
                engine.dispose()
            return
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            yield connection
