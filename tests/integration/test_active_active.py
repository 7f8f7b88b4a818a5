"""ACTIVE_ACTIVE end to end through `amphorae up` (root): the worker boots the amphorae,
plugs them behind the load balancer's distributor (drivers/network/distributor.py) and
scales them when the admin scale API says so; traffic from the host through the VIP.

One deployment and one load balancer for the module, the tests in order: 3 amphorae
spread 3,000 connections within +-15%; a 4th (PUT scale) moves no running request; a
killed amphora breaks only its own requests and is replaced; scale-in 4 -> 3 fails no
fresh connection; the status tree and an amphora failover through the API work as for
the other topologies; SOURCE_IP persistence holds across amphorae (HAProxy peers: the stick
entry one amphora made is on every other one); drift detection puts back a nexthop
deleted from the distributor; a cascade delete leaves nothing. The
member servers' ``/whoami`` names the member and who connected to it: the amphora's own
port on the member network, so the amphora.

Deployment: tests/deployment.py on 198.18.176.0/24 (VIPs) + 198.18.177.0/24 (members),
or the next pairs on other xdist workers; the distribution network is the default
198.19.32.0/19 on this deployment's own bridge. The autoscaler is off: the test scales.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ipaddress
import json
import re
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from amphorae.agent.haproxy import unix_command
from amphorae.drivers.network import distributor as dist
from tests import dataplane as dp
from tests import netns
from tests.deployment import Deployment, deployment, eventually, per_worker
from tests.integration.test_distributor import LongFlow, finish

MARKER = secrets.token_hex(3)
PORT = dp.HTTP.port  # the listener's port, as LongFlow's
CONNECTIONS = 3000
HEALTH_CHECK_INTERVAL = 0.25  # s; the default 1 s finds a dead amphora up to 1 s late
SPREAD = 0.15
UDP_PORT = 53
UDP_FLOWS = 300
LONG_FLOWS = 12
DRAIN_TIMEOUT = 40  # [autoscaling] drain_timeout here: a bound on the scale-in test
COUNT_MIN, COUNT_MAX = 3, 4


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.176.0/24", "198.18.177.0/24"),
                    extra_config=f"[autoscaling]\nenabled = false\n"
                                 f"drain_timeout = {DRAIN_TIMEOUT}\n"
                                 f"[controller_worker]\ndrift_check_interval = 2\n"
                                 f"[health_manager]\nhealth_check_interval = "
                                 f"{HEALTH_CHECK_INTERVAL}\n") as d:
        d.members.add("m1", 21)
        d.members.add("m2", 22)
        d.members.add("u1", 23, services=(dp.UDP,))
        d.start("up")
        yield d


@pytest.fixture(scope="module")
def lb(up: Deployment) -> Iterator[Any]:
    d = up
    flavor_id = d.flavor(f"aa-{MARKER}", {
        "loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_min": COUNT_MIN,
        "amphora_count_max": COUNT_MAX})
    started = time.monotonic()
    made = d.lb.create_load_balancer(
        vip_subnet_id=d.vip_subnet_id, flavor_id=flavor_id, name="e2e-aa",
        listeners=[{"protocol": "HTTP", "protocol_port": PORT, "default_pool": {
            "name": "pool", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": d.members.addresses[n], "protocol_port": dp.HTTP.port,
                         "subnet_id": d.member_subnet_id, "name": n}
                        for n in ("m1", "m2")]}}])
    try:
        d.wait_lb(made.id, timeout=60)
        print(f"\nACTIVE_ACTIVE x{COUNT_MIN}: ACTIVE {time.monotonic() - started:.2f} s "
              "after POST")
        yield made
    finally:
        if any(x.id == made.id for x in d.lb.load_balancers()):
            d.lb.delete_load_balancer(made.id, cascade=True)
            d.wait_gone(made.id)


# -- who answers ---------------------------------------------------------------------


def whoami(vip: str, source_port: int = 0, timeout: float = 5) -> tuple[str, str]:
    """(member, address the amphora connected from) of one request on a new connection."""
    member, _, peer = dp.http_request(vip, PORT, "/whoami", source_port=source_port,
                                      timeout=timeout).text.partition("|")
    return member, peer


def amphorae(d: Deployment, lb_id: str) -> dict[str, Any]:
    return {a.id: a for a in d.lb.amphorae(loadbalancer_id=lb_id) if a.status != "DELETED"}


def by_member_port(d: Deployment, lb_id: str) -> dict[str, str]:
    """Each serving amphora's address on the member network -> its id."""
    member_net = ipaddress.ip_network(d.member_cidr)
    out = {}
    for amp in amphorae(d, lb_id).values():
        found = netns.run("ip", "-json", "address", "show", ns=amp.compute_id).stdout
        for link in json.loads(found or "[]"):
            for a in link.get("addr_info", []):
                if ipaddress.ip_address(a["local"]) in member_net:
                    out[a["local"]] = amp.id
    return out


