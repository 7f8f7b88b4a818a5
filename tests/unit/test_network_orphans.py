"""Which network objects the housekeeping sweep takes for orphans (sweeps.network_orphans)
and how their owners are read from Octavia's names (neutron_orphans), on a SQLite
database of the test: only objects at least ORPHAN_MIN_AGE old whose load balancer or
amphora has no live row."""

from __future__ import annotations

import datetime as dt
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amphorae.common import constants as c
from amphorae.db import engine, migrate
from amphorae.db import models as m
from amphorae.drivers.network import neutron_orphans
from amphorae.drivers.network.base import OwnedResource
from amphorae.housekeeping import sweeps

NOW = dt.datetime(2026, 12, 5, 12, 0, 0)
OLD = NOW - sweeps.ORPHAN_MIN_AGE
YOUNG = OLD + dt.timedelta(seconds=1)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    database = f"sqlite:///{tmp_path}/amphorae.sqlite"
    migrate.upgrade(database)
    yield database
    engine.get_engine(database).dispose()


def _ids() -> str:
    return str(uuid.uuid4())


def test_old_objects_of_missing_or_deleted_owners_are_orphans(url: str) -> None:
    live_lb, deleted_lb, missing_lb = _ids(), _ids(), _ids()
    live_amp, deleted_amp, missing_amp = _ids(), _ids(), _ids()
    with engine.transaction(url=url) as session:
        session.add(m.LoadBalancer(id=live_lb, project_id="p",
                                   provisioning_status=c.PENDING_CREATE,
                                   operating_status=c.OFFLINE))
        session.add(m.LoadBalancer(id=deleted_lb, project_id="p",
                                   provisioning_status=c.DELETED, operating_status=c.OFFLINE))
        session.add(m.Amphora(id=live_amp, role="STANDALONE", status="BOOTING"))
        session.add(m.Amphora(id=deleted_amp, role="STANDALONE", status=c.DELETED))
    found = [OwnedResource("port", "p1", "vip", OLD, load_balancer_id=live_lb),
             OwnedResource("port", "p2", "vip", OLD, load_balancer_id=deleted_lb),
             OwnedResource("security_group", "g3", "lb", OLD, load_balancer_id=missing_lb),
             OwnedResource("port", "p4", "vip", YOUNG, load_balancer_id=missing_lb),
             OwnedResource("port", "p5", "vrrp", OLD, amphora_id=live_amp),
             OwnedResource("port", "p6", "vrrp", OLD, amphora_id=deleted_amp),
             OwnedResource("port", "p7", "member", OLD, amphora_id=missing_amp),
             OwnedResource("port", "p8", "member", YOUNG, amphora_id=missing_amp)]
    with engine.transaction(write=False, url=url) as session:
        orphans = sweeps.network_orphans(session, found, NOW)
    assert [r.id for r in orphans] == ["p2", "g3", "p6", "p7"]


def test_owners_come_from_octavias_names() -> None:
    def port(name: str) -> OwnedResource | None:
        return neutron_orphans.port_owner(types.SimpleNamespace(
            id="x", name=name, created_at="2026-12-05T11:00:00Z"))

    assert port("octavia-lb-L").load_balancer_id == "L"  # type: ignore[union-attr]
    assert port("octavia-lb-vrrp-A").amphora_id == "A"  # type: ignore[union-attr]
    assert port("octavia-lb-member-A").amphora_id == "A"  # type: ignore[union-attr]
    assert port("something-else") is None
    assert port("octavia-lb-L").created_at == dt.datetime(2026, 12, 5, 11)  # type: ignore[union-attr]
