"""ACTIVE_ACTIVE's distributor on one host: spreads a VIP's flows over the amphorae of a
load balancer, and keeps each running flow on its amphora when that set changes.

One network namespace per load balancer, with two legs:

- ``front``, a port on the VIP network. It answers ARP for the VIPs (proxy neighbour
  entries: the kernel answers for an address it routes out of *another* interface) and
  takes the clients' packets;
- ``back``, a port on the load balancer's own distribution network, where each amphora
  has a port too. Each VIP is routed there through a *resilient* nexthop group over the
  amphorae's addresses, chosen by a hash of the flow (``fib_multipath_hash_policy = 1``:
  addresses, protocol and ports).

A resilient group (Linux 5.13) deals a fixed table of buckets out to its nexthops. When
the set changes, only the buckets that must move do: a removed (dead) amphora's buckets
at once (only its flows are affected), and for an added one only buckets that carried no
packet for ``idle_timer`` seconds, so a flow that is running keeps its amphora. The
distributor keeps no per-flow state: the amphorae hold the VIPs on loopback without
answering ARP for them (:func:`serve_without_arp`) and reply straight to the clients
through their own ports on the VIP network (direct server return), so the distributor
sees one direction only.

IPv4 only, for now: IPv6 needs proxy NDP, and is refused with a ValueError.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Sequence

from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.drivers.network import ports

FRONT = "front0"
BACK = "back0"
GROUP_ID = 1  # the resilient group's id in the distributor's namespace
BUCKETS = 512  # enough that 2 to 32 amphorae each get a share within ~6% of the others
IDLE_TIMER = 10  # seconds a bucket must be idle before it may move to an added amphora
WEIGHT = 255  # a serving amphora's weight in the group
DRAINING_WEIGHT = 1  # a draining one's: its idle buckets go to the others, busy ones stay

_SETTINGS = {
    "net.ipv4.ip_forward": "1",
    # A custom hash of exactly the flow: addresses, protocol and ports. Policy 1 (L4)
    # would reuse a hash the packet carries already, which for a sender on this host is
    # its socket's random one: the same flow would land elsewhere from another socket.
    "net.ipv4.fib_multipath_hash_policy": "3",
    "net.ipv4.fib_multipath_hash_fields": "0x0037",
    # Packets come in on front and leave on back: with reverse-path filtering on, replies
    # that never come back through here would make clients look spoofed.
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # A client and an amphora are not neighbours on any leg: no redirects to send.
    "net.ipv4.conf.all.send_redirects": "0",
}

# An amphora that serves VIPs it does not own: they are on loopback, and no interface
# answers ARP for them (arp_ignore 1: only for addresses of the asking interface) or uses
# them as the source of its own ARP requests (arp_announce 2).
_SERVE_WITHOUT_ARP = {
    "net.ipv4.conf.all.arp_ignore": "1",
    "net.ipv4.conf.all.arp_announce": "2",
}


@dataclasses.dataclass(frozen=True)
class Leg:
    bridge: str
    address: str  # ip/prefixlen of the distributor on that bridge


@dataclasses.dataclass(frozen=True)
class Distribution:
    """What one load balancer's distributor should be."""

    namespace: str
    front: Leg
    back: Leg
    vips: tuple[str, ...]
    amphorae: tuple[str, ...]  # the serving amphorae's addresses on the back network
    # Addresses of amphorae being drained (also in ``amphorae``): the group keeps their
    # busy buckets, and moves each once it has been idle for the idle timer.
    draining: tuple[str, ...] = ()


def nexthop_id(address: str) -> int:
    """A stable id for an amphora's nexthop, whatever else is in the group: the group is
    replaced by ids, so an amphora that stays keeps its buckets."""
    digest = hashlib.sha256(address.encode()).digest()
    return GROUP_ID + 1 + int.from_bytes(digest[:4], "big") % (2**31 - 2)


