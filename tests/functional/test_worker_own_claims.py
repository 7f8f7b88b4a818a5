"""A worker never runs two reconciles of one target at once, also not by itself: a job
written while it reconciles a load balancer (an amphora config PUT, or its own lease
running out while the machine is slow) waits until that reconcile has ended.

On real SQLite and PostgreSQL, with the real queue and worker loop and a stand-in
reconciler that holds each run until the test lets it go.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select

from amphorae.db import engine, jobs
from amphorae.db import models as m
from amphorae.worker.queue import Claim, JobQueue
from amphorae.worker.service import Worker
from amphorae.worker.wakeup import PollingWakeup
from tests import dataplane as dp

CLAIM_CHANCES = 0.5  # seconds a buggy worker would have had to claim again (polls: 10 ms)


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    yield database_url
    with engine.transaction(url=database_url) as session:
        session.execute(delete(m.Job))


class HeldReconciler:
    """Records how many runs of each target overlap; each run waits for ``release``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.most_at_once = 0
        self.runs: list[tuple[int, ...]] = []

    def run(self, claim: Claim, fence: object = None) -> None:
        with self.lock:
            self.running[claim.target] += 1
            self.most_at_once = max(self.most_at_once, self.running[claim.target])
            self.runs.append(claim.job_ids)
        try:
            self.release.wait(10)
        finally:
            with self.lock:
                self.running[claim.target] -= 1


def enqueue(url: str, lb_id: str) -> None:
    with engine.transaction(url=url) as session:
        jobs.enqueue(session, lb_id)


def job_ids(url: str) -> list[int]:
    with engine.transaction(write=False, url=url) as session:
        return list(session.scalars(select(m.Job.id)))


def test_a_target_in_flight_is_not_claimed_again(url: str) -> None:
    lb, other = str(uuid.uuid4()), str(uuid.uuid4())
    enqueue(url, lb)
    queue = JobQueue("w", 30, url)
    first = queue.claim()
    assert first is not None and first.target == lb
    enqueue(url, lb)  # written while the first claim is worked on
    enqueue(url, other)
    second = queue.claim(skip={lb})
    assert second is not None and second.target == other
    assert queue.claim(skip={lb, other}) is None
    queue.done(first)
    later = queue.claim(skip={other})
    assert later is not None and later.target == lb
    assert set(later.job_ids).isdisjoint(first.job_ids) and later.attempts == 1


@pytest.mark.parametrize("lease", [30.0, 0.3], ids=["job-arrives", "own-lease-expires"])
def test_worker_runs_one_reconcile_per_target_at_a_time(url: str, lease: float) -> None:
    """With a 0.3 s lease the held reconcile outlives its lease (nothing renews it in
    time when the renewer is starved, simulated here by a lease shorter than the hold)."""
    lb = str(uuid.uuid4())
    reconciler = HeldReconciler()
    worker = Worker(reconciler, JobQueue("w", lease, url),  # type: ignore[arg-type]
                    PollingWakeup(0.01), threads=4)
    if lease < 1:
        worker._renew_loop = lambda: None  # type: ignore[method-assign]  # starved
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        enqueue(url, lb)
        dp.wait_for(lambda: reconciler.runs, "the first reconcile starting", timeout=10)
        enqueue(url, lb)
        time.sleep(CLAIM_CHANCES)
        assert len(reconciler.runs) == 1, reconciler.runs
        reconciler.release.set()
        dp.wait_for(lambda: not job_ids(url), "every job done", timeout=10)
    finally:
        reconciler.release.set()
        worker.stop()
        thread.join(10)
    assert reconciler.most_at_once == 1
    assert len(reconciler.runs) == 2, reconciler.runs
