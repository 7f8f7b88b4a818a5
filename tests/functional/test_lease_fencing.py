"""A reconcile whose lease was lost writes nothing more (real database, real job queue,
real worker loop; recording drivers). Worker A claims a load balancer's job and stalls in
the middle of its reconcile (held in the amphora driver); its lease runs out and worker B
takes the job over and finishes it; the user then adds a listener. When A wakes up, it
must not write its (stale) result: that would mark the new listener ACTIVE although no
amphora was ever configured with it — the lost update that fencing exists for."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from amphorae.common import constants as c
from amphorae.db import engine, jobs
from amphorae.db import models as m
from amphorae.drivers.amphora.base import AmphoraRef
from amphorae.worker.queue import JobQueue
from amphorae.worker.reconciler import Reconciler
from amphorae.worker.service import Worker
from amphorae.worker.wakeup import PollingWakeup
from tests import dataplane as dp
from tests import fake_drivers as fake
from tests.functional.test_reconciler import new_lb, statuses


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    yield database_url
    with engine.transaction(url=database_url) as session:
        session.execute(delete(m.Job))


def take_over(url: str, queue: JobQueue, lb_id: str):  # type: ignore[no-untyped-def]
    """Expire A's lease and claim the jobs for B; again if A's renewer got in between."""
    for _ in range(50):
        with engine.transaction(url=url) as session:
            session.execute(update(m.Job).where(m.Job.load_balancer_id == lb_id).values(
                lease_expires_at=dt.datetime(2000, 1, 1)))
        claim = queue.claim()
        if claim is not None:
            return claim
    raise AssertionError("worker B never got the jobs")


@pytest.mark.parametrize("renewer", [False, True], ids=["stalled-worker", "renewing-worker"])
def test_a_worker_that_lost_its_lease_writes_nothing(url: str, tmp_path: Path,
                                                     renewer: bool) -> None:
    """stalled-worker: A's lease renewer is starved too (a paused process), so only the
    transactional fence stands between A and the database. renewing-worker: A's renewer
    finds out first and stops the reconcile at its next step."""
    cloud_a, cloud_b = fake.FakeCloud(), fake.FakeCloud()
    entered, release = threading.Event(), threading.Event()

    def stall(amp: AmphoraRef) -> None:
        entered.set()
        assert release.wait(30)

    cloud_a.amphora.hook = stall
    ids = new_lb(url)
    with engine.transaction(url=url) as session:
        jobs.enqueue(session, ids["lb"])
    worker_a = Worker(Reconciler(cloud_a.drivers(str(tmp_path)), url),
                      JobQueue("A", 1.0, url), PollingWakeup(0.01), threads=2)
    if not renewer:
        worker_a._renew_loop = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=worker_a.run, daemon=True)
    thread.start()
    try:
        assert entered.wait(15), "worker A never reached the amphora driver"
        queue_b = JobQueue("B", 30, url)
        claim_b = take_over(url, queue_b, ids["lb"])
        Reconciler(cloud_b.drivers(str(tmp_path)), url).run(claim_b)
        queue_b.done(claim_b)
        assert statuses(url, ids)["lb"] == c.ACTIVE
        # The user adds a listener: written PENDING_CREATE with a job, as the API does.
        new_listener = m.new_id()
        with engine.transaction(url=url) as session:
            session.get_one(m.LoadBalancer, ids["lb"]).provisioning_status = c.PENDING_UPDATE
            session.add(m.Listener(id=new_listener, load_balancer_id=ids["lb"],
                                   project_id="p", protocol="TCP", protocol_port=81,
                                   provisioning_status=c.PENDING_CREATE,
                                   operating_status=c.OFFLINE))
            jobs.enqueue(session, ids["lb"])
        if renewer:
            dp.wait_for(lambda: any(f.lost.is_set() for f, _ in
                                    list(worker_a._inflight.values())),
                        "worker A noticing the lost lease", timeout=10)
        worker_a.stop()  # no new claims: only the stale run goes on
        release.set()
        thread.join(timeout=15)
        assert not thread.is_alive()
        assert statuses(url, {"listener": new_listener, "lb": ids["lb"]}) == {
            "listener": c.PENDING_CREATE, "lb": c.PENDING_UPDATE}, \
            "worker A wrote its stale result after losing its lease"
        claim = queue_b.claim()  # the new job is still there, and carries the change
        assert claim is not None
        Reconciler(cloud_b.drivers(str(tmp_path)), url).run(claim)
        assert statuses(url, {"listener": new_listener})["listener"] == c.ACTIVE
        assert new_listener in cloud_b.amphora.applied[-1].object_ids
    finally:
        release.set()
        worker_a.stop()
        thread.join(timeout=15)
