"""A bridge keeps its MAC while ports come and go (root). Without an address of its own
Linux gives a bridge the lowest MAC among its ports, and everything behind it that cached
the host's address (heartbeats to the management gateway, VIP default routes) would send
to a MAC nobody holds once that port leaves."""

from __future__ import annotations

import secrets

from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.drivers.network import ports
from tests import leftovers, netns


def test_the_bridge_mac_survives_its_lowest_port_leaving() -> None:
    netns.require_root()
    plumbing = plumbing_mod.Plumbing()
    bridge = f"amph-{secrets.token_hex(3)}b"
    leftovers.register(bridge)
    with netns.namespace("bridge-mac") as ns:
        try:
            plumbing.ensure_bridge(bridge)
            mac = plumbing.link(bridge)["address"]
            # Port MACs below and above the bridge's own.
            ports.plug_port(plumbing, ns, bridge, "low", "02:00:00:00:00:01",
                            "198.18.94.2/24")
            ports.plug_port(plumbing, ns, bridge, "high", "fe:ff:ff:ff:ff:fe",
                            "198.18.95.2/24")
            assert plumbing.link(bridge)["address"] == mac
            ports.unplug_port(plumbing, ns, "low")
            assert plumbing.link(bridge)["address"] == mac
            plumbing.ensure_bridge(bridge)  # again: same address, no change
            assert plumbing.link(bridge)["address"] == mac == plumbing_mod.mac_address(
                f"bridge/{bridge}")
        finally:
            for ifname in ("low", "high"):
                ports.unplug_port(plumbing, ns, ifname)
            plumbing.delete_bridge(bridge)