def spread(d: Deployment, lb: Any, count: int) -> collections.Counter[str]:
    """Amphora id -> how many of ``count`` new connections it served."""
    names = by_member_port(d, lb.id)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        peers = pool.map(lambda _: whoami(lb.vip_address)[1], range(count))
        return collections.Counter(names.get(p, p) for p in peers)


def scale(d: Deployment, lb_id: str, desired: int) -> None:
    reply = requests.put(f"{d.url}/v2/octavia/loadbalancers/{lb_id}/scale",
                         json={"scale": {"desired": desired}}, timeout=10)
    assert reply.status_code == 202, reply.text


def distributor_nexthops(d: Deployment) -> list[str]:
    (namespace,) = d.distributor_namespaces()
    return dist.Distributor(d.plumbing).serving(namespace)


def homes_and_flows(d: Deployment, lb: Any) -> tuple[dict[int, str], list[LongFlow]]:
    """Which amphora each fixed source port's flow goes to (a short request first, same
    flow hash), then a long-lived request from each port."""
    names = by_member_port(d, lb.id)
    base = 10000 + secrets.randbelow(20000)  # below the ephemeral range
    homes = {port: names[whoami(lb.vip_address, port)[1]]
             for port in range(base, base + LONG_FLOWS)}
    flows = [LongFlow(lb.vip_address, port) for port in homes]
    for flow in flows:
        flow.start()
    return homes, flows


# -- the tests, in order -------------------------------------------------------------


def test_three_amphorae_share_the_connections_evenly(up: Deployment, lb: Any) -> None:
    d = up
    amps = amphorae(d, lb.id)
    assert sorted((a.role, a.status) for a in amps.values()) == [("ACTIVE", "ALLOCATED")] * 3
    assert all(a.vrrp_ip and a.vrrp_ip != lb.vip_address for a in amps.values())
    assert len(distributor_nexthops(d)) == 3
    started = time.monotonic()
    got = spread(d, lb, CONNECTIONS)
    took = time.monotonic() - started
    print(f"\n{CONNECTIONS} connections in {took:.1f} s: {sorted(got.values())}")
    assert set(got) == set(amps), got
    share = CONNECTIONS / 3
    for count in got.values():
        assert abs(count - share) <= SPREAD * share, got
    # Each amphora's own statistics count what it served (from its heartbeats).
    def counted() -> None:
        stats = requests.get(f"{d.url}/v2/octavia/amphorae/{next(iter(amps))}/stats",
                             timeout=10).json()["amphora_stats"]
        assert sum(s["total_connections"] for s in stats) >= share * (1 - SPREAD), stats

    eventually(counted, "per-amphora statistics", timeout=10)


def test_a_fourth_amphora_under_load_moves_no_running_request(up: Deployment,
                                                              lb: Any) -> None:
    d = up
    before = set(amphorae(d, lb.id))
    _, flows = homes_and_flows(d, lb)
    time.sleep(1)
    asked = time.monotonic()
    scale(d, lb.id, 4)
    d.wait_lb(lb.id, timeout=60)
    active = time.monotonic() - asked
    (new,) = set(amphorae(d, lb.id)) - before
    names = by_member_port(d, lb.id)
    new_peer = next(p for p, a in names.items() if a == new)
    dp.wait_for(lambda: whoami(lb.vip_address)[1] == new_peer,
                "the new amphora serving a new connection", timeout=2 * dist.IDLE_TIMER + 10)
    carrying = time.monotonic() - asked
    finish(flows)
    broken = [(f.source_port, f.error) for f in flows if f.error or not f.answer]
    print(f"\nscale out 3 -> 4: ACTIVE after {active:.2f} s, the new amphora carries "
          f"traffic {carrying:.2f} s after the PUT; {len(flows)} running requests, "
          f"{len(broken)} broken")
    assert not broken, broken
    assert len(distributor_nexthops(d)) == 4


