"""The database: one engine, sessions that commit or roll back, and schema migrations.

SQLite and PostgreSQL are both supported. For SQLite the engine turns on foreign keys (off by
default there, and the cascades depend on them) and WAL mode for files (readers do not block
the writer). `migrate()` runs Alembic's `upgrade head` in-process, under a lock, so that two
processes starting at once do not both create the tables.
"""

from __future__ import annotations

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

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
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
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if _is_sqlite_memory(url):
        # One shared connection, or every checkout would see a different empty database.
        engine = create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    wal = not _is_sqlite_memory(url)

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


class Database:
    """The app's database: `.engine`, `.session()`, `.migrate()`, `.dispose()`."""

    def __init__(self, url: str | URL) -> None:
        """Create the engine for a SQLAlchemy URL (nothing is connected or created yet)."""
        self.url = make_url(url)
        self.engine = _create_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        """The backend's name: "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @staticmethod
    def open(settings: Settings) -> Database:
        """Create the data directories, connect to `settings.database_url` and migrate it."""
        settings.ensure_dirs()
        url = make_url(settings.database_url)
        if url.get_backend_name() == "sqlite" and not _is_sqlite_memory(url):
            Path(url.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        database = Database(url)
        database.migrate()
        return database

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A Session that commits when the block ends and rolls back if it raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
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
        with self._migration_connection() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def current_revision(self) -> str | None:
        """The migration the database is at, or None for an empty database."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

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