class Distributor:
    def __init__(self, plumbing: plumbing_mod.Plumbing | None = None) -> None:
        self.plumbing = plumbing or plumbing_mod.Plumbing()

    def ensure(self, d: Distribution) -> None:
        """Make the distributor match ``d``; idempotent, also after a crash half-way."""
        for address in (*d.vips, *d.amphorae, d.front.address, d.back.address):
            if ipaddress.ip_interface(address).version != 4:
                raise ValueError(f"{address}: the distributor is IPv4 only")
        p = self.plumbing
        p.ensure_netns(d.namespace)
        p.sysctl(d.namespace, _SETTINGS)
        for leg, ifname in ((d.front, FRONT), (d.back, BACK)):
            ports.plug_port(p, d.namespace, leg.bridge, ifname,
                            plumbing_mod.mac_address(f"{d.namespace}/{ifname}"), leg.address)
        self._set_amphorae(d)
        for vip in d.vips:
            p.ip("neigh", "replace", "proxy", vip, "dev", FRONT, ns=d.namespace)
        for held in set(self.proxied(d.namespace)) - set(d.vips):
            p.ip("neigh", "del", "proxy", held, "dev", FRONT, ns=d.namespace,
                 ok_if=plumbing_mod.MISSING)

    def _set_amphorae(self, d: Distribution) -> None:
        p, ns = self.plumbing, d.namespace
        wanted = {nexthop_id(a): a for a in d.amphorae}
        for nh_id, address in wanted.items():
            p.ip("nexthop", "replace", "id", str(nh_id), "via", address, "dev", BACK, ns=ns)
        if wanted:
            group = "/".join(
                f"{i},{DRAINING_WEIGHT if wanted[i] in d.draining else WEIGHT}"
                for i in sorted(wanted))
            p.ip("nexthop", "replace", "id", str(GROUP_ID), "group", group, "type",
                 "resilient", "buckets", str(BUCKETS), "idle_timer", str(IDLE_TIMER),
                 ns=ns)
            for vip in d.vips:
                p.ip("route", "replace", f"{vip}/32", "nhid", str(GROUP_ID), ns=ns)
        else:  # no amphora serves: the group goes, and with it the VIPs' routes
            p.ip("nexthop", "del", "id", str(GROUP_ID), ns=ns, ok_if=plumbing_mod.MISSING)
        for nh_id in set(self.nexthops(ns)) - set(wanted) - {GROUP_ID}:
            # Leaving the group, its buckets go to the others at once.
            p.ip("nexthop", "del", "id", str(nh_id), ns=ns, ok_if=plumbing_mod.MISSING)

    def nexthops(self, namespace: str) -> dict[int, str | None]:
        """Nexthop id -> amphora address (None for the group) in the distributor."""
        found = self.plumbing.ip_json("nexthop", "show", ns=namespace)
        return {int(nh["id"]): nh.get("gateway") for nh in found}

    def serving(self, namespace: str) -> list[str]:
        """The amphorae the distributor sends flows to now."""
        return sorted(a for i, a in self.nexthops(namespace).items()
                      if a is not None and i != GROUP_ID)

    def idle_seconds(self, namespace: str, address: str) -> float:
        """How long the distributor has sent nothing to ``address``: the shortest idle
        time of the buckets it holds (infinite when it holds none)."""
        nh_id = nexthop_id(address)
        found = self.plumbing.ip_json("nexthop", "bucket", "show", "id", str(GROUP_ID),
                                      ns=namespace)
        idle = [float(b["bucket"].get("idle_time", 0.0)) for b in found
                if b.get("bucket", {}).get("nhid") == nh_id]
        return min(idle, default=float("inf"))

    def proxied(self, namespace: str) -> list[str]:
        found = self.plumbing.ip_json("neigh", "show", "proxy", "dev", FRONT, ns=namespace)
        return [entry["dst"] for entry in found]

    def remove(self, namespace: str) -> None:
        """The distributor and its legs are gone (fine when they already are)."""
        for ifname in (FRONT, BACK):
            ports.unplug_port(self.plumbing, namespace, ifname)
        self.plumbing.delete_netns(namespace)


def serve_without_arp(plumbing: plumbing_mod.Plumbing, namespace: str,
                      vips: Sequence[str]) -> None:
    """An amphora behind a distributor: it takes packets for ``vips`` (on loopback) but
    never answers ARP for them, which is the distributor's job."""
    plumbing.sysctl(namespace, _SERVE_WITHOUT_ARP)
    for vip in vips:
        plumbing.ensure_address(namespace, "lo", f"{vip}/32")
