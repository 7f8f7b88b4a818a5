"""ACTIVE_ACTIVE's distributor (drivers/network/distributor.py) on real namespaces (root).

A VIP bridge and a distribution bridge; the host is the client, on the VIP bridge. Four
"amphorae" are namespaces with a port on each bridge, the VIP on loopback (served without
answering ARP), and tests/dataplane.py's member server answering with its name on the VIP.
The distributor's namespace answers ARP for the VIP and routes each flow to one of them;
the amphorae reply straight to the host.

- 3,000 connections from varying source ports spread within +-15% over 3 amphorae;
- adding a 4th while long-lived requests run moves none of them (each completes), and the
  newcomer gets new flows once buckets have been idle for the group's idle timer;
- removing one (its death detected) breaks only the flows it held: every long-lived
  request on the others completes.

Addresses: two random free /24s of 198.19.128.0/17 (test_netns_compute.free_cidr).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import errno
import http.client
import ipaddress
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amphorae.drivers.network import distributor as dist
from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.drivers.network import ports
from tests import dataplane as dp
from tests import leftovers, netns
from tests.integration.test_netns_compute import free_cidr

MARKER = secrets.token_hex(3)
CONNECTIONS = 3000
SPREAD = 0.15
LONG_FLOWS = 12
LONG_BODY = 25  # bytes of a long-lived POST, one per TRICKLE seconds: ~5 s per request
TRICKLE = 0.2


class Site:
    def __init__(self, workdir: Path) -> None:
        self.p = plumbing_mod.Plumbing()
        self.workdir = workdir
        front, back = (ipaddress.ip_network(free_cidr()) for _ in range(2))
        self.front_net, self.back_net = front, back
        self.vip = str(front[5])
        self.host = f"{front[254]}/{front.prefixlen}"
        self.vip_bridge, self.back_bridge = f"amph-{MARKER}v", f"amph-{MARKER}d"
        self.servers: dict[str, object] = {}
        self.amphorae: dict[str, str] = {}  # name -> back address
        self.distributor = dist.Distributor(self.p)

    def namespace(self, name: str) -> str:
        return f"amph-{MARKER}-{name}"

    def build(self) -> None:
        for bridge in (self.vip_bridge, self.back_bridge):
            self.p.ensure_bridge(bridge)
        self.p.ensure_host_address(self.vip_bridge, self.host)
        for number in range(4):
            self.add_amphora(f"a{number}", number)

    def add_amphora(self, name: str, number: int) -> None:
        ns = self.namespace(name)
        self.p.ensure_netns(ns)
        ports.plug_port(self.p, ns, self.vip_bridge, "vip0", None,
                        f"{self.front_net[10 + number]}/{self.front_net.prefixlen}")
        back = str(self.back_net[10 + number])
        ports.plug_port(self.p, ns, self.back_bridge, "back0", None,
                        f"{back}/{self.back_net.prefixlen}")
        dist.serve_without_arp(self.p, ns, [self.vip])
        self.servers[name] = dp.start_member_server(
            ns, name, self.vip, [{"kind": "http", "port": dp.HTTP.port}],
            self.workdir / f"{name}.log")
        self.amphorae[name] = back

    def distribute(self, *names: str) -> None:
        self.distributor.ensure(dist.Distribution(
            namespace=self.namespace("dist"),
            front=dist.Leg(self.vip_bridge, f"{self.front_net[2]}/{self.front_net.prefixlen}"),
            back=dist.Leg(self.back_bridge, f"{self.back_net[1]}/{self.back_net.prefixlen}"),
            vips=(self.vip,), amphorae=tuple(self.amphorae[n] for n in names)))

    def buckets(self) -> collections.Counter[str]:
        """Buckets of the group per amphora name."""
        by_address = {a: n for n, a in self.amphorae.items()}
        by_id = {dist.nexthop_id(a): by_address[a] for a in self.amphorae.values()}
        out = netns.run("ip", "-json", "nexthop", "bucket", "show", "id",
                        str(dist.GROUP_ID), ns=self.namespace("dist")).stdout
        return collections.Counter(by_id[b["bucket"]["nhid"]] for b in json.loads(out))

    def teardown(self) -> None:
        for proc in self.servers.values():
            dp.stop_member_server(proc)  # type: ignore[arg-type]
        self.distributor.remove(self.namespace("dist"))
        for name in self.amphorae:
            for ifname in ("vip0", "back0"):
                ports.unplug_port(self.p, self.namespace(name), ifname)
            self.p.delete_netns(self.namespace(name))
        for bridge in (self.vip_bridge, self.back_bridge):
            self.p.delete_link(bridge)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    netns.require_root()
    leftovers.register(f"amph-{MARKER}")
    s = Site(tmp_path_factory.mktemp("distributor"))
    try:
        s.build()
        yield s
    finally:
        s.teardown()


def ask(vip: str, source_port: int = 0) -> str:
    return dp.http_request(vip, dp.HTTP.port, source_port=source_port).text


def spread(site: Site, count: int) -> collections.Counter[str]:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return collections.Counter(pool.map(lambda _: ask(site.vip), range(count)))


class LongFlow(threading.Thread):
    """A POST whose body trickles in for ~5 s from a fixed source port; ``answer`` is
    the amphora that answered it, ``error`` what broke it."""

    def __init__(self, vip: str, source_port: int) -> None:
        super().__init__(daemon=True)
        self.vip, self.source_port = vip, source_port
        self.answer: str | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            sock = dp.connect(self.vip, dp.HTTP.port, source_port=self.source_port,
                              timeout=10)
            conn = http.client.HTTPConnection(self.vip, dp.HTTP.port, timeout=10)
            conn.sock = sock
            with contextlib.closing(conn), contextlib.closing(sock):
                conn.putrequest("POST", "/")
                conn.putheader("Content-Length", str(LONG_BODY))
                conn.endheaders()
                for _ in range(LONG_BODY):
                    sock.sendall(b"x")
                    time.sleep(TRICKLE)
                self.answer = conn.getresponse().read().decode()
        except Exception as exc:  # reported by the test
            self.error = exc


def long_flows(site: Site) -> tuple[dict[int, str], list[LongFlow]]:
    """Where each fixed source port's flow goes (a short request first: same flow hash),
    then a long-lived request from each. Fresh ports each time: a port's last connection
    may still linger in TIME_WAIT on the amphora that closed it."""
    for _ in range(5):  # another process of the host may hold one of the ports
        base = 10000 + secrets.randbelow(20000)  # below the ephemeral range
        try:
            homes = {port: ask(site.vip, port) for port in range(base, base + LONG_FLOWS)}
            break
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    else:
        raise AssertionError("five blocks of source ports were all taken")
    flows = [LongFlow(site.vip, port) for port in homes]
    for flow in flows:
        flow.start()
    return homes, flows


def finish(flows: list[LongFlow]) -> None:
    for flow in flows:
        flow.join(LONG_BODY * TRICKLE + 15)


def test_flows_spread_evenly_over_three_amphorae(site: Site) -> None:
    site.distribute("a0", "a1", "a2")
    assert site.distributor.serving(site.namespace("dist")) == sorted(
        site.amphorae[n] for n in ("a0", "a1", "a2"))
    assert site.buckets().keys() == {"a0", "a1", "a2"}
    got = spread(site, CONNECTIONS)
    print(f"\n{CONNECTIONS} connections: {dict(sorted(got.items()))}")
    assert got.keys() == {"a0", "a1", "a2"}, got
    share = CONNECTIONS / 3
    for name, count in got.items():
        assert abs(count - share) <= SPREAD * share, (name, got)


def test_adding_an_amphora_moves_no_running_flow(site: Site) -> None:
    site.distribute("a0", "a1", "a2")
    homes, flows = long_flows(site)
    time.sleep(1)
    site.distribute("a0", "a1", "a2", "a3")  # under way: every flow sends a byte per 0.2 s
    finish(flows)
    broken = [(f.source_port, homes[f.source_port], f.error) for f in flows if f.error]
    assert not broken, broken
    assert {f.source_port: f.answer for f in flows} == homes
    # Buckets idle for the idle timer go to the newcomer, and with them new flows.
    dp.wait_for(lambda: site.buckets()["a3"] >= dist.BUCKETS // 8,
                "the 4th amphora given an eighth of the buckets",
                timeout=2 * dist.IDLE_TIMER + 10)
    got = spread(site, 400)
    print(f"\nafter adding a3: buckets {dict(site.buckets())}, 400 new flows {dict(got)}")
    assert got["a3"] > 0, got


def test_removing_an_amphora_breaks_only_its_own_flows(site: Site) -> None:
    site.distribute("a0", "a1", "a2", "a3")
    homes, flows = long_flows(site)
    assert set(homes.values()) != {"a1"}, homes  # some flows must be elsewhere
    time.sleep(1)
    site.distribute("a0", "a2", "a3")  # a1 found dead
    finish(flows)
    others = [f for f in flows if homes[f.source_port] != "a1"]
    broken = [(f.source_port, homes[f.source_port], f.error) for f in others if f.error]
    assert not broken, broken
    assert all(f.answer == homes[f.source_port] for f in others)
    assert "a1" not in site.buckets()
    assert "a1" not in spread(site, 300)
