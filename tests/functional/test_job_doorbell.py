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


def test_an_idle_worker_sleeps_until_the_next_due_job_and_a_stop_wakes_it(
        sqlite_url: str) -> None:
    """The claim loop of a real Worker: no polling while nothing is due (it waits
    IDLE_BACKSTOP), a job retried for later is claimed when it is due, and stop()
    ends the loop at once."""
    from amphorae.worker.queue import JobQueue
    from amphorae.worker.service import IDLE_BACKSTOP, Worker

    queue = JobQueue("idle", 30, sqlite_url)
    seen: list[tuple[float, str | None]] = []
    done = threading.Event()

    class Reconciler:
        def run(self, claim: object, fence: object) -> None:
            seen.append((time.monotonic(), getattr(claim, "load_balancer_id", None)))
            done.set()

    worker = Worker(Reconciler(), queue, wakeup.for_url(sqlite_url),  # type: ignore[arg-type]
                    threads=1)
    assert worker._idle_wait() == IDLE_BACKSTOP
    with engine.transaction(url=sqlite_url) as session:
        jobs.enqueue(session, "lb-later", action="test")
    claim = queue.claim()
    assert claim is not None
    queue.retry(claim, 1.5)
    assert 1.0 < worker._idle_wait() <= 1.6
    runner = threading.Thread(target=worker.run)
    started = time.monotonic()
    runner.start()
    try:
        assert done.wait(5), "the retried job was never claimed"
        assert 1.0 < seen[0][0] - started < 2.5 and seen[0][1] == "lb-later"
    finally:
        stopping = time.monotonic()
        worker.stop()
        runner.join(5)
    assert not runner.is_alive() and time.monotonic() - stopping < 1.5
