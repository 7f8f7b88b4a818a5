"""Plug a port (an address on a network) into an amphora namespace, and unplug it.

A port is a veth pair: the host end enslaved to the network's bridge, the other end named
``ifname`` inside the namespace, carrying the port's MAC and address. The host end's name
is derived from (namespace, ifname), so plugging again, or unplugging after a restart,
finds the same interface without any stored state.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence

from amphorae.common import constants as c
from amphorae.drivers.network import ownership
from amphorae.drivers.network import plumbing as plumbing_mod

PORT_VETH_PREFIX = "amph-p"


def host_veth_name(namespace: str, ifname: str) -> str:
    """The host end of the port ``ifname`` of ``namespace``."""
    return plumbing_mod.derived_name(PORT_VETH_PREFIX, f"{namespace}/{ifname}")


def plug_port(plumbing: plumbing_mod.Plumbing, namespace: str, bridge: str, ifname: str,
              mac: str | None, address_cidr: str, gateway: str | None = None,
              extra_addresses: Sequence[str] = ()) -> str:
    """``ifname`` in ``namespace``, attached to ``bridge``, up, holding ``address_cidr``
    (``ip/prefixlen``, the primary) and ``extra_addresses``; with ``gateway``, the
    namespace's default route goes through it. Idempotent. Returns the host end's name.

    An address is announced (gratuitous ARP) before it is added: neighbours may know it at
    another MAC (a deleted port's, handed out again). One the interface does not hold yet
    is announced on every call, so a crash between the two steps announces it again."""
    ifaces = [ipaddress.ip_interface(a) for a in (address_cidr, *extra_addresses)]
    if gateway is not None and ipaddress.ip_address(gateway) not in ifaces[0].network:
        raise ValueError(f"gateway {gateway} is not in {ifaces[0].network}")
    host = host_veth_name(namespace, ifname)
    plumbing.ensure_veth(host, bridge, namespace, ifname, mac=mac)
    held = set(plumbing.addresses(ifname, ns=namespace))
    new = [iface for iface in ifaces if str(iface) not in held]
    plumbing.announce(namespace, ifname, [str(iface.ip) for iface in new])
    for iface in new:
        plumbing.ensure_address(namespace, ifname, str(iface))
    if gateway is not None:
        plumbing.ensure_route(namespace, "default", via=gateway, dev=ifname)
    return host


def unplug_port(plumbing: plumbing_mod.Plumbing, namespace: str, ifname: str) -> None:
    """Remove the port; nothing to do when it (or the whole namespace) is gone already.
    Deleting the host end removes the peer, and with it its address and routes."""
    plumbing.delete_link(host_veth_name(namespace, ifname))


VIP_IFNAME = c.AMPHORA_VIP_INTERFACE
DIST_IFNAME = "dist0"  # an ACTIVE_ACTIVE amphora's port on the distribution network
MEMBER_IFNAME_PREFIX = "mn"  # + 8 hex digits of the subnet id; "mgmt0" is not ours


def member_ifname(subnet_id: str) -> str:
    return MEMBER_IFNAME_PREFIX + subnet_id.replace("-", "")[:8]


def _is_port(ifname: str) -> bool:
    return ifname in (VIP_IFNAME, DIST_IFNAME) or (ifname.startswith(MEMBER_IFNAME_PREFIX)
                                    and len(ifname) == len(MEMBER_IFNAME_PREFIX) + 8)


@dataclasses.dataclass(frozen=True)
class Port:
    """One interface an amphora should have: on ``bridge``, holding ``addresses``
    (``ip/prefixlen``, the first is the primary), optionally the default route."""

    ifname: str
    bridge: str
    # The host's address on the bridge (the subnet's gateway); None: the host has none
    # there (the distribution network, which only distributors and amphorae use).
    host_cidr: str | None
    addresses: tuple[str, ...]
    gateway: str | None = None
    # Whose MAC the port gets; None: the amphora's. A SINGLE amphora's VIP port takes
    # the load balancer's, so a replacement answers with the same MAC and the neighbours'
    # ARP caches stay right.
    mac_seed: str | None = None


class PortPlugger:
    """Makes an amphora namespace hold exactly the given ports (the local network
    driver's data-plane half: bridges on demand, veths into the namespace). The bridges
    are ``owner``'s (a deployment id; default: the configured state path's)."""

    def __init__(self, plumbing: plumbing_mod.Plumbing | None = None,
                 owner: str | None = None) -> None:
        self.plumbing = plumbing or plumbing_mod.Plumbing()
        self.owner = owner

    def plug(self, namespace: str, ports: Sequence[Port], mac_seed: str) -> None:
        wanted = {p.ifname for p in ports}
        for link in self.plumbing.links(ns=namespace):  # ports no longer wanted first
            name = link.get("ifname", "")
            if _is_port(name) and name not in wanted:
                unplug_port(self.plumbing, namespace, name)
        owner = self.owner or ownership.local_deployment()
        for port in ports:
            self.plumbing.ensure_bridge(port.bridge, owner=owner)
            if port.host_cidr is not None:
                self.plumbing.ensure_host_address(port.bridge, port.host_cidr)
            plug_port(self.plumbing, namespace, port.bridge, port.ifname,
                      plumbing_mod.mac_address(f"{port.mac_seed or mac_seed}/{port.ifname}"),
                      port.addresses[0], gateway=port.gateway,
                      extra_addresses=port.addresses[1:])

    def unplug_all(self, namespace: str, ifnames: Sequence[str] = ()) -> None:
        """Every port of the namespace, and the ports ``ifnames`` even when the
        namespace's name is gone (their host ends are found by name)."""
        found = [link.get("ifname", "") for link in self.plumbing.links(ns=namespace)] \
            if self.plumbing.netns_exists(namespace) else []
        for ifname in {*(n for n in found if _is_port(n)), *ifnames}:
            unplug_port(self.plumbing, namespace, ifname)
