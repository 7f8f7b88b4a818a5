"""db/events.py on a real SQLite database: one row and one log line per event, the line
only once the transaction commits, and housekeeping's purge of old events."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from amphorae.common import config
from amphorae.common.timeutil import utcnow
from amphorae.db import engine, events, migrate
from amphorae.db import models as m
from amphorae.housekeeping import service, sweeps


@pytest.fixture
def url(tmp_path: Any) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/events.sqlite"
    migrate.upgrade(url)
    yield url
    engine.get_engine(url).dispose()


def rows(url: str) -> list[m.Event]:
    with engine.transaction(write=False, url=url) as session:
        found = list(session.scalars(select(m.Event).order_by(m.Event.id)))
        session.expunge_all()
        return found


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "amphorae.events"]


def test_an_event_is_a_row_and_a_line_with_the_load_balancers_project(url, caplog):
    caplog.set_level(logging.INFO, "amphorae.events")
    with engine.transaction(url=url) as session:
        session.add(m.LoadBalancer(id="lb-1", project_id="p1", name="web",
                                   provisioning_status="ACTIVE", operating_status="ONLINE"))
        session.flush()
        events.record(session, events.LOADBALANCER_STATUS, "load balancer web is DEGRADED",
                      level="WARNING", resource_type="loadbalancer", resource_id="lb-1",
                      load_balancer_id="lb-1")
        assert lines(caplog) == []  # not before the commit
    [row] = rows(url)
    assert (row.kind, row.level, row.resource_type, row.resource_id, row.load_balancer_id,
            row.project_id, row.message) == (
        "LOADBALANCER_STATUS", "WARNING", "loadbalancer", "lb-1", "lb-1", "p1",
        "load balancer web is DEGRADED")
    assert row.created_at is not None
    assert lines(caplog) == [("WARNING", "load balancer web is DEGRADED")]
    [record] = [r for r in caplog.records if r.name == "amphorae.events"]
    assert record.event_kind == "LOADBALANCER_STATUS" and record.project_id == "p1"


def test_a_rolled_back_event_leaves_no_row_and_no_line(url, caplog):
    caplog.set_level(logging.INFO, "amphorae.events")
    with pytest.raises(RuntimeError), engine.transaction(url=url) as session:
        events.record(session, events.ERROR, "this never happened", level="ERROR")
        raise RuntimeError
    with engine.transaction(url=url) as session:  # a later commit logs nothing stale
        events.record(session, events.ERROR, "this did", level="ERROR")
    assert [r.message for r in rows(url)] == ["this did"]
    assert lines(caplog) == [("ERROR", "this did")]


def test_an_unknown_level_is_refused(url):
    with pytest.raises(ValueError), engine.transaction(url=url) as session:
        events.record(session, events.ERROR, "x", level="LOUD")


def test_housekeeping_purges_events_past_their_age(url):
    now = dt.datetime(2030, 1, 1)
    age = config.CONF.house_keeping.event_expiry_age
    with engine.transaction(url=url) as session:
        for seconds in (age + 1, age - 1):
            session.add(m.Event(created_at=now - dt.timedelta(seconds=seconds), kind="ERROR",
                                level="ERROR", message=f"{seconds} s old"))
    with engine.transaction(url=url) as session:
        assert sweeps.purge_events(session, now) == 1
    with engine.transaction(write=False, url=url) as session:
        assert session.scalar(select(func.count()).select_from(m.Event)) == 1
    assert [r.message for r in rows(url)] == [f"{age - 1} s old"]


def test_the_housekeeping_round_purges_old_events(url, caplog):
    caplog.set_level(logging.INFO, "amphorae.housekeeping.service")
    age = config.CONF.house_keeping.event_expiry_age
    with engine.transaction(url=url) as session:
        session.add(m.Event(created_at=utcnow() - dt.timedelta(seconds=age + 60),
                            kind="ERROR", level="ERROR", message="old"))
        events.record(session, events.ERROR, "new", level="ERROR")
    service.Housekeeper(url=url).run_once()
    assert [r.message for r in rows(url)] == ["new"]
    assert f"purged 1 events older than {age} s" in caplog.text


def test_an_event_in_a_rolled_back_savepoint_is_not_logged(url, caplog):
    caplog.set_level(logging.INFO, "amphorae.events")
    with engine.transaction(url=url) as session:
        events.record(session, events.ERROR, "kept", level="ERROR")
        with pytest.raises(RuntimeError), engine.transaction(url=url) as inner:
            events.record(inner, events.ERROR, "rolled back", level="ERROR")
            raise RuntimeError
    assert [r.message for r in rows(url)] == ["kept"]
    assert lines(caplog) == [("ERROR", "kept")]


def test_housekeeping_purges_deleted_rows_past_their_age(url):
    """Load balancers and amphorae DELETED longer than their expiry age go, with the load
    balancer's tags; younger ones, live ones, and a deleted load balancer an amphora row
    still points to stay."""
    now = dt.datetime(2030, 1, 1)
    hk = config.CONF.house_keeping
    old_lb = now - dt.timedelta(seconds=hk.load_balancer_expiry_age + 1)
    old_amp = now - dt.timedelta(seconds=hk.amphora_expiry_age + 1)
    young = now - dt.timedelta(seconds=60)

    def lb(lb_id: str, status: str, updated: dt.datetime) -> m.LoadBalancer:
        return m.LoadBalancer(id=lb_id, provisioning_status=status, operating_status="OFFLINE",
                              updated_at=updated)

    with engine.transaction(url=url) as session:
        session.add_all([lb("gone", "DELETED", old_lb), lb("young", "DELETED", young),
                         lb("live", "ACTIVE", old_lb), lb("held", "DELETED", old_lb)])
        session.add_all([m.Tag(resource_id="gone", tag="t"), m.Tag(resource_id="live", tag="t")])
        session.add_all([m.Amphora(id="a-old", status="DELETED", updated_at=old_amp),
                         m.Amphora(id="a-young", status="DELETED", updated_at=young,
                                   load_balancer_id="held"),
                         m.Amphora(id="a-live", status="ALLOCATED", updated_at=old_amp)])
    with engine.transaction(url=url) as session:
        assert sweeps.purge(session, now) == (1, 1)
    with engine.transaction(write=False, url=url) as session:
        assert set(session.scalars(select(m.LoadBalancer.id))) == {"young", "live", "held"}
        assert set(session.scalars(select(m.Amphora.id))) == {"a-young", "a-live"}
        assert list(session.scalars(select(m.Tag.resource_id))) == ["live"]
