"""Image vectors in PostgreSQL with the pgvector extension: the index lives in the database.

When the app runs on PostgreSQL and the server has pgvector, vectors can be searched where
they are stored, shared by every app process, with no index file to keep in sync. It keeps
the VectorIndex contract (contract.py): `upsert`, `remove`, `search(query, k, exclude=,
allowed=)`, `save()`, `len()`, `in`, `ids()`, `dim`, `model`, `synced_at`.

One table per embedder model, `image_vectors_<model slug>_<hash>` (a safe identifier however
the model is named), with `image_id text primary key, embedding vector(dim)` and an HNSW
index on inner product (`vector_ip_ops`; vectors are unit length, so that is cosine). The
table is created here, not by an Alembic migration: its column type depends on the model's
dim and on an extension that many servers lack. Filters (`exclude`, `allowed`) are SQL
conditions. pgvector's HNSW applies them after the graph walk, so a filtered query may find
fewer than k rows; it then runs again as an exact scan of the matching rows, as does any
query whose `allowed` set is small.
"""

from __future__ import annotations

import hashlib
import logging
import re

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from composer.retrieval.contract import SMALL_ALLOWED, check_batch, check_query
from storage.db import Database

log = logging.getLogger(__name__)

TABLE_PREFIX = "image_vectors_"
STATE_TABLE = "image_vector_state"  # per model: dim and how far the table is synced
MAX_HNSW_DIM = 2000  # pgvector's limit for an HNSW index on `vector`
MAX_EF_SEARCH = 1000  # pgvector's limit for hnsw.ef_search
# pgvector's index defaults (m=16, ef_construction=64) need a wider search beam than FAISS
# with M=32: recall@8 on 3000 clustered vectors was 0.87 at 40 (pgvector's default), 0.94 at
# 64, 0.99 at 128 (1.5 ms a query), 1.0 at 400 (4 ms).
PG_EF_SEARCH = 128
WRITE_CHUNK = 1000


def pgvector_available(db: Database) -> bool:
    """Whether `db` can hold a PgVectorIndex: PostgreSQL with the `vector` extension.

    Creates the extension when the server offers it and it is not installed yet. Returns
    False, and logs why, on SQLite, on a server without the extension, or when this user
    may not create it (then a superuser can run `CREATE EXTENSION vector` once).
    """
    if db.dialect != "postgresql":
        log.info("pgvector unavailable: the database is %s, not PostgreSQL", db.dialect)
        return False
    try:
        with db.engine.connect() as connection:
            row = connection.execute(text(
                "SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'"
            )).first()
    except SQLAlchemyError as error:
        log.warning("pgvector unavailable: could not list the server's extensions (%s)",
                    _first_line(error))
        return False
    if row is None:
        log.info("pgvector unavailable: the server has no `vector` extension installed "
                 "(install pgvector on the server to use it)")
        return False
    if row[0] is not None:
        return True
    try:
        with db.engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except SQLAlchemyError as error:
        log.warning("pgvector unavailable: CREATE EXTENSION vector failed (%s); a superuser "
                    "can run `CREATE EXTENSION vector` in this database", _first_line(error))
        return False
    return True


def table_name(model: str) -> str:
    """The table holding `model`'s vectors: a lowercase identifier under 64 characters.

    A slug of the name keeps it readable; a hash of the full name keeps two models apart
    whose slugs collide ("a/b" and "a-b").
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model={model!r} is empty: pass the embedder's name")
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:32]
    digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:8]
    return f"{TABLE_PREFIX}{slug}_{digest}" if slug else f"{TABLE_PREFIX}{digest}"


def drop_vectors(db: Database, model: str) -> None:
    """Drop `model`'s table and its index (to rebuild for a new dim, or forget a model)."""
    with db.engine.begin() as connection:
        connection.execute(text(f'DROP TABLE IF EXISTS "{table_name(model)}"'))
        if connection.execute(text("SELECT to_regclass(:name)"),
                              {"name": STATE_TABLE}).scalar() is not None:
            connection.execute(text(f"DELETE FROM {STATE_TABLE} WHERE model = :model"),
                               {"model": model})


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _literal(vector: np.ndarray) -> str:
    """pgvector's text form, '[0.1,0.2,...]'; 9 significant digits round-trip float32."""
    return "[" + ",".join(f"{value:.9g}" for value in vector.tolist()) + "]"


