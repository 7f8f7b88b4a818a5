"""Where heartbeats go: the health manager binds this address, the worker tells agents
to send to it. ``[health_manager]`` decides; unset, the default is the address amphorae
of the configured compute driver can reach (the management gateway for namespaces)."""

from __future__ import annotations

from typing import Any

from amphorae.common import config


def endpoints(conf: Any = config.CONF) -> tuple[tuple[str, int], list[str]]:
    """(address the receiver binds, ``ip:port`` list given to agents). Unset, both are
    the netns management gateway when amphorae are namespaces here, else loopback."""
    hm = conf.health_manager
    host = hm.bind_ip
    if not host:
        host = "127.0.0.1"
        if conf.controller_worker.compute_driver == "compute_netns_driver":
            from amphorae.drivers.compute import netns

            host = str(netns.NetnsComputeDriver(conf).gateway)
    listed = list(hm.controller_ip_port_list)
    if not listed:
        shown = f"[{host}]" if ":" in host else host
        listed = [f"{shown}:{hm.bind_port}"]
    return (host, hm.bind_port), listed
