"""No failover for heartbeats the health manager could not write (health/grace.py).

The health manager's real writer and stale check (HealthManager._write, check_stale:
health/update.py and health/stale.py underneath) on a real SQLite database; its writes
fail for real, because another connection holds the database's write lock longer than
the busy timeout. Only time is faked, so that the outage can last longer than
``heartbeat_timeout`` without the test waiting for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from amphorae.common import config
from amphorae.common import heartbeat as codec
from amphorae.db import engine, migrate
from amphorae.db import models as m
from amphorae.health import grace, service, update
from tests.functional.test_health_manager import tree

TIMEOUT = 5.0  # heartbeat_timeout
KEY = "grace-test-key"


@dataclasses.dataclass
class Clock:
    """Both clocks the health manager reads, moved by the test."""

    seconds: float = 1000.0
    start: dt.datetime = dt.datetime(2030, 1, 1, 12, 0, 0)

    def monotonic(self) -> float:
        return self.seconds

    def utcnow(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.seconds)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@pytest.fixture
def path(tmp_path: Any) -> Iterator[str]:
    path = f"{tmp_path}/health.sqlite"
    config.CONF.set_override("sqlite_busy_timeout", 100, "database")  # fail fast when locked
    migrate.upgrade(f"sqlite:///{path}")
    yield path
    engine.get_engine(f"sqlite:///{path}").dispose()
    engine.dispose()
    config.CONF.clear_override("sqlite_busy_timeout", "database")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(service, "utcnow", clock.utcnow)
    return clock


@pytest.fixture
def manager(path: str, clock: Clock) -> service.HealthManager:
    conf = types.SimpleNamespace(
        health_manager=types.SimpleNamespace(
            bind_ip="127.0.0.1", bind_port=0, controller_ip_port_list=[], heartbeat_key=KEY,
            heartbeat_interval=1, heartbeat_timeout=TIMEOUT, health_check_interval=1,
            failover_threshold=None),
        controller_worker=types.SimpleNamespace(compute_driver="compute_noop_driver"),
        autoscaling=types.SimpleNamespace(enabled=False, interval=1.0))
    manager = service.HealthManager(url=f"sqlite:///{path}", conf=conf)
    manager.grace = grace.Grace(TIMEOUT, clock=clock.monotonic)
    return manager


class Outage:
    """Another connection holding SQLite's write lock: every write of the manager fails
    with "database is locked" (reads still work, as with WAL they do)."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def end(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def beats(manager: service.HealthManager, trees: list[dict[str, Any]], seq: int) -> None:
    """One heartbeat from the amphora of each tree, written by the manager's writer."""
    now = time.monotonic()  # received just now: fresh for the writer
    batch = []
    for t in trees:
        listeners = {t["listener"]: {"status": "OPEN", "stats": {}}}
        pools = {f"{t['pool']}:{t['listener']}": {
            "status": "UP", "members": {t["m1"]: "UP", t["m2"]: "UP"}}}
        batch.append(update.Received(
            codec.build_message(t["amphorae"][0], seq, listeners, pools), now))
    manager._write(batch)


def failovers(url: str) -> list[str | None]:
    with engine.transaction(write=False, url=url) as session:
        return list(session.scalars(select(m.Job.amphora_id).where(
            m.Job.action == "failover_amphora")))


def provisioning(url: str, lb_id: str) -> str:
    with engine.transaction(write=False, url=url) as session:
        return session.get_one(m.LoadBalancer, lb_id).provisioning_status


@pytest.mark.parametrize("first", ["stale check", "heartbeat write"])
def test_no_failover_for_heartbeats_lost_in_an_outage_but_silence_still_counts(
        manager: service.HealthManager, clock: Clock, first: str) -> None:
    url = manager.url
    alive, silent = tree(url), tree(url)
    beats(manager, [alive, silent], seq=1)
    assert manager.counters["written"] == 2
    result = manager.check_stale()
    assert result is not None and result.stale == []

    outage = Outage(url.split(":///", 1)[1])
    try:
        clock.advance(3 * TIMEOUT)  # both keep sending; the manager cannot write
        beats(manager, [alive, silent], seq=2)
        assert manager.counters["write_failed"] == 2
        assert manager.check_stale() is None  # its transaction fails too
    finally:
        outage.end()

    # Writes succeed again (whichever of the two threads gets there first). Both health
    # rows are 3 timeouts old, yet neither amphora is failed over.
    clock.advance(1)
    if first == "heartbeat write":
        beats(manager, [alive], seq=3)
        assert manager.counters["written"] == 3
    result = manager.check_stale()
    assert result is not None
    assert (result.stale, result.failed_over, failovers(url)) == ([], [], [])

    # Within heartbeat_timeout of the recovery: the silent one is given its time.
    beats(manager, [alive], seq=4)
    clock.advance(TIMEOUT - 2)
    result = manager.check_stale()
    assert result is not None and result.failed_over == []

    # Past it: the amphora that really stopped sending is failed over, the other is not.
    clock.advance(2)
    beats(manager, [alive], seq=5)
    result = manager.check_stale()
    assert result is not None
    assert result.failed_over == failovers(url) == [silent["amphorae"][0]]
    assert provisioning(url, silent["lb"]) == "PENDING_UPDATE"
    assert provisioning(url, alive["lb"]) == "ACTIVE"


def test_without_health_rows_the_stale_check_leaves_the_database_alone(
        manager: service.HealthManager, clock: Clock) -> None:
    """Idle is idle: once a check found no health row, the next ones do not open a
    transaction (the Outage would fail it) until a heartbeat is written or a
    heartbeat_timeout passed (another health manager may have written some)."""
    url = manager.url
    first = manager.check_stale()
    assert first is not None and not first.watched
    outage = Outage(url.split(":///", 1)[1])
    try:
        skipped = manager.check_stale()
        assert skipped is not None and skipped.stale == []  # no transaction: no failure
        assert manager._silent_since is not None
        manager._silent_since = (manager._silent_since[0], time.monotonic() - TIMEOUT)
        assert manager.check_stale() is None  # a timeout later it looks again
    finally:
        outage.end()
    t = tree(url)
    assert manager.check_stale() is not None
    beats(manager, [t], seq=1)  # a heartbeat written: the check looks from now on
    result = manager.check_stale()
    assert result is not None and result.watched
    outage = Outage(url.split(":///", 1)[1])
    try:
        assert manager.check_stale() is None
    finally:
        outage.end()


def test_grace_rule() -> None:
    now = [0.0]
    g = grace.Grace(10, clock=lambda: now[0])
    assert g.judging()
    g.succeeded()  # no failure before: no grace
    assert g.judging()
    g.failed()
    now[0] = 100
    assert not g.judging()  # however long writes fail
    g.succeeded()
    now[0] = 109.9
    assert not g.judging()
    g.succeeded()  # later successes do not extend it
    now[0] = 110
    assert g.judging()