class PgVectorIndex:
    """`model`'s vectors in PostgreSQL with pgvector; see the module docstring.

    Safe to share between threads and processes: every call is its own transaction.
    """

    def __init__(self, db: Database, model: str, dim: int, *,
                 ef_search: int = PG_EF_SEARCH) -> None:
        """Open (creating if needed) the table for `model`; raises RuntimeError when the
        database lacks pgvector and ValueError when the table exists with another dim."""
        if not isinstance(dim, int) or not 1 <= dim <= MAX_HNSW_DIM:
            raise ValueError(f"dim={dim!r} must be an int from 1 to {MAX_HNSW_DIM} "
                             "(pgvector's HNSW limit)")
        if not pgvector_available(db):
            raise RuntimeError("this database has no pgvector extension (see the log for why):"
                               " check pgvector_available(db) first and use the in-process "
                               "index (composer/retrieval/choose.py) otherwise")
        self.db = db
        self.model = model
        self.dim = dim
        self.ef_search = ef_search
        self.table = table_name(model)
        self.synced_at: str | None = None
        self._ensure_table()

    def save(self, folder: object = None) -> None:
        """Record `synced_at` (the newest stored vector copied in) for the next process.

        `folder` is ignored: the vectors are already in the database. Mirrors the in-process
        indexes' save(), so the retriever treats both alike.
        """
        with self.db.engine.begin() as connection:
            connection.execute(text(
                f"INSERT INTO {STATE_TABLE} (model, dim, synced_at) VALUES (:model, :dim, :at) "
                "ON CONFLICT (model) DO UPDATE SET dim = :dim, synced_at = :at"
            ), {"model": self.model, "dim": self.dim, "at": self.synced_at})

    def __repr__(self) -> str:
        return f"PgVectorIndex(table={self.table!r}, dim={self.dim})"

    def _ensure_table(self) -> None:
        """Create the table and its HNSW index once; check the dim of an existing table."""
        key = int(hashlib.sha256(self.table.encode()).hexdigest()[:15], 16)
        with self.db.engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            stored = connection.execute(text(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = to_regclass(:table) AND attname = 'embedding'"
            ), {"table": self.table}).scalar()
            if stored is not None and stored != self.dim:
                raise ValueError(
                    f"table {self.table} holds vectors of dim {stored}, not {self.dim}: the "
                    f"model {self.model!r} changed its dim; call drop_vectors(db, model) and "
                    "re-index"
                )
            connection.execute(text(
                f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (model text PRIMARY KEY, "
                "dim integer NOT NULL, synced_at text)"))
            if stored is None:
                connection.execute(text(
                    f'CREATE TABLE "{self.table}" (image_id text PRIMARY KEY, '
                    f"embedding vector({self.dim}) NOT NULL)"
                ))
                connection.execute(text(
                    f'CREATE INDEX "{self.table}_hnsw" ON "{self.table}" '
                    "USING hnsw (embedding vector_ip_ops)"
                ))

    def __len__(self) -> int:
        with self.db.engine.connect() as connection:
            return int(connection.execute(text(f'SELECT count(*) FROM "{self.table}"')).scalar())

    def __contains__(self, image_id: object) -> bool:
        with self.db.engine.connect() as connection:
            return connection.execute(
                text(f'SELECT 1 FROM "{self.table}" WHERE image_id = :id'), {"id": image_id}
            ).first() is not None

    def ids(self) -> set[str]:
        """The ids that have a vector in the table."""
        with self.db.engine.connect() as connection:
            return set(connection.execute(text(f'SELECT image_id FROM "{self.table}"')).scalars())

    def upsert(self, ids: list[str], vectors: np.ndarray) -> None:
        """Insert vectors for new ids and replace them for known ones (one transaction)."""
        ids, matrix = check_batch(ids, vectors, self.dim)
        statement = text(
            f'INSERT INTO "{self.table}" (image_id, embedding) VALUES (:id, CAST(:v AS vector)) '
            "ON CONFLICT (image_id) DO UPDATE SET embedding = EXCLUDED.embedding"
        )
        with self.db.engine.begin() as connection:
            for start in range(0, len(ids), WRITE_CHUNK):
                rows = [{"id": image_id, "v": _literal(vector)} for image_id, vector
                        in zip(ids[start:start + WRITE_CHUNK], matrix[start:start + WRITE_CHUNK])]
                connection.execute(statement, rows)

    def remove(self, ids: list[str]) -> None:
        """Delete these ids' vectors; unknown ids are ignored."""
        ids = list(ids)
        with self.db.engine.begin() as connection:
            for start in range(0, len(ids), WRITE_CHUNK):
                connection.execute(text(f'DELETE FROM "{self.table}" WHERE image_id = ANY(:ids)'),
                                   {"ids": ids[start:start + WRITE_CHUNK]})

    def search(self, query: np.ndarray, k: int, *, exclude: set[str] | frozenset[str] = frozenset(),
               allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """The k ids whose vectors score highest with `query` (inner product), best first.

        `exclude`: ids never returned; `allowed`: when not None, the only candidates. Fewer
        than k come back only when fewer than k rows pass the filters.
        """
        row = check_query(query, k, self.dim)[0]
        if allowed is not None:
            allowed = set(allowed) - set(exclude)
            if not allowed:
                return []
        exact = allowed is not None and len(allowed) < SMALL_ALLOWED
        found = self._query(row, k, exclude, allowed, exact=exact)
        if len(found) < k and not exact:
            found = self._query(row, k, exclude, allowed, exact=True)
        return found

    def _query(self, row: np.ndarray, k: int, exclude: set[str] | frozenset[str],
               allowed: set[str] | None, *, exact: bool) -> list[tuple[str, float]]:
        """One search: through the HNSW index, or (`exact`) a scan of the matching rows."""
        conditions, parameters = [], {"q": _literal(row), "k": k}
        if exclude:
            conditions.append("NOT (image_id = ANY(:exclude))")
            parameters["exclude"] = sorted(exclude)
        if allowed is not None:
            conditions.append("image_id = ANY(:allowed)")
            parameters["allowed"] = sorted(allowed)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        statement = text(
            f'SELECT image_id, -(embedding <#> CAST(:q AS vector)) AS score FROM "{self.table}" '
            f"{where} ORDER BY embedding <#> CAST(:q AS vector) LIMIT :k"
        )
        ef = min(MAX_EF_SEARCH, max(self.ef_search, k + len(exclude)))
        with self.db.engine.begin() as connection:
            if exact:  # no index scan: the HNSW index is out, the filtered rows are all scored
                connection.execute(text("SELECT set_config('enable_indexscan', 'off', true)"))
            else:
                connection.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"),
                                   {"ef": str(ef)})
            return [(image_id, float(score))
                    for image_id, score in connection.execute(statement, parameters)]


def open_index(db: Database, model: str) -> PgVectorIndex | None:
    """The PgVectorIndex saved for `model`, with its `synced_at`, or None when there is none."""
    with db.engine.connect() as connection:
        if connection.execute(text("SELECT to_regclass(:name)"),
                              {"name": STATE_TABLE}).scalar() is None:
            return None
        row = connection.execute(text(f"SELECT dim, synced_at FROM {STATE_TABLE} "
                                      "WHERE model = :model"), {"model": model}).first()
    if row is None:
        return None
    index = PgVectorIndex(db, model, int(row[0]))
    index.synced_at = row[1]
    return index