def test_a_killed_amphora_breaks_only_its_requests_and_is_replaced(up: Deployment,
                                                                   lb: Any) -> None:
    d = up
    before = amphorae(d, lb.id)
    homes, flows = homes_and_flows(d, lb)
    victim = before[collections.Counter(homes.values()).most_common()[0][0]]
    probe = dp.Probe(lambda: whoami(lb.vip_address, timeout=0.5), interval=0.02)
    probe.start()
    try:
        probe.wait_successes(10, 10)
        time.sleep(1)
        killed_at = time.monotonic()
        netns.crash_namespace(victim.compute_id)

        def replaced() -> bool:
            now = amphorae(d, lb.id)
            return (victim.id not in now and len(now) == len(before)
                    and d.lb.get_load_balancer(lb.id).provisioning_status == "ACTIVE")

        dp.wait_for(replaced, "the amphora replaced", timeout=30)
        restored = time.monotonic() - killed_at
        probe.wait_successes(20, 10)
    finally:
        probe.stop()
    finish(flows)
    gap = probe.gap(killed_at)
    mine = [f for f in flows if homes[f.source_port] == victim.id]
    others = [f for f in flows if homes[f.source_port] != victim.id]
    print(f"\nkill 1 of 4: new connections all served again {gap:.2f} s after the kill "
          f"({probe.failures()}/{len(probe.results)} failed meanwhile), replaced and ACTIVE "
          f"after {restored:.2f} s; its {len(mine)} running requests: "
          f"{sum(1 for f in mine if f.error)} broken, the others' {len(others)}: "
          f"{sum(1 for f in others if f.error)} broken")
    assert others and not [(f.source_port, f.error) for f in others if f.error]
    # The bound: the compute check finds the dead one within
    # HEALTH_CHECK_INTERVAL, the reconcile takes it out of the distributor.
    assert gap < 1, gap
    assert len(distributor_nexthops(d)) == 4
    assert {a.status for a in amphorae(d, lb.id).values()} == {"ALLOCATED"}


def test_scale_in_drains_the_newest_without_failing_a_connection(up: Deployment,
                                                                 lb: Any) -> None:
    d = up
    before = amphorae(d, lb.id)
    newest = max(before.values(), key=lambda a: (a.created_at, a.id))
    probe = dp.Probe(lambda: whoami(lb.vip_address, timeout=2), interval=0.1)
    probe.start()
    try:
        probe.wait_successes(10, 10)
        asked = time.monotonic()
        scale(d, lb.id, 3)
        dp.wait_for(lambda: d.lb.get_load_balancer(lb.id).provisioning_status == "ACTIVE"
                    and len(amphorae(d, lb.id)) == 3, "drained to 3",
                    timeout=DRAIN_TIMEOUT + 20)
        drained = time.monotonic() - asked
        probe.wait_successes(10, 10)
    finally:
        probe.stop()
    print(f"\nscale in 4 -> 3: the newest drained and removed {drained:.1f} s after the "
          f"PUT; {probe.failures()}/{len(probe.results)} fresh connections failed")
    assert newest.id not in amphorae(d, lb.id)
    assert probe.failures() == 0
    assert len(distributor_nexthops(d)) == 3


def test_status_tree_and_failover_through_the_api(up: Deployment, lb: Any) -> None:
    d = up
    tree = requests.get(f"{d.url}/v2/lbaas/loadbalancers/{lb.id}/status",
                        timeout=10).json()["statuses"]["loadbalancer"]
    assert (tree["provisioning_status"], tree["listeners"][0]["provisioning_status"]) == (
        "ACTIVE", "ACTIVE"), tree
    before = amphorae(d, lb.id)
    victim = min(before.values(), key=lambda a: (a.created_at, a.id))
    d.lb.failover_amphora(victim.id)  # 202: just that one
    d.wait_lb(lb.id)
    after = amphorae(d, lb.id)
    assert victim.id not in after and set(before) - {victim.id} <= set(after)
    assert len(after) == 3 and len(distributor_nexthops(d)) == 3
    assert len(spread(d, lb, 150)) == 3


