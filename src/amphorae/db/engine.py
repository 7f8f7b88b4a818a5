"""Engines and transactions for SQLite (WAL), PostgreSQL and MariaDB."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from amphorae.common import config

# A server that went away without closing its connections (host down, partition) is
# noticed within seconds, not after the kernel's two hours: libpq's connect timeout and
# TCP keepalives. A server that restarts refuses or drops connections at once.
POSTGRES_CONNECT_ARGS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
                         "keepalives_interval": 5, "keepalives_count": 3}


@functools.cache
def get_engine(url: str | None = None) -> Engine:
    url = url or config.database_url()
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    conf = config.CONF.database
    # pool_pre_ping: a pooled connection from before a database restart is replaced on
    # checkout instead of failing the first statement of whoever draws it.
    return create_engine(url, pool_size=conf.max_pool_size, max_overflow=conf.max_overflow,
                         pool_timeout=conf.pool_timeout, pool_pre_ping=True,
                         connect_args=POSTGRES_CONNECT_ARGS
                         if url.startswith("postgresql") else {})


def _sqlite_engine(url: str) -> Engine:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine = create_engine(url, pool_size=20, max_overflow=20)
    busy_ms = config.CONF.database.sqlite_busy_timeout

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event decide how each transaction starts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # A writer takes the lock up front, so two writers never deadlock on upgrade.
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@functools.cache
def _makers(url: str | None) -> tuple[sessionmaker[Session], sessionmaker[Session]]:
    engine = get_engine(url)
    read = sessionmaker(bind=engine, expire_on_commit=False)
    write = sessionmaker(bind=engine.execution_options(sqlite_immediate=True),
                         expire_on_commit=False)
    return read, write


def session(write: bool = False, url: str | None = None) -> Session:
    read_maker, write_maker = _makers(url)
    return (write_maker if write else read_maker)()


# The write transaction open in this thread (or task), per database: a transaction
# opened inside it joins it (as oslo.db's enginefacade nests), so a driver that keeps its
# state in our database commits or rolls back with its caller without being handed a
# session, and never waits for the lock its own caller holds (SQLite: one writer).
_open: contextvars.ContextVar[dict[str, Session] | None] = contextvars.ContextVar(
    "amphorae_open_transactions", default=None)


@contextlib.contextmanager
def transaction(write: bool = True, url: str | None = None) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception. Inside an open
    write transaction on the same database it is a savepoint of that one instead."""
    key = url or config.database_url()
    opened = _open.get() or {}
    outer = opened.get(key)
    if outer is not None:
        with outer.begin_nested():
            yield outer
        return
    with session(write, url) as sess, sess.begin():
        if not write:
            yield sess
            return
        token = _open.set({**opened, key: sess})
        try:
            yield sess
        finally:
            _open.reset(token)


def dispose() -> None:
    """Forget cached engines (tests switch databases)."""
    _makers.cache_clear()
    get_engine.cache_clear()
