"""Alembic environment: runs the migrations on the connection `Database.migrate()` hands in.

`Database.migrate()` opens the connection, takes the lock that keeps two starting processes
from migrating at once, and passes the connection as `config.attributes["connection"]`.
Run from the `alembic` command line instead (with `sqlalchemy.url` set), this file opens its
own connection for the URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from storage.tables import Base

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    """Configure Alembic for one connection and apply the pending migrations in order."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Migrate the given connection, or one opened for the configured URL."""
    if context.is_offline_mode():
        context.configure(url=context.config.get_main_option("sqlalchemy.url"),
                          target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url (alembic -x or an ini file), or call "
                         "storage.db.Database(url).migrate() instead")
    engine = create_engine(url)
    try:
        with engine.begin() as own_connection:
            run_on(own_connection)
    finally:
        engine.dispose()


main()