def stick_keys(d: Deployment, amp: Any) -> set[str]:
    """The keys in every stick table of the amphora's HAProxy (its stats socket), IPv4
    ones as such (the tables are ipv6: ``::ffff:a.b.c.d``)."""
    (sock,) = (d.state / "amphorae" / amp.compute_id.removeprefix("amphora-")).rglob(
        "haproxy.sock")
    names = re.findall(r"# table: ([^,]+),", unix_command(sock, "show table"))
    return {key.removeprefix("::ffff:") for name in names
            for key in re.findall(r"key=(\S+)", unix_command(sock, f"show table {name}"))}


def test_source_ip_persistence_holds_across_amphorae(up: Deployment, lb: Any) -> None:
    d = up
    pool_id = d.lb.get_load_balancer(lb.id).pools[0]["id"]
    d.settle(lb.id, d.lb.update_pool, pool_id, session_persistence={"type": "SOURCE_IP"})
    client = str(next(ipaddress.ip_network(d.vip_cidr).hosts()))  # the host, on the bridge
    amps = amphorae(d, lb.id).values()
    assert not any(client in stick_keys(d, amp) for amp in amps)
    first, _ = whoami(lb.vip_address)
    # One amphora served it; the peers gave every other one the entry (a few ms).
    eventually(lambda: _equal({a.id: client in stick_keys(d, a) for a in amps},
                              {a.id: True for a in amps}),
               "the client's stick entry on every amphora", timeout=5)
    names = by_member_port(d, lb.id)
    got = [whoami(lb.vip_address) for _ in range(60)]
    assert len({names.get(p) for _, p in got}) == 3, got  # the flows went everywhere
    assert {member for member, _ in got} == {first}, got


def _equal(got: object, want: object) -> None:
    assert got == want, got


def test_a_distributor_that_lost_an_amphora_is_repaired(up: Deployment, lb: Any) -> None:
    d = up
    (namespace,) = d.distributor_namespaces()
    lost = distributor_nexthops(d)[0]
    netns.run("ip", "nexthop", "del", "id", str(dist.nexthop_id(lost)), ns=namespace)
    assert lost not in distributor_nexthops(d)
    took = dp.wait_for(lambda: lost in distributor_nexthops(d), "drift repaired",
                       timeout=15)
    print(f"\ndistributor drift (a nexthop deleted) repaired after {took:.1f} s")
    assert len(distributor_nexthops(d)) == 3


def udp_whoami(vip: str) -> str:
    """The address the UDP member saw one new flow (a fresh source port) come from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.connect((vip, UDP_PORT))
        udp.send(b"whoami")
        member, _, peer = udp.recv(4096).decode().partition("|")
    assert member == "u1", member
    return peer


def test_udp_flows_are_spread_over_the_amphorae(up: Deployment, lb: Any) -> None:
    d = up
    listener = d.settle(lb.id, d.lb.create_listener, loadbalancer_id=lb.id,
                        protocol="UDP", protocol_port=UDP_PORT)
    pool = d.settle(lb.id, d.lb.create_pool, listener_id=listener.id, protocol="UDP",
                    lb_algorithm="ROUND_ROBIN")
    d.settle(lb.id, d.lb.create_member, pool.id, address=d.members.addresses["u1"],
             protocol_port=dp.UDP.port, subnet_id=d.member_subnet_id)
    names = by_member_port(d, lb.id)
    homes = collections.Counter(names.get(peer, peer)
                                for peer in (udp_whoami(lb.vip_address)
                                             for _ in range(UDP_FLOWS)))
    print(f"\nUDP: {UDP_FLOWS} flows over {len(names)} amphorae: {sorted(homes.values())}")
    assert set(homes) == set(amphorae(d, lb.id)), homes  # each one, and nobody else
    assert min(homes.values()) > UDP_FLOWS / len(homes) * (1 - 2 * SPREAD), homes


def test_cascade_delete_leaves_nothing(up: Deployment, lb: Any) -> None:
    d = up
    assert d.distributor_namespaces()
    d.lb.delete_load_balancer(lb.id, cascade=True)
    d.wait_gone(lb.id)
    eventually(lambda: _nothing_left(d), "nothing left of the load balancer", timeout=15)
    with pytest.raises(OSError):
        dp.http_request(lb.vip_address, PORT, timeout=1)


def _nothing_left(d: Deployment) -> None:
    left = d.leftovers()
    assert left == {}, left
