"""Alembic environment: runs migrations on the connection or URL the caller configured."""

from alembic import context

from amphorae.db.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from amphorae.db.engine import get_engine

        # SQLite: the write lock from BEGIN on (BEGIN IMMEDIATE). Services sharing an
        # embedded database each upgrade it at start; a deferred BEGIN reads the version
        # and then needs the write lock, which fails at once ("database is locked")
        # while another one migrates, where an immediate BEGIN waits its turn.
        engine = get_engine(config.get_main_option("sqlalchemy.url"))
        with engine.execution_options(sqlite_immediate=True).connect() as conn:
            _migrate(conn)
    else:
        _migrate(connection)


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
