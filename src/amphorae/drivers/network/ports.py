"""Plug a port (an address on a network) into an amphora namespace, and unplug it.

A port is a veth pair: the host end enslaved to the network's bridge, the other end named
``ifname`` inside the namespace, carrying the port's MAC and address. The host end's name
is derived from (namespace, ifname), so plugging again, or unplugging after a restart,
finds the same interface without any stored state.
"""

from __future__ import annotations

import ipaddress

from amphorae.drivers.network import plumbing as plumbing_mod

PORT_VETH_PREFIX = "amph-p"


def host_veth_name(namespace: str, ifname: str) -> str:
    """The host end of the port ``ifname`` of ``namespace``."""
    return plumbing_mod.derived_name(PORT_VETH_PREFIX, f"{namespace}/{ifname}")


def plug_port(plumbing: plumbing_mod.Plumbing, namespace: str, bridge: str, ifname: str,
              mac: str | None, address_cidr: str, gateway: str | None = None) -> str:
    """``ifname`` in ``namespace``, attached to ``bridge``, up, holding ``address_cidr``
    (``ip/prefixlen``); with ``gateway``, the namespace's default route goes through it.
    Idempotent. Returns the host end's name."""
    iface = ipaddress.ip_interface(address_cidr)  # reject a bad address before creating
    if gateway is not None and ipaddress.ip_address(gateway) not in iface.network:
        raise ValueError(f"gateway {gateway} is not in {iface.network}")
    host = host_veth_name(namespace, ifname)
    plumbing.ensure_veth(host, bridge, namespace, ifname, mac=mac)
    plumbing.ensure_address(namespace, ifname, str(iface))
    if gateway is not None:
        plumbing.ensure_route(namespace, "default", via=gateway, dev=ifname)
    return host


def unplug_port(plumbing: plumbing_mod.Plumbing, namespace: str, ifname: str) -> None:
    """Remove the port; nothing to do when it (or the whole namespace) is gone already.
    Deleting the host end removes the peer, and with it its address and routes."""
    plumbing.delete_link(host_veth_name(namespace, ifname))
