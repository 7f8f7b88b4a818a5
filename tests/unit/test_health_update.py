"""Writing heartbeat batches (health/update.py) on a real SQLite database: health rows,
rolled-up statuses written only when they change, statistics summed per batch, and the
rules that withhold a health refresh or ignore a heartbeat."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy import update as sql_update

from amphorae.common import heartbeat as codec
from amphorae.db import engine, migrate
from amphorae.db import models as m
from amphorae.health import update
from tests.functional.test_health_manager import report, tree

NOW = dt.datetime(2030, 1, 1, 12, 0, 0)
INTERVAL = 1.0


@pytest.fixture
def url(tmp_path: Any) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/health.sqlite"
    migrate.upgrade(url)
    yield url
    engine.get_engine(url).dispose()


def beat(amp: str, seq: int, listeners: dict, pools: dict, waited: float = 0.0
         ) -> update.Received:
    """A decoded heartbeat that arrived ``waited`` seconds before the batch runs at 100."""
    return update.Received(codec.build_message(amp, seq, listeners, pools), 100.0 - waited)


def apply(url: str, *batch: update.Received, now: dt.datetime = NOW) -> update.Outcome:
    with engine.transaction(url=url) as session:
        return update.apply(session, list(batch), now, 100.0, INTERVAL)


def statuses(url: str, t: dict[str, Any]) -> tuple[str, ...]:
    with engine.transaction(write=False, url=url) as session:
        return tuple(session.get_one(model, t[key]).operating_status for model, key in (
            (m.LoadBalancer, "lb"), (m.Listener, "listener"), (m.Pool, "pool"),
            (m.Member, "m1"), (m.Member, "m2")))


def row(url: str, model: type, key: Any) -> Any:
    with engine.transaction(write=False, url=url) as session:
        found = session.get(model, key)
        if found is not None:
            session.expunge(found)
        return found


def stats(url: str, t: dict[str, Any], amp: str) -> tuple[int, ...]:
    s = row(url, m.ListenerStatistics, (t["listener"], amp))
    return (s.bytes_in, s.bytes_out, s.active_connections, s.total_connections,
            s.request_errors)


def test_a_heartbeat_refreshes_health_rolls_up_and_adds_statistics(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    out = apply(url, beat(amp, 1, *report(t, rx=100)))
    assert (out.refreshed, out.ignored, out.withheld) == (1, 0, 0)
    assert out.status_changes == 5  # all five were OFFLINE
    assert statuses(url, t) == ("ONLINE",) * 5
    assert row(url, m.AmphoraHealth, amp).last_update == NOW
    assert stats(url, t, amp) == (100, 200, 1, 1, 0)


def test_only_changed_statuses_are_written(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    apply(url, beat(amp, 1, *report(t)))
    assert apply(url, beat(amp, 2, *report(t))).status_changes == 0
    out = apply(url, beat(amp, 3, *report(t, m2="DOWN")))
    assert out.status_changes == 3  # m2 ERROR, pool and load balancer DEGRADED
    assert statuses(url, t) == ("DEGRADED", "ONLINE", "DEGRADED", "ONLINE", "ERROR")


def test_a_batch_sums_deltas_and_takes_statuses_from_the_newest(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    apply(url, beat(amp, 1, *report(t, m2="DOWN", rx=10)),
          beat(amp, 2, *report(t, rx=20)))
    assert statuses(url, t) == ("ONLINE",) * 5
    assert stats(url, t, amp) == (30, 60, 1, 2, 0)
    apply(url, beat(amp, 3, *report(t, rx=5)))
    assert stats(url, t, amp) == (35, 70, 1, 3, 0)


def test_active_connections_are_replaced_and_zero_deltas_keep_the_sums(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    listeners, pools = report(t, rx=50)
    apply(url, beat(amp, 1, listeners, pools))
    for seq, conns in ((2, 7), (3, 7), (4, 0), (5, 0)):  # idle: nothing but conns
        idle = {t["listener"]: {"status": "OPEN", "stats": {
            "rx": 0, "tx": 0, "conns": conns, "totconns": 0, "ereq": 0}}}
        apply(url, beat(amp, seq, idle, pools))
        assert stats(url, t, amp) == (50, 100, conns, 1, 0)


def test_unknown_deleted_and_unattached_amphorae_change_nothing(url: str) -> None:
    t = tree(url, amphorae=2)
    deleted, unattached = t["amphorae"]
    with engine.transaction(url=url) as session:
        session.execute(sql_update(m.Amphora).where(m.Amphora.id == deleted)
                        .values(status="DELETED"))
        session.execute(sql_update(m.Amphora).where(m.Amphora.id == unattached)
                        .values(load_balancer_id=None))
    out = apply(url, *(beat(a, 1, *report(t, rx=10))
                       for a in ("no-such-amphora", deleted, unattached)))
    assert (out.refreshed, out.ignored, out.status_changes) == (0, 3, 0)
    assert statuses(url, t) == ("OFFLINE",) * 5
    with engine.transaction(write=False, url=url) as session:
        assert session.scalars(select(m.AmphoraHealth)).all() == []
        assert session.scalars(select(m.ListenerStatistics)).all() == []


def test_a_late_heartbeat_or_missing_listener_withholds_the_health_refresh(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    out = apply(url, beat(amp, 1, *report(t), waited=INTERVAL + 0.1))
    assert (out.refreshed, out.withheld) == (0, 1)
    assert row(url, m.AmphoraHealth, amp) is None
    assert statuses(url, t) == ("ONLINE",) * 5  # statuses are still rolled up
    out = apply(url, beat(amp, 2, {}, {}))  # HAProxy answered nothing: 0 of 1 listeners
    assert (out.refreshed, out.withheld) == (0, 1)
    assert row(url, m.AmphoraHealth, amp) is None


def test_a_heartbeat_heard_before_a_listeners_change_says_nothing_of_its_absence(
        url: str) -> None:
    """The agent built it before it applied the listener; the worker marked the load
    balancer ACTIVE before the batch ran: no false ERROR (the README walkthrough saw one
    8 ms after 'applied, ACTIVE'). A later heartbeat without it is believed."""
    t = tree(url)
    amp = t["amphorae"][0]
    changed = NOW - dt.timedelta(seconds=0.5)
    with engine.transaction(url=url) as session:
        session.execute(sql_update(m.Listener).where(m.Listener.id == t["listener"])
                        .values(updated_at=changed))
    apply(url, beat(amp, 1, {}, {}, waited=0.6))  # heard 0.1 s before the change
    assert row(url, m.Listener, t["listener"]).operating_status == "OFFLINE"
    apply(url, beat(amp, 2, {}, {}, waited=0.4))  # heard after it
    assert row(url, m.Listener, t["listener"]).operating_status == "ERROR"


def test_listener_count_is_not_checked_while_the_load_balancer_is_busy(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    with engine.transaction(url=url) as session:
        session.execute(sql_update(m.LoadBalancer).where(m.LoadBalancer.id == t["lb"])
                        .values(provisioning_status="PENDING_UPDATE"))
    assert apply(url, beat(amp, 1, {}, {})).refreshed == 1


def test_udp_listeners_are_not_expected_in_the_heartbeat(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    with engine.transaction(url=url) as session:
        session.add(m.Listener(id="udp-listener", load_balancer_id=t["lb"], protocol="UDP",
                               protocol_port=53, enabled=True, provisioning_status="ACTIVE",
                               operating_status="OFFLINE"))
    assert apply(url, beat(amp, 1, *report(t))).refreshed == 1
    assert row(url, m.Listener, "udp-listener").operating_status == "OFFLINE"


def test_udp_pools_take_the_agents_member_checks(url: str) -> None:
    """The agent checks UDP members itself and reports their pool under its bare id."""
    t = tree(url)
    amp = t["amphorae"][0]
    with engine.transaction(url=url) as session:
        session.add(m.Pool(id="udp-pool", load_balancer_id=t["lb"], protocol="UDP",
                           lb_algorithm="ROUND_ROBIN", enabled=True,
                           provisioning_status="ACTIVE", operating_status="OFFLINE"))
        session.flush()
        session.add(m.Member(id="udp-member", pool_id="udp-pool", ip_address="192.0.2.9",
                             protocol_port=53, enabled=True, provisioning_status="ACTIVE",
                             operating_status="OFFLINE"))
    listeners, pools = report(t)
    pools["udp-pool"] = {"status": "UP", "members": {"udp-member": "DOWN"}}
    apply(url, beat(amp, 1, listeners, pools))
    assert row(url, m.Pool, "udp-pool").operating_status == "DEGRADED"
    assert row(url, m.Member, "udp-member").operating_status == "ERROR"


def test_a_stopped_failover_ends_when_heartbeats_come_back(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    with engine.transaction(url=url) as session:
        session.execute(sql_update(m.Amphora).where(m.Amphora.id == amp)
                        .values(status="FAILOVER_STOPPED"))
    apply(url, beat(amp, 1, *report(t)))
    assert row(url, m.Amphora, amp).status == "ALLOCATED"


def test_many_load_balancers_in_one_batch(url: str) -> None:
    trees = [tree(url) for _ in range(5)]
    out = apply(url, *(beat(t["amphorae"][0], 1, *report(t, m2="DOWN" if i % 2 else "UP",
                                                        rx=i + 1))
                       for i, t in enumerate(trees)))
    assert out.refreshed == 5
    for i, t in enumerate(trees):
        assert statuses(url, t)[0] == ("DEGRADED" if i % 2 else "ONLINE")
        assert stats(url, t, t["amphorae"][0])[0] == i + 1


def test_a_deleted_amphora_adds_no_statistics_beside_a_live_one(url: str) -> None:
    """Its load balancer's tree is read for the live one; the deleted one's heartbeat is
    still ignored whole (before, its statistics were added in that case only)."""
    t = tree(url, amphorae=2)
    live, deleted = t["amphorae"]
    with engine.transaction(url=url) as session:
        session.execute(sql_update(m.Amphora).where(m.Amphora.id == deleted)
                        .values(status="DELETED"))
    out = apply(url, beat(live, 1, *report(t, rx=10)), beat(deleted, 1, *report(t, rx=10)))
    assert (out.refreshed, out.ignored) == (1, 1)
    assert stats(url, t, live)[0] == 10
    assert row(url, m.ListenerStatistics, (t["listener"], deleted)) is None


# --- transitions as events (health/transitions.py) -------------------------------------


def told(url: str, caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str, str]]:
    """The events recorded so far (kind, level, resource id, message), checked against
    the log lines of amphorae.events, which must say the same, once each."""
    with engine.transaction(write=False, url=url) as session:
        found = [(e.kind, e.level, e.resource_id, e.message)
                 for e in session.scalars(select(m.Event).order_by(m.Event.id))]
    logged = [(r.levelname, r.getMessage()) for r in caplog.records
              if r.name == "amphorae.events"]
    assert logged == [(level, message) for _, level, _, message in found]
    return found


def test_a_member_going_down_is_one_event_per_transition_and_none_when_unchanged(
        url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "amphorae.events")
    t = tree(url)
    amp = t["amphorae"][0]
    with engine.transaction(url=url) as session:
        session.execute(sql_update(m.LoadBalancer).values(name="web"))
        session.execute(sql_update(m.Pool).values(name="pool1"))
    apply(url, beat(amp, 1, *report(t)))
    first = told(url, caplog)
    assert len(first) == 5  # everything was OFFLINE
    apply(url, beat(amp, 2, *report(t)))
    assert told(url, caplog) == first  # the same heartbeat again: nothing to tell
    apply(url, beat(amp, 3, *report(t, m2="DOWN")))
    lb = f"load balancer web ({t['lb']})"
    down = "member 192.0.2.1:8002 of pool pool1"
    assert told(url, caplog)[5:] == [
        ("MEMBER_STATUS", "WARNING", t["m2"], f"{down} of {lb} is ERROR (was ONLINE)"),
        ("POOL_STATUS", "WARNING", t["pool"], f"pool pool1 of {lb} is DEGRADED (was ONLINE)"),
        ("LOADBALANCER_STATUS", "WARNING", t["lb"],
         f"{lb} is DEGRADED (was ONLINE): {down} is ERROR")]
    apply(url, beat(amp, 4, *report(t, m2="DOWN")))
    assert len(told(url, caplog)) == 8
    apply(url, beat(amp, 5, *report(t)))
    back = told(url, caplog)[8:]
    assert [(kind, level) for kind, level, _, _ in back] == [
        ("MEMBER_STATUS", "INFO"), ("POOL_STATUS", "INFO"), ("LOADBALANCER_STATUS", "INFO")]
    assert back[0][3] == f"{down} of {lb} is ONLINE (was ERROR)"
    with engine.transaction(write=False, url=url) as session:
        assert {e.project_id for e in session.scalars(select(m.Event))} == {"p"}


@pytest.mark.parametrize(("load", "stored"), [(0.42, 0.42), (0, 0.0), (1, 1.0), (1.5, None),
                                              (-0.1, None), ("0.5", None), (True, None)])
def test_the_heartbeats_load_is_stored_only_when_it_is_a_share(url: str, load: Any,
                                                               stored: float | None) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    message = codec.build_message(amp, 1, *report(t))
    message["load"] = load
    apply(url, update.Received(message, 100.0))
    assert row(url, m.AmphoraHealth, amp).load == stored


def test_a_later_heartbeat_replaces_the_load(url: str) -> None:
    t = tree(url)
    amp = t["amphorae"][0]
    apply(url, update.Received(codec.build_message(amp, 1, *report(t), load=0.9), 100.0))
    apply(url, update.Received(codec.build_message(amp, 2, *report(t), load=0.1), 100.0))
    assert row(url, m.AmphoraHealth, amp).load == 0.1
