"""The job queue on real SQLite and PostgreSQL: claims, leases, take-over, exclusion."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select

from amphorae.common import constants as c
from amphorae.db import engine, jobs
from amphorae.db import models as m
from amphorae.worker.queue import JobQueue


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    yield database_url
    with engine.transaction(url=database_url) as session:
        session.execute(delete(m.Job))


def add_jobs(url: str, *targets: tuple[str | None, str]) -> None:
    with engine.transaction(url=url) as session:
        for lb_id, action in targets:
            jobs.enqueue(session, lb_id, action)


def job_rows(url: str) -> list[m.Job]:
    with engine.transaction(write=False, url=url) as session:
        return list(session.scalars(select(m.Job).order_by(m.Job.id)))


def test_claim_takes_every_job_of_the_oldest_target(url: str) -> None:
    lb1, lb2 = str(uuid.uuid4()), str(uuid.uuid4())
    add_jobs(url, (lb1, c.JOB_RECONCILE), (lb2, c.JOB_RECONCILE), (lb1, c.JOB_FAILOVER_LB))
    queue = JobQueue("w1", 30, url)
    claim = queue.claim()
    assert claim is not None and claim.load_balancer_id == lb1
    assert claim.actions == {(c.JOB_RECONCILE, None), (c.JOB_FAILOVER_LB, None)}
    assert claim.has(c.JOB_FAILOVER_LB) and claim.attempts == 1
    second = queue.claim()
    assert second is not None and second.load_balancer_id == lb2
    assert queue.claim() is None  # everything is leased
    queue.done(claim)
    assert [r.load_balancer_id for r in job_rows(url)] == [lb2]


def test_a_target_leased_elsewhere_is_skipped_until_done(url: str) -> None:
    lb = str(uuid.uuid4())
    add_jobs(url, (lb, c.JOB_RECONCILE))
    a, b = JobQueue("a", 30, url), JobQueue("b", 30, url)
    claim = a.claim()
    assert claim is not None
    add_jobs(url, (lb, c.JOB_RECONCILE))  # written while a works: not a's, not b's yet
    assert b.claim() is None
    a.done(claim)
    later = b.claim()
    assert later is not None and later.load_balancer_id == lb
    assert set(later.job_ids).isdisjoint(claim.job_ids)


def test_an_expired_lease_is_taken_over_and_the_old_owner_learns_it(url: str) -> None:
    lb = str(uuid.uuid4())
    add_jobs(url, (lb, c.JOB_RECONCILE))
    dead, alive = JobQueue("dead", 0.3, url), JobQueue("alive", 30, url)
    first = dead.claim()
    assert first is not None and alive.claim() is None
    time.sleep(0.4)  # the "dead" worker did not renew
    taken = alive.claim()
    assert taken is not None and taken.job_ids == first.job_ids and taken.attempts == 2
    assert dead.renew([first]) == {lb}
    dead.done(first)  # too late: must not remove jobs it no longer holds
    assert [r.id for r in job_rows(url)] == list(first.job_ids)
    assert alive.renew([taken]) == set()


def test_renewing_keeps_the_lease(url: str) -> None:
    lb = str(uuid.uuid4())
    add_jobs(url, (lb, c.JOB_RECONCILE))
    owner, other = JobQueue("owner", 0.5, url), JobQueue("other", 30, url)
    claim = owner.claim()
    assert claim is not None
    for _ in range(4):
        time.sleep(0.2)
        assert owner.renew([claim]) == set()
        assert other.claim() is None


def test_retry_hands_back_with_a_delay(url: str) -> None:
    lb = str(uuid.uuid4())
    add_jobs(url, (lb, c.JOB_RECONCILE))
    queue = JobQueue("w", 30, url)
    claim = queue.claim()
    assert claim is not None
    queue.retry(claim, 0.4)
    assert queue.claim() is None
    time.sleep(0.5)
    again = queue.claim()
    assert again is not None and again.attempts == 2


def test_defer_hands_back_with_a_delay_and_counts_no_attempt(url: str) -> None:
    """A reconcile that waits for a booting VM comes back as often as it needs: no
    give-up after MAX_ATTEMPTS claims."""
    lb = str(uuid.uuid4())
    add_jobs(url, (lb, c.JOB_RECONCILE))
    queue = JobQueue("w", 30, url)
    for _ in range(3):
        claim = queue.claim()
        assert claim is not None and claim.attempts == 1
        queue.defer(claim, 0.3)
        assert queue.claim() is None
        time.sleep(0.4)
    assert [row.attempts for row in job_rows(url)] == [0]


def test_jobs_without_a_load_balancer_are_keyed_by_amphora(url: str) -> None:
    amp1, amp2 = str(uuid.uuid4()), str(uuid.uuid4())
    with engine.transaction(url=url) as session:
        jobs.enqueue(session, None, c.JOB_DELETE_AMPHORA, amphora_id=amp1)
        jobs.enqueue(session, None, c.JOB_DELETE_AMPHORA, amphora_id=amp2)
    queue = JobQueue("w", 30, url)
    first, second = queue.claim(), queue.claim()
    assert first is not None and second is not None
    assert {first.target, second.target} == {f"amphora:{amp1}", f"amphora:{amp2}"}
    assert first.amphorae_for(c.JOB_DELETE_AMPHORA) | second.amphorae_for(
        c.JOB_DELETE_AMPHORA) == {amp1, amp2}


def test_concurrent_workers_never_share_a_target(url: str) -> None:
    """Four workers drain 60 jobs over 12 load balancers while jobs keep arriving; at no
    moment do two of them hold the same load balancer, and nothing is lost."""
    lbs = [str(uuid.uuid4()) for _ in range(12)]
    add_jobs(url, *((lb, c.JOB_RECONCILE) for lb in lbs * 3))
    holding: dict[str, str] = {}
    clashes: list[str] = []
    done_jobs: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def work(owner: str) -> None:
        queue = JobQueue(owner, 30, url)
        while not stop.is_set():
            claim = queue.claim()
            if claim is None:
                time.sleep(0.01)
                continue
            with lock:
                if claim.target in holding:
                    clashes.append(f"{owner} and {holding[claim.target]} on {claim.target}")
                holding[claim.target] = owner
            time.sleep(0.005)
            with lock:
                del holding[claim.target]
                done_jobs.extend(claim.job_ids)
            queue.done(claim)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        add_jobs(url, *((lb, c.JOB_RECONCILE) for lb in lbs * 2))  # arriving meanwhile
        deadline = time.monotonic() + 30
        while job_rows(url) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not clashes
    assert job_rows(url) == []
    # Every job done exactly once: a job claimed twice would push the count over 60.
    # (Ids alone cannot tell: SQLite hands a deleted row's id to the next insert.)
    assert len(done_jobs) == 60


def test_next_due_is_the_nearest_time_a_job_may_become_claimable(url: str) -> None:
    """What an idle worker sleeps until: a retried job's delay, another worker's lease;
    None when only an alarm-free wake-up (a new job) can bring work."""
    queue, other = JobQueue("w", 30, url), JobQueue("other", 5, url)
    assert queue.next_due() is None  # no job at all
    lb1, lb2 = str(uuid.uuid4()), str(uuid.uuid4())
    add_jobs(url, (lb1, c.JOB_RECONCILE))
    leased = other.claim()
    assert leased is not None
    due = queue.next_due()
    assert due is not None and 4 < due <= 5  # when other's lease runs out
    add_jobs(url, (lb2, c.JOB_RECONCILE))
    retried = queue.claim()
    assert retried is not None and retried.load_balancer_id == lb2
    queue.retry(retried, 2.0)
    due = queue.next_due()
    assert due is not None and 1 < due <= 2  # the retry comes first
    other.done(leased)
    with engine.transaction(url=url) as session:  # as if the retried job were done
        session.execute(delete(m.Job).where(m.Job.id.in_(retried.job_ids)))
    assert queue.next_due() is None
