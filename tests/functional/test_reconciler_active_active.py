"""The reconciler's ACTIVE_ACTIVE decisions, with recording drivers (tests/fake_drivers.py)
and a real database: N amphorae (scale.desired) plugged behind the distributor, scale
out (the newcomer joins the distributor once configured), scale in (the newest drains:
weight 1, then removed once idle with no connection, or after drain_timeout), a dead
amphora leaving the distributor before its replacement boots, teardown and drift of the
distributor, and a network driver without a distributor putting the load balancer in
ERROR."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.common.timeutil import utcnow
from amphorae.db import engine
from amphorae.db import models as m
from amphorae.drivers.network import base as net
from amphorae.worker import drift
from amphorae.worker.active_active import DRAINING
from amphorae.worker.reconciler import NotYet
from tests import fake_drivers as fake
from tests.functional import test_reconciler as base
from tests.functional.test_reconciler import amphorae, new_lb, statuses, told

cloud = base.cloud  # the same fixtures: recording drivers, a reconcile on them
reconcile = base.reconcile


def scaled(url: str, lb_id: str, desired: int) -> None:
    with engine.transaction(url=url) as session:
        row = session.get(m.LoadBalancerScale, lb_id)
        if row is None:
            session.add(m.LoadBalancerScale(load_balancer_id=lb_id, desired=desired))
        else:
            row.desired = desired
        session.get_one(m.LoadBalancer, lb_id).provisioning_status = c.PENDING_UPDATE


def aa_lb(url: str, count: int = 3) -> dict[str, str]:
    ids = new_lb(url, c.TOPOLOGY_ACTIVE_ACTIVE)
    scaled(url, ids["lb"], count)
    return ids


def by_age(url: str, lb_id: str) -> list[m.Amphora]:
    return sorted(amphorae(url, lb_id), key=lambda a: (a.created_at, a.id))


def heartbeat(url: str, amp_id: str, connections: int) -> None:
    """A heartbeat as the health manager writes it: fresh, with the listener's count."""
    with engine.transaction(url=url) as session:
        session.merge(m.AmphoraHealth(amphora_id=amp_id,
                                      last_update=utcnow() + dt.timedelta(seconds=1)))
        for listener_id in session.scalars(select(m.Listener.id)):
            session.merge(m.ListenerStatistics(listener_id=listener_id, amphora_id=amp_id,
                                               active_connections=connections))


@pytest.fixture
def drain_timeout() -> Iterator[None]:
    yield
    config.CONF.clear_override("drain_timeout", group="autoscaling")


