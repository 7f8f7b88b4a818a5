"""A commit that enqueues a job wakes the SQLite workers of this host at once; a
rolled-back one does not (real SQLite file, real worker loop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from amphorae.common import doorbell
from amphorae.db import engine, jobs
from amphorae.db import models as m
from amphorae.worker import wakeup


@pytest.fixture
def sqlite_url(database_url: str) -> Iterator[str]:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL wakes workers with NOTIFY (tests/integration)")
    yield database_url
    with engine.transaction(url=database_url) as session:
        session.execute(delete(m.Job))


@pytest.fixture
def bell(sqlite_url: str) -> Iterator[doorbell.Bell]:
    directory = doorbell.directory_for(sqlite_url)
    assert directory is not None
    bell = doorbell.Bell(directory)
    yield bell
    bell.close()


def test_a_committed_job_rings(sqlite_url: str, bell: doorbell.Bell) -> None:
    with engine.transaction(url=sqlite_url) as session:
        jobs.enqueue(session, None, action="test")
        jobs.enqueue(session, None, action="test")
        assert not bell.wait(0), "rung before the commit"
    assert bell.wait(2)
    assert not bell.wait(0.05), "two jobs in one transaction ring once"


def test_a_rolled_back_job_does_not_ring(sqlite_url: str, bell: doorbell.Bell) -> None:
    with pytest.raises(RuntimeError), engine.transaction(url=sqlite_url) as session:
        jobs.enqueue(session, None, action="test")
        raise RuntimeError("the API refused the change")
    assert not bell.wait(0.2)


def test_the_worker_wakeup_for_sqlite_is_the_doorbell(sqlite_url: str) -> None:
    waker = wakeup.for_url(sqlite_url)
    try:
        assert isinstance(waker, wakeup.DoorbellWakeup)
        threading.Timer(0.1, lambda: _enqueue(sqlite_url)).start()
        started = time.monotonic()
        waker.wait(10)
        assert time.monotonic() - started < 2
    finally:
        waker.close()


def _enqueue(url: str) -> None:
    with engine.transaction(url=url) as session:
        jobs.enqueue(session, None, action="test")
