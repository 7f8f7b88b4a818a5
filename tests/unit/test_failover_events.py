"""A failover the health manager starts (health/stale.py) is an event with its reason,
on a real SQLite database."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from amphorae.db import engine, migrate
from amphorae.db import models as m
from amphorae.health import stale
from tests.functional.test_health_manager import tree

NOW = dt.datetime(2030, 1, 1, 12, 0, 0)


@pytest.fixture
def url(tmp_path: Any) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/stale.sqlite"
    migrate.upgrade(url)
    yield url
    engine.get_engine(url).dispose()


def last_heard(url: str, amp_id: str, seconds_ago: float) -> None:
    with engine.transaction(url=url) as session:
        session.add(m.AmphoraHealth(amphora_id=amp_id, busy=False,
                                    last_update=NOW - dt.timedelta(seconds=seconds_ago)))


def failover_events(url: str) -> list[tuple[str, str | None, str | None, str]]:
    with engine.transaction(write=False, url=url) as session:
        return [(e.level, e.resource_id, e.load_balancer_id, e.message)
                for e in session.scalars(select(m.Event).where(m.Event.kind == "FAILOVER"))]


@pytest.mark.parametrize(("silent", "gone", "reason"), [
    (10, False, "it sent no heartbeat for 5 s"),
    (1, True, "its compute instance is gone or broken (netns: namespace deleted, agent dead)")])
def test_a_failover_is_an_event_with_its_reason(url: str, caplog: pytest.LogCaptureFixture,
                                                silent: float, gone: bool,
                                                reason: str) -> None:
    caplog.set_level(logging.INFO, "amphorae.events")
    t = tree(url)
    amp = t["amphorae"][0]
    last_heard(url, amp, silent)
    with engine.transaction(url=url) as session:
        result = stale.check(session, NOW, 5, None, gone=[amp] if gone else [])
    assert result.failed_over == [amp]
    message = f"amphora {amp} of load balancer {t['lb']} is failed over: {reason}"
    assert failover_events(url) == [("WARNING", amp, t["lb"], message)]
    assert [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "amphorae.events"] == [("WARNING", message)]


def test_an_amphora_that_reports_is_no_event(url: str) -> None:
    t = tree(url)
    last_heard(url, t["amphorae"][0], 1)
    with engine.transaction(url=url) as session:
        assert stale.check(session, NOW, 5, None).failed_over == []
    assert failover_events(url) == []
