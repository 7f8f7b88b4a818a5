"""Amphorae that die are noticed and replaced, under traffic (root): `amphorae up` with
the embedded health settings (heartbeats every 1 s, 5 s timeout), openstacksdk, traffic
from the host through the VIP. Deployment: tests/deployment.py on 198.18.92.0/24 +
198.18.93.0/24 (or the next pairs on other xdist workers).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from amphorae.drivers.network import ports
from tests import dataplane as dp
from tests import netns
from tests.deployment import Deployment, answers, deployment, eventually, per_worker

MARKER = secrets.token_hex(3)
TIMEOUT = 5  # the embedded heartbeat_timeout
RESTORED_WITHIN = TIMEOUT + 5  # the bound: heartbeat_timeout plus 5 s


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.92.0/24", "198.18.93.0/24")) as d:
        d.members.add("m1", 21)
        d.members.add("m2", 22)
        d.start("up")
        yield d


@pytest.fixture(scope="module")
def pair_flavor(up: Deployment) -> str:
    return up.pair_flavor()


def serving_lb(d: Deployment, flavor_id: str | None = None) -> Any:
    """A load balancer with an HTTP listener over m1 and m2 with an HTTP monitor,
    ACTIVE and answering; deleted (with a check that nothing is left) afterwards."""
    lb = d.lb.create_load_balancer(
        vip_subnet_id=d.vip_subnet_id, flavor_id=flavor_id,
        listeners=[{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
            "name": "pool", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "healthmonitor": {"type": "HTTP", "delay": 1, "timeout": 1, "max_retries": 1,
                              "max_retries_down": 1},
            "members": [{"address": d.members.addresses[n], "protocol_port": dp.HTTP.port,
                         "subnet_id": d.member_subnet_id, "name": n}
                        for n in ("m1", "m2")]}}])
    d.wait_lb(lb.id)
    eventually(lambda: _both(lb.vip_address), "traffic through the VIP")
    return lb


@pytest.fixture
def lbs(up: Deployment) -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for lb in made:
        up.lb.delete_load_balancer(lb.id, cascade=True)
    for lb in made:
        up.wait_gone(lb.id)
    eventually(lambda: _nothing_left(up), "nothing left", timeout=15)


def _nothing_left(d: Deployment) -> None:
    left = d.leftovers()
    assert left == {}, f"{left}\n{d.logs(200)}"


def _both(vip: str) -> None:
    assert set(answers(vip, 6)) == {"m1", "m2"}


def tree_statuses(d: Deployment, lb_id: str) -> tuple[str, str, str, dict[str, str]]:
    tree = requests.get(f"{d.url}/v2/lbaas/loadbalancers/{lb_id}/status",
                        timeout=10).json()["statuses"]["loadbalancer"]
    listener = tree["listeners"][0]
    pool = listener["pools"][0]
    return (tree["operating_status"], listener["operating_status"],
            pool["operating_status"],
            {mem["name"]: mem["operating_status"] for mem in pool["members"]})


def amphorae(d: Deployment, lb_id: str) -> dict[str, Any]:
    return {a.id: a for a in d.lb.amphorae(loadbalancer_id=lb_id) if a.status != "DELETED"}


def test_a_stopped_backend_shows_in_the_status_tree(up: Deployment, lbs: list) -> None:
    d = up
    lb = serving_lb(d)
    lbs.append(lb)
    eventually(lambda: _equal(tree_statuses(d, lb.id), (
        "ONLINE", "ONLINE", "ONLINE", {"m1": "ONLINE", "m2": "ONLINE"})), "all ONLINE")
    d.members.stop("m2")
    try:
        eventually(lambda: _equal(tree_statuses(d, lb.id), (
            "DEGRADED", "ONLINE", "DEGRADED", {"m1": "ONLINE", "m2": "ERROR"})),
            "m2 ERROR, pool and load balancer DEGRADED")
    finally:
        d.members.start("m2")
    eventually(lambda: _equal(tree_statuses(d, lb.id), (
        "ONLINE", "ONLINE", "ONLINE", {"m1": "ONLINE", "m2": "ONLINE"})), "ONLINE again")
    # Statistics from the heartbeats: the requests sent so far are counted.
    stats = d.lb.get_load_balancer_statistics(lb.id)
    assert stats.total_connections > 0 and stats.bytes_in > 0 and stats.bytes_out > 0


def _equal(got: object, want: object) -> None:
    assert got == want, got


def _fail(d: Deployment, lb: Any, kill: Callable[[str], object]) -> dict[str, float]:
    """Kill one amphora under traffic; returns the traffic gap and when the load
    balancer was ACTIVE again with its amphorae replaced."""
    before = amphorae(d, lb.id)
    victim = next((a for a in before.values() if a.role == "MASTER"), None) \
        or next(iter(before.values()))
    probe = dp.Probe(lambda: _assert_served(lb.vip_address))
    probe.start()
    try:
        probe.wait_successes(10, 10)
        killed_at = time.monotonic()
        kill(victim.compute_id)

        def replaced() -> bool:
            now = amphorae(d, lb.id)
            return (victim.id not in now and len(now) == len(before)
                    and d.lb.get_load_balancer(lb.id).provisioning_status == "ACTIVE")

        dp.wait_for(replaced, "amphora replaced", timeout=RESTORED_WITHIN + 20)
        restored = time.monotonic() - killed_at
        probe.wait_successes(10, 20)
    finally:
        probe.stop()
    assert not netns.run("ip", "netns", "list").stdout.count(victim.compute_id)
    assert {a.status for a in amphorae(d, lb.id).values()} == {"ALLOCATED"}
    return {"gap": probe.gap(killed_at), "restored": restored,
            "failed": probe.failures(), "requests": len(probe.results)}


def _assert_served(vip: str) -> None:
    assert dp.http_request(vip, 80, timeout=0.5).status == 200


def _kill_processes(namespace: str) -> None:
    netns.crash_namespace(namespace)


def _delete_namespace(namespace: str) -> None:
    netns.run("ip", "netns", "delete", namespace)


@pytest.mark.parametrize("kill", [_kill_processes, _delete_namespace],
                         ids=["sigkill", "netns-deleted"])
def test_a_dead_single_amphora_is_replaced(up: Deployment, lbs: list,
                                           kill: Callable[[str], object]) -> None:
    lb = serving_lb(up)
    lbs.append(lb)
    got = _fail(up, lb, kill)
    print(f"\nSINGLE, {kill.__name__}: traffic gap {got['gap']:.2f} s, replaced and "
          f"ACTIVE after {got['restored']:.2f} s ({got['failed']}/{got['requests']} failed)")
    assert got["restored"] < RESTORED_WITHIN, got
    eventually(lambda: _both(lb.vip_address), "both members through the new amphora")
    # The failover is an event that says why.
    (event,) = requests.get(f"{up.url}/v2/octavia/events", timeout=10, params={
        "load_balancer_id": lb.id, "kind": "FAILOVER"}).json()["events"]
    # Either way the compute check found it (within a check interval), not the
    # heartbeat timeout: the agent's death is seen directly.
    assert event["message"].endswith(
        "is failed over: its compute instance is gone or broken (netns: namespace "
        "deleted, agent dead)"), event


def test_active_standby_master_dies_backup_serves_and_a_new_backup_comes(
        up: Deployment, lbs: list, pair_flavor: str) -> None:
    d = up
    lb = serving_lb(d, pair_flavor)
    lbs.append(lb)
    got = _fail(d, lb, _kill_processes)
    print(f"\nACTIVE_STANDBY: traffic gap {got['gap']:.2f} s, redundancy restored after "
          f"{got['restored']:.2f} s ({got['failed']}/{got['requests']} failed)")
    assert got["gap"] < 3.0, got  # the VRRP gap, not the rebuild
    assert got["restored"] < RESTORED_WITHIN, got
    now = amphorae(d, lb.id)
    assert sorted(a.role for a in now.values()) == ["BACKUP", "MASTER"]
    holders = [a.role for a in now.values() if _holds(a.compute_id, lb.vip_address)]
    assert len(holders) == 1, holders


def _holds(namespace: str, address: str) -> bool:
    out = netns.run("ip", "-o", "address", "show", "dev", ports.VIP_IFNAME, ns=namespace)
    return f" {address}/" in out.stdout


def test_failover_through_the_api_replaces_amphorae(up: Deployment, lbs: list,
                                                     pair_flavor: str) -> None:
    d = up
    lb = serving_lb(d, pair_flavor)
    lbs.append(lb)
    first = set(amphorae(d, lb.id))
    d.lb.failover_load_balancer(lb.id)  # 202: every amphora replaced
    d.wait_lb(lb.id)
    second = amphorae(d, lb.id)
    assert len(second) == 2 and not first & set(second)
    eventually(lambda: _both(lb.vip_address), "traffic after the load balancer failover")
    backup = next(a for a in second.values() if a.role == "BACKUP")
    d.lb.failover_amphora(backup.id)  # 202: just that one
    d.wait_lb(lb.id)
    third = amphorae(d, lb.id)
    assert backup.id not in third and set(second) - {backup.id} <= set(third)
    assert sorted(a.role for a in third.values()) == ["BACKUP", "MASTER"]
    eventually(lambda: _both(lb.vip_address), "traffic after the amphora failover")
