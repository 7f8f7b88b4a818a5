"""Backend servers for integration tests: one namespace per member, on a given bridge.

Each member namespace ``amph-<marker>-<name>`` holds one veth ``eth0`` on the bridge, an
address on the member subnet and a default route through the host's address there, and
runs :data:`tests.dataplane.MEMBER_SERVER` with the services asked for (every answer
names the member). :class:`MemberFarm` removes all of it again, also after a failure.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from pathlib import Path

from amphorae.common import pki
from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.drivers.network import ports
from tests import dataplane as dp


class MemberFarm:
    def __init__(self, marker: str, bridge: str, cidr: str, workdir: Path,
                 plumbing: plumbing_mod.Plumbing | None = None) -> None:
        self.marker = marker
        self.bridge = bridge
        self.net = ipaddress.ip_network(cidr)
        self.gateway = str(self.net[1])
        self.workdir = workdir
        self.plumbing = plumbing or plumbing_mod.Plumbing()
        self.addresses: dict[str, str] = {}
        self.servers: dict[str, subprocess.Popen[bytes]] = {}
        self.ca: pki.CertKey | None = None

    def namespace(self, name: str) -> str:
        return f"amph-{self.marker}-{name}"

    def add(self, name: str, host: int, services: Sequence[dp.Service] = (dp.HTTP,)) -> str:
        """Member ``name`` at host number ``host`` of the subnet, serving; its address."""
        address = str(self.net[host])
        ns = self.namespace(name)
        self.plumbing.ensure_bridge(self.bridge)
        self.plumbing.ensure_host_address(self.bridge, f"{self.gateway}/{self.net.prefixlen}")
        self.plumbing.ensure_netns(ns)
        self.plumbing.ip("link", "set", "lo", "up", ns=ns)
        ports.plug_port(self.plumbing, ns, self.bridge, "eth0",
                        plumbing_mod.mac_address(ns), f"{address}/{self.net.prefixlen}",
                        gateway=self.gateway)
        self.addresses[name] = address
        self.start(name, services)
        return address

    def start(self, name: str, services: Sequence[dp.Service] = (dp.HTTP,)) -> None:
        """Start member ``name``'s server; returns once every socket is bound."""
        specs = [{"kind": s.kind, "port": s.port,
                  **({"cert": str(self._cert(name))} if s.kind == "https" else {})}
                 for s in services]
        self.servers[name] = dp.start_member_server(
            self.namespace(name), name, self.addresses[name], specs,
            self.workdir / f"member-{name}.log")

    def stop(self, name: str) -> None:
        """Stop member ``name``'s server; no-op if stopped."""
        proc = self.servers.pop(name, None)
        if proc is not None:
            dp.stop_member_server(proc)

    def close(self) -> None:
        for name in list(self.servers):
            self.stop(name)
        for name in self.addresses:
            ports.unplug_port(self.plumbing, self.namespace(name), "eth0")
            self.plumbing.delete_netns(self.namespace(name))

    def _cert(self, name: str) -> Path:
        path = self.workdir / f"member-{name}.pem"
        if not path.exists():
            if self.ca is None:
                self.ca = pki.create_ca("amphorae test member CA", digest=dp.DIGEST)
            pair = pki.issue_server_cert(self.ca, f"{name}.{dp.MEMBER_DOMAIN}",
                                         validity=dp.CERT_VALIDITY, digest=dp.DIGEST)
            pki.save_bundle(pair, path)
        return path
