"""End to end through `amphorae up` (root): openstacksdk against the API, the worker
booting real netns amphorae, traffic from the host through the VIP to member namespaces.

One deployment for the module per xdist worker (marker-named, see tests/deployment.py) on
198.18.80.0/24 (VIPs) and 198.18.81.0/24 (members), or the next pairs up on other
workers; members m1..m4 serve HTTP on 8080.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from amphorae.drivers.network import ports
from tests import dataplane as dp
from tests import netns
from tests.deployment import Deployment, answers, deployment, eventually, per_worker

MARKER = secrets.token_hex(3)
MEMBERS = ("m1", "m2", "m3", "m4")


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.80.0/24", "198.18.81.0/24")) as d:
        for i, name in enumerate(MEMBERS, start=1):
            d.members.add(name, 20 + i)
        d.start("up")
        yield d


def build_http_tree(d: Deployment, lb_id: str, names: tuple[str, ...]) -> tuple[Any, Any]:
    listener, pool = d.http_tree(lb_id, names)
    d.settle(lb_id, d.lb.create_health_monitor, pool_id=pool.id, type="HTTP", delay=1,
           timeout=1, max_retries=1, max_retries_down=1, url_path="/")
    return listener, pool


def add_member(d: Deployment, lb_id: str, pool_id: str, name: str) -> Any:
    return d.settle(lb_id, d.lb.create_member, pool_id, name=name,
                  address=d.members.addresses[name], protocol_port=dp.HTTP.port,
                  subnet_id=d.member_subnet_id)


def assert_tree_active(d: Deployment, lb_id: str) -> None:
    # openstacksdk has no call for the status tree: plain HTTP.
    tree = requests.get(f"{d.url}/v2/lbaas/loadbalancers/{lb_id}/status",
                        timeout=10).json()["statuses"]["loadbalancer"]
    statuses = [tree["provisioning_status"]]
    for listener in tree["listeners"]:
        statuses.append(listener["provisioning_status"])
        for pool in listener["pools"]:
            statuses.append(pool["provisioning_status"])
            statuses += [mem["provisioning_status"] for mem in pool["members"]]
            if pool.get("health_monitor"):
                statuses.append(pool["health_monitor"]["provisioning_status"])
    assert set(statuses) == {"ACTIVE"}, json.dumps(tree, indent=1)


def delete_and_check_nothing_left(d: Deployment, lb_id: str, vip: str) -> None:
    d.lb.delete_load_balancer(lb_id, cascade=True)
    d.wait_gone(lb_id)
    eventually(lambda: _nothing_left(d), "nothing left of the load balancer", timeout=10)
    with pytest.raises(OSError):
        dp.http_request(vip, 80, timeout=1)


def _nothing_left(d: Deployment) -> None:
    assert d.leftovers() == {}


def test_single_load_balancer_lifecycle(up: Deployment) -> None:
    d = up
    started = time.monotonic()
    lb = d.lb.create_load_balancer(vip_subnet_id=d.vip_subnet_id, name="e2e-single")
    assert lb.provisioning_status == "PENDING_CREATE"
    d.wait_lb(lb.id)
    active_after = time.monotonic() - started
    amps = list(d.lb.amphorae(loadbalancer_id=lb.id))
    assert [(a.role, a.status) for a in amps] == [("STANDALONE", "ALLOCATED")]

    _, pool = build_http_tree(d, lb.id, ("m1", "m2", "m3"))
    assert_tree_active(d, lb.id)
    eventually(lambda: dp.assert_round_robin(answers(lb.vip_address, 30),
                                             ["m1", "m2", "m3"]), "round robin over 3")

    # A fourth member joins; then m2 leaves.
    add_member(d, lb.id, pool.id, "m4")
    eventually(lambda: dp.assert_round_robin(answers(lb.vip_address, 40), list(MEMBERS)),
               "round robin over 4")
    m2 = next(mem for mem in d.lb.members(pool.id) if mem.name == "m2")
    d.settle(lb.id, d.lb.delete_member, m2.id, pool.id)
    eventually(lambda: dp.assert_round_robin(answers(lb.vip_address, 30),
                                             ["m1", "m3", "m4"]), "m2 gone")

    # SOURCE_IP: one client always reaches the same member.
    d.settle(lb.id, d.lb.update_pool, pool.id, lb_algorithm="SOURCE_IP")
    eventually(lambda: _one_member(answers(lb.vip_address, 12)), "one member per client")

    # L7: /admin is refused, /api goes to a pool of its own (m1 only).
    listener_id = d.lb.get_pool(pool.id).listeners[0]["id"]
    api_pool = d.settle(lb.id, d.lb.create_pool, loadbalancer_id=lb.id, protocol="HTTP",
                      lb_algorithm="ROUND_ROBIN")
    add_member(d, lb.id, api_pool.id, "m1")
    reject = d.settle(lb.id, d.lb.create_l7_policy, listener_id=listener_id,
                    action="REJECT", position=1)
    d.settle(lb.id, d.lb.create_l7_rule, reject.id, type="PATH",
           compare_type="STARTS_WITH", value="/admin")
    to_api = d.settle(lb.id, d.lb.create_l7_policy, listener_id=listener_id,
                    action="REDIRECT_TO_POOL", redirect_pool_id=api_pool.id, position=2)
    d.settle(lb.id, d.lb.create_l7_rule, to_api.id, type="PATH",
           compare_type="STARTS_WITH", value="/api")
    assert_tree_active(d, lb.id)
    eventually(lambda: _l7_routes(lb.vip_address), "L7 routing")

    print(f"\nSINGLE: ACTIVE {active_after:.2f} s after POST; amphora {amps[0].id}")
    delete_and_check_nothing_left(d, lb.id, lb.vip_address)


def _one_member(got: list[str]) -> None:
    assert len(set(got)) == 1, got


def _l7_routes(vip: str) -> None:
    assert dp.http_request(vip, 80, "/admin/x").status == 403
    assert {dp.http_request(vip, 80, "/api/v1").text for _ in range(6)} == {"m1"}
    assert dp.http_request(vip, 80, "/").status == 200


def test_active_standby_load_balancer_lifecycle(up: Deployment) -> None:
    d = up
    started = time.monotonic()
    lb = d.lb.create_load_balancer(vip_subnet_id=d.vip_subnet_id, flavor_id=d.pair_flavor(),
                                   name="e2e-pair")
    d.wait_lb(lb.id)
    active_after = time.monotonic() - started
    amps = {a.role: a for a in d.lb.amphorae(loadbalancer_id=lb.id)}
    assert sorted(amps) == ["BACKUP", "MASTER"]
    assert {a.status for a in amps.values()} == {"ALLOCATED"}
    assert all(a.vrrp_ip and a.ha_ip == lb.vip_address for a in amps.values())

    build_http_tree(d, lb.id, ("m1", "m2", "m3"))
    assert_tree_active(d, lb.id)
    eventually(lambda: dp.assert_round_robin(answers(lb.vip_address, 30),
                                             ["m1", "m2", "m3"]), "round robin over 3")
    # keepalived put the VIP on the MASTER only.
    holders = {role: _holds(amp.compute_id, lb.vip_address) for role, amp in amps.items()}
    assert holders == {"MASTER": True, "BACKUP": False}

    print(f"\nACTIVE_STANDBY: ACTIVE {active_after:.2f} s after POST")
    delete_and_check_nothing_left(d, lb.id, lb.vip_address)


def _holds(namespace: str, address: str) -> bool:
    out = netns.run("ip", "-o", "address", "show", "dev", ports.VIP_IFNAME, ns=namespace)
    return f" {address}/" in out.stdout


def test_a_restart_keeps_amphorae_serving_and_adopts_them(up: Deployment) -> None:
    d = up
    lb = d.lb.create_load_balancer(vip_subnet_id=d.vip_subnet_id, name="e2e-restart")
    d.wait_lb(lb.id)
    _, pool = build_http_tree(d, lb.id, ("m1",))
    eventually(lambda: _only(answers(lb.vip_address, 3), "m1"), "m1 serves")
    before = {a.id for a in d.lb.amphorae(loadbalancer_id=lb.id)}

    assert d.stop("up", signal.SIGINT) == 0  # Ctrl-C
    assert answers(lb.vip_address, 5) == ["m1"] * 5  # the data plane does not notice
    d.start("up")
    add_member(d, lb.id, pool.id, "m2")  # the restarted worker changes the same amphora
    eventually(lambda: dp.assert_round_robin(answers(lb.vip_address, 10), ["m1", "m2"]),
               "m1 and m2 after the restart")
    assert {a.id for a in d.lb.amphorae(loadbalancer_id=lb.id)} == before
    delete_and_check_nothing_left(d, lb.id, lb.vip_address)


def _only(got: list[str], name: str) -> None:
    assert set(got) == {name}, got
