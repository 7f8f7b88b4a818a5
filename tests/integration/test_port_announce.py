"""A re-used address is reachable at once at its new MAC (root).

A port's address is announced (gratuitous ARP) until the interface holds it: a worker
killed after creating a port and before adding its address leaves a veth the next plug
finds, and that plug must still announce. Without it the host keeps sending to the
address's previous MAC (its neighbour entry stays REACHABLE 15-45 s), and a load balancer
handed a deleted one's VIP does not answer for that long (seen in the worker crash test).
"""

from __future__ import annotations

import secrets
import socket

import pytest

from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.drivers.network import ports
from tests import leftovers, netns
from tests.integration.test_netns_compute import free_cidr

OLD_MAC, NEW_MAC = "fa:16:3e:00:0a:01", "fa:16:3e:00:0a:02"


def answers(address: str) -> None:
    """The address answers: a TCP connection to a closed port is refused, not lost."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, 9), timeout=2).close()


def neighbour(address: str, bridge: str) -> str:
    return netns.run("ip", "neigh", "show", address, "dev", bridge).stdout.strip()


def test_a_port_found_without_its_address_announces_it() -> None:
    netns.require_root()
    plumbing = plumbing_mod.Plumbing()
    bridge = f"amph-{secrets.token_hex(3)}a"
    leftovers.register(bridge)
    prefix = free_cidr().rsplit(".", 1)[0]
    gateway, address = f"{prefix}.1/24", f"{prefix}.5/24"
    ip = address.split("/")[0]
    with netns.namespace("announce-old") as old, netns.namespace("announce-new") as new:
        try:
            plumbing.ensure_bridge(bridge)
            plumbing.ensure_host_address(bridge, gateway)
            # The bridge keeps its carrier (and its neighbour table) with a port of the
            # host's own, as it does with any other amphora on it.
            plumbing.ensure_veth(ports.host_veth_name("keep", "k"), bridge, old, "keep")
            ports.plug_port(plumbing, old, bridge, "eth1", OLD_MAC, address)
            answers(ip)
            assert OLD_MAC in neighbour(ip, bridge) and "REACHABLE" in neighbour(ip, bridge)
            ports.unplug_port(plumbing, old, "eth1")
            # The crash: the new port exists, its address was never added.
            plumbing.ensure_veth(ports.host_veth_name(new, "eth1"), bridge, new, "eth1",
                                 mac=NEW_MAC)
            assert OLD_MAC in neighbour(ip, bridge)
            ports.plug_port(plumbing, new, bridge, "eth1", NEW_MAC, address)
            assert NEW_MAC in neighbour(ip, bridge), neighbour(ip, bridge)
            answers(ip)
        finally:
            for ns, ifname in ((old, "eth1"), (old, "keep"), (new, "eth1")):
                ports.unplug_port(plumbing, ns, ifname)
            plumbing.delete_bridge(bridge)