def test_active_active_runs_desired_amphorae_behind_the_distributor(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = aa_lb(database_url, 3)
    reconcile(ids["lb"])
    amps = by_age(database_url, ids["lb"])
    assert [(a.role, a.status) for a in amps] == [(c.ROLE_ACTIVE, c.ALLOCATED)] * 3
    for amp in amps:
        vip, _ = cloud.network.plugged[amp.id]
        assert (vip.distributed, vip.vrrp) == (True, False)
        assert amp.vrrp_ip == cloud.network.vrrp_ips[amp.id]  # its own, for DSR and peers
    dist = cloud.network.distributors[ids["lb"]]
    assert (set(dist.serving), dist.draining, dist.vips) == (
        {a.id for a in amps}, (), ("198.18.200.5",))
    assert not any(a.vrrp for a in cloud.amphora.applied)  # no keepalived
    assert set(statuses(database_url, ids).values()) == {c.ACTIVE}


def test_every_serving_amphora_is_a_peer_of_the_others(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = aa_lb(database_url, 3)
    reconcile(ids["lb"])
    addresses = {cloud.network.vrrp_ips[a.id] for a in amphorae(database_url, ids["lb"])}
    assert {frozenset(a.peers) for a in cloud.amphora.applied} == {frozenset(addresses)}
    # A draining one leaves the others' peers (it keeps its own table until it goes).
    newest = by_age(database_url, ids["lb"])[-1]
    cloud.network.idle[newest.id] = 0.0
    scaled(database_url, ids["lb"], 2)
    with pytest.raises(NotYet):
        reconcile(ids["lb"])
    assert set(cloud.amphora.applied[-1].peers) == addresses - {
        cloud.network.vrrp_ips[newest.id]}


def test_a_load_balancer_without_a_scale_row_runs_the_flavor_minimum(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_ACTIVE)
    reconcile(ids["lb"])
    assert len(amphorae(database_url, ids["lb"])) == c.AMPHORA_COUNT_MIN_DEFAULT


def test_scale_out_boots_and_adds_the_newcomer_once_configured(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = aa_lb(database_url, 3)
    reconcile(ids["lb"])
    before = {a.id for a in amphorae(database_url, ids["lb"])}
    order: list[str] = []
    cloud.amphora.hook = lambda ref: order.append(f"apply {ref.id}")
    scaled(database_url, ids["lb"], 4)
    reconcile(ids["lb"])
    (new,) = {a.id for a in amphorae(database_url, ids["lb"])} - before
    assert set(cloud.network.distributors[ids["lb"]].serving) == before | {new}
    # Every distributor call of this run came after the newcomer's configuration.
    last = cloud.network.distributed[-1]
    assert new in last.serving and f"apply {new}" in order
    assert cloud.compute.deleted == []
    assert statuses(database_url, ids)["lb"] == c.ACTIVE


def test_scale_in_drains_the_newest_and_removes_it_once_idle_without_connections(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = aa_lb(database_url, 3)
    reconcile(ids["lb"])
    *older, newest = by_age(database_url, ids["lb"])
    scaled(database_url, ids["lb"], 2)
    cloud.network.idle[newest.id] = 0.0  # the distributor still sends it flows
    with pytest.raises(NotYet) as waiting:
        reconcile(ids["lb"])
    assert waiting.value.delay == 1.0
    rows = {a.id: a.status for a in amphorae(database_url, ids["lb"])}
    assert rows == {older[0].id: c.ALLOCATED, older[1].id: c.ALLOCATED,
                    newest.id: DRAINING}
    dist = cloud.network.distributors[ids["lb"]]
    assert (set(dist.serving), dist.draining) == ({a.id for a in (*older, newest)},
                                                   (newest.id,))
    assert statuses(database_url, ids)["lb"] == c.PENDING_UPDATE
    # Idle, but no heartbeat since the drain began: still waiting.
    cloud.network.idle[newest.id] = 5.0
    with pytest.raises(NotYet):
        reconcile(ids["lb"])
    heartbeat(database_url, newest.id, connections=1)
    with pytest.raises(NotYet):
        reconcile(ids["lb"])
    heartbeat(database_url, newest.id, connections=0)
    reconcile(ids["lb"])
    assert {a.id for a in amphorae(database_url, ids["lb"])} == {a.id for a in older}
    assert cloud.compute.deleted == [newest.id]
    assert set(cloud.network.distributors[ids["lb"]].serving) == {a.id for a in older}
    assert statuses(database_url, ids)["lb"] == c.ACTIVE
    # The configuration pushed while draining went to the others only.
    assert newest.id not in {a.amphora_id for a in cloud.amphora.applied[-2:]}


def test_a_drain_ends_at_drain_timeout_whatever_the_traffic(
        database_url: str, cloud: fake.FakeCloud, reconcile, drain_timeout) -> None:
    ids = aa_lb(database_url, 2)
    reconcile(ids["lb"])
    newest = by_age(database_url, ids["lb"])[-1]
    cloud.network.idle[newest.id] = 0.0
    config.CONF.set_override("drain_timeout", 0, group="autoscaling")
    scaled(database_url, ids["lb"], 1)
    reconcile(ids["lb"])
    assert [a.id for a in amphorae(database_url, ids["lb"])] != [newest.id]
    assert len(amphorae(database_url, ids["lb"])) == 1
    assert cloud.compute.deleted == [newest.id]


def test_scaling_out_while_draining_serves_with_the_draining_one_again(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = aa_lb(database_url, 3)
    reconcile(ids["lb"])
    cloud.network.idle = {a.id: 0.0 for a in amphorae(database_url, ids["lb"])}
    scaled(database_url, ids["lb"], 2)
    with pytest.raises(NotYet):
        reconcile(ids["lb"])
    built = len(cloud.compute.built)
    scaled(database_url, ids["lb"], 3)
    reconcile(ids["lb"])
    assert [a.status for a in amphorae(database_url, ids["lb"])] == [c.ALLOCATED] * 3
    assert len(cloud.compute.built) == built and not cloud.compute.deleted
    assert cloud.network.distributors[ids["lb"]].draining == ()


def test_a_dead_amphora_leaves_the_distributor_before_its_replacement_boots(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = aa_lb(database_url, 3)
    reconcile(ids["lb"])
    dead, *alive = by_age(database_url, ids["lb"])
    cloud.compute.kill(dead.id)
    calls = len(cloud.network.distributed)
    reconcile(ids["lb"], (c.JOB_FAILOVER_AMPHORA, dead.id))
    first = cloud.network.distributed[calls]
    assert set(first.serving) == {a.id for a in alive}  # the replacement not yet booted
    now = {a.id for a in amphorae(database_url, ids["lb"])}
    assert len(now) == 3 and dead.id not in now and {a.id for a in alive} < now
    assert set(cloud.network.distributors[ids["lb"]].serving) == now
    assert cloud.compute.deleted == [dead.id]
    # The one removed was no peer of the configuration pushed meanwhile.
    assert all(cloud.network.vrrp_ips[dead.id] not in a.peers
               for a in cloud.amphora.applied[-3:])


def test_teardown_removes_the_distributor(database_url: str, cloud: fake.FakeCloud,
                                          reconcile) -> None:
    ids = aa_lb(database_url, 2)
    reconcile(ids["lb"])
    with engine.transaction(url=database_url) as session:
        session.get_one(m.LoadBalancer, ids["lb"]).provisioning_status = c.PENDING_DELETE
    reconcile(ids["lb"])
    assert ids["lb"] not in cloud.network.distributors
    assert ids["lb"] in cloud.network.removed_distributors
    assert amphorae(database_url, ids["lb"]) == []


def test_drift_of_the_distributor_is_repaired(database_url: str, cloud: fake.FakeCloud,
                                              reconcile) -> None:
    ids = aa_lb(database_url, 2)
    reconcile(ids["lb"])
    drivers = cloud.drivers("/nonexistent")
    assert ids["lb"] not in drift.drifted_load_balancers(drivers, database_url)
    cloud.network.distributors[ids["lb"]] = net.Distribution(
        load_balancer_id=ids["lb"], subnet_id=fake.VIP_SUBNET.id, vips=(), serving=())
    assert ids["lb"] in drift.drifted_load_balancers(drivers, database_url)
    reconcile(ids["lb"])
    assert len(cloud.network.distributors[ids["lb"]].serving) == 2


def test_a_network_driver_without_a_distributor_puts_the_load_balancer_in_error(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    cloud.network.distributes = False  # as the Neutron driver
    ids = aa_lb(database_url, 2)
    reconcile(ids["lb"])
    assert statuses(database_url, ids)["lb"] == c.ERROR
    assert cloud.compute.built == []
    assert any("needs a network driver with a distributor" in message
               for _, _, message in told(database_url, ids["lb"]))
