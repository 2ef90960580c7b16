"""Fixtures for the storage tests: each test gets an empty database, SQLite and PostgreSQL.

Test modules import what they use: `from tests.support_storage import *  # noqa: F403`.

PostgreSQL: one uniquely named database is created on the server at 127.0.0.1:5432 for the
test session (dropped at the end), and each test gets a fresh schema in it via search_path.
Set COMPOSER_TEST_PG to another server URL (psycopg2 form, with a database to connect to),
or to "" to skip the PostgreSQL runs. Tests skip with the reason if the server is unreachable.
"""

from __future__ import annotations

import io
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from storage.db import Database
from storage.documents import DocumentRepository
from storage.images import ImageStore

DEFAULT_PG_URLS = (
    "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg2://root@127.0.0.1:5432/test",
)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]

__all__ = ["BACKENDS", "database_url", "db", "empty_database_url", "image_bytes", "png_bomb",
           "postgres_server", "repo", "store"]


def _reachable_server() -> tuple[URL | None, str]:
    """The first server URL that accepts a connection, or None and why none did."""
    configured = os.environ.get("COMPOSER_TEST_PG")
    if configured == "":
        return None, "COMPOSER_TEST_PG is empty: PostgreSQL tests are turned off"
    candidates = (configured,) if configured else DEFAULT_PG_URLS
    errors = []
    for candidate in candidates:
        engine = create_engine(candidate, connect_args={"connect_timeout": 3})
        try:
            with engine.connect():
                return make_url(candidate), ""
        except Exception as error:  # any failure means "cannot use this server"
            errors.append(f"{candidate}: {str(error).splitlines()[0]}")
        finally:
            engine.dispose()
    return None, "PostgreSQL server unreachable (" + "; ".join(errors) + ")"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[URL]:
    """A fresh, uniquely named database on the server for this test session."""
    server, why = _reachable_server()
    if server is None:
        pytest.skip(why)
    name = f"composer_storage_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _postgres_schema_url(server: URL) -> Iterator[str]:
    """A new schema in the session's database, made the default through search_path."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = server.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no tables), once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'composer.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    yield from _postgres_schema_url(server)


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """Alias kept short for tests that only need a URL."""
    return empty_database_url


@pytest.fixture
def db(empty_database_url: str) -> Iterator[Database]:
    """A migrated Database on an empty database, disposed after the test."""
    database = Database(empty_database_url)
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def repo(db: Database) -> DocumentRepository:
    """A DocumentRepository on the test database."""
    return DocumentRepository(db)


@pytest.fixture
def store(db: Database, tmp_path: Path) -> ImageStore:
    """An ImageStore on the test database with files under tmp_path/images."""
    return ImageStore(db, tmp_path / "images")


def image_bytes(format: str = "PNG", size: tuple[int, int] = (16, 12),
                color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A small real image encoded by Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=format)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    data = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


def photo_bytes(name: str, scale: float = 1.0) -> bytes:
    """One of scikit-image's sample photos (e.g. "chelsea.png") as PNG bytes, maybe scaled."""
    import importlib.util
    import io

    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
