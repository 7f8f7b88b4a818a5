"""Which database errors are an outage (503, try again) and which are bugs (500, with a
traceback): db/outage.py on errors a real SQLite database raises."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, exc, text
from sqlalchemy.pool import QueuePool

from amphorae.db import outage


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "outage.sqlite"
    eng = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05},
                        poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=0.1)
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    yield eng
    eng.dispose()


def raised(eng: Engine, sql: str) -> BaseException:
    with pytest.raises(exc.SQLAlchemyError) as info, eng.begin() as conn:
        conn.execute(text(sql))
    return info.value


def test_a_locked_database_is_an_outage(db: Engine, tmp_path: Path) -> None:
    holder = sqlite3.connect(tmp_path / "outage.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        error = raised(db, "INSERT INTO t VALUES (1)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in str(error)
    assert outage.unavailable(error)
    assert outage.describe(error) == "OperationalError: database is locked"


def test_an_exhausted_pool_is_an_outage(db: Engine) -> None:
    with db.connect(), pytest.raises(exc.TimeoutError) as info, db.connect():
        pass
    assert outage.unavailable(info.value)


@pytest.mark.parametrize("sql", ["SELECT * FROM no_such_table",
                                 "INSERT INTO t VALUES (NULL), (1), (1)", "SELEC 1"])
def test_bugs_are_not_outages(db: Engine, sql: str) -> None:
    assert not outage.unavailable(raised(db, sql))


def test_other_exceptions_are_not_outages() -> None:
    assert not outage.unavailable(ValueError("x"))
    assert not outage.unavailable(RecursionError())


def test_an_outage_is_logged_in_one_line_a_bug_with_its_traceback(
        db: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.outage")
    caplog.set_level(logging.INFO, logger=log.name)
    holder = sqlite3.connect(tmp_path / "outage.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = raised(db, "INSERT INTO t VALUES (1)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    outage.log_failure(log, "sweeping", locked)
    try:
        raise raised(db, "SELECT * FROM no_such_table")
    except exc.SQLAlchemyError as bug:
        outage.log_failure(log, "sweeping", bug)
    away, broken = caplog.records
    assert (away.levelno, away.exc_info) == (logging.WARNING, None)
    assert away.getMessage() == ("sweeping: database unavailable (OperationalError: "
                                 "database is locked); trying again")
    assert broken.levelno == logging.ERROR and broken.exc_info is not None
