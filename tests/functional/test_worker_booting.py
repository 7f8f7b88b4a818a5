"""A booting amphora holds no worker thread: the reconcile stops with NotYet, its jobs come
back amp_active_wait_sec later (counted as no attempt, so a boot longer than MAX_ATTEMPTS
checks is no give-up), and meanwhile the same single thread serves other load balancers.
Real database, job queue and worker loop; recording drivers whose builds stay BUILDING
for a number of calls, as a Nova VM does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.db import engine, jobs
from amphorae.db import models as m
from amphorae.worker import service
from amphorae.worker.queue import JobQueue
from amphorae.worker.reconciler import Reconciler
from amphorae.worker.service import Worker
from amphorae.worker.wakeup import PollingWakeup
from tests import dataplane as dp
from tests import fake_drivers as fake
from tests.functional.test_reconciler import amphorae, new_lb, statuses


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    config.CONF.set_override("amp_active_wait_sec", 1, group="controller_worker")
    yield database_url
    config.CONF.clear_override("amp_active_wait_sec", group="controller_worker")
    with engine.transaction(url=database_url) as session:
        session.execute(delete(m.Job))


def test_two_booting_load_balancers_share_one_thread_and_both_finish(
        url: str, tmp_path: Path) -> None:
    cloud = fake.FakeCloud()
    cloud.compute.building_calls = service.MAX_ATTEMPTS + 1
    first, second = new_lb(url), new_lb(url)
    with engine.transaction(url=url) as session:
        jobs.enqueue(session, first["lb"])
        jobs.enqueue(session, second["lb"])
    worker = Worker(Reconciler(cloud.drivers(str(tmp_path)), url),
                    JobQueue("booting", 30, url), PollingWakeup(0.05), threads=1)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        dp.wait_for(lambda: {statuses(url, ids)["lb"] for ids in (first, second)}
                    == {c.ACTIVE}, "both load balancers ACTIVE", timeout=40)
    finally:
        worker.stop()
        thread.join(timeout=15)
    (amp1,), (amp2,) = amphorae(url, first["lb"]), amphorae(url, second["lb"])
    built = cloud.compute.built
    assert built.count(amp1.id) == built.count(amp2.id) == service.MAX_ATTEMPTS + 2
    # Interleaved: the second was booting while the first still was.
    assert built.index(amp2.id) < len(built) - 1 - built[::-1].index(amp1.id)
    assert not cloud.compute.deleted
