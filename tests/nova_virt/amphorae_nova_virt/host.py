"""The host side of a netns "instance": namespace, veths, bridges, processes, state.

Standard library only: this module runs inside nova-compute (venv-nova) and is tested
from the amphorae venv. Every name carries the ``amph-nv`` prefix (tests/leftovers.py
sweeps it):

- namespace ``amph-nv-<first 8 hex of the instance uuid>``;
- host end of an instance's n-th interface ``amph-nv<6 hex of the uuid><nn>`` (the
  instance's end is ``eth<n>``, as a VM's NICs in attach order);
- bridge ``amph-nvb<7 hex of the Neutron network id>``, shared by every instance with a
  port on that network, marked with :data:`BRIDGE_ALIAS` and removed with its last port.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PREFIX = "amph-nv"
BRIDGE_PREFIX = PREFIX + "b"
BRIDGE_ALIAS = "amphorae-nova-virt"  # only bridges carrying it are ours to delete
SYSCTLS = {  # as the netns compute driver's amphorae: VRRP backups bind VIPs they lack
    "net.ipv4.ip_forward": "1",
    "net.ipv4.ip_nonlocal_bind": "1",
    "net.ipv6.ip_nonlocal_bind": "1",
}
TCP_LISTEN = "0A"


def _hex(uuid: str) -> str:
    return uuid.replace("-", "").lower()


def namespace(instance_uuid: str) -> str:
    return f"{PREFIX}-{_hex(instance_uuid)[:8]}"


def host_veth(instance_uuid: str, index: int) -> str:
    return f"{PREFIX}{_hex(instance_uuid)[:6]}{index:02d}"


def bridge(network_id: str) -> str:
    return BRIDGE_PREFIX + _hex(network_id)[:7]


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(("-n", ns) if ns else ()), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def link_exists(name: str, ns: str | None = None) -> bool:
    return bool(ip("-json", "link", "show", "dev", name, ns=ns, check=False).strip())


def netns_exists(name: str) -> bool:
    out = ip("-json", "netns", "list", check=False)
    return any(n.get("name") == name for n in json.loads(out or "[]"))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Bridges are shared by the compute processes of this host: one change at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class Nic:
    """One interface of an instance, from a Neutron port."""

    port_id: str
    mac: str
    network_id: str
    addresses: tuple[str, ...]  # ip/prefixlen
    gateways: tuple[str, ...]  # the subnets' gateways (one per subnet that has one)


def gateway_cidrs(nic: Nic, allowed: Sequence[str]) -> list[str]:
    """The bridge addresses for ``nic``'s subnets: the gateway with the subnet's prefix,
    only for subnets inside ``allowed`` (the test's own address blocks)."""
    blocks = [ipaddress.ip_network(b) for b in allowed]
    result = []
    for addr, gw in zip(nic.addresses, _gateway_per_address(nic), strict=True):
        iface = ipaddress.ip_interface(addr)
        if gw and any(iface.network.subnet_of(b) for b in blocks
                      if b.version == iface.version):
            result.append(f"{gw}/{iface.network.prefixlen}")
    return result


def _gateway_per_address(nic: Nic) -> list[str | None]:
    gws = [ipaddress.ip_address(g) for g in nic.gateways]
    return [next((str(g) for g in gws if g in ipaddress.ip_interface(a).network), None)
            for a in nic.addresses]


def ensure_namespace(ns: str) -> None:
    if not netns_exists(ns):
        ip("netns", "add", ns)
    ip("link", "set", "lo", "up", ns=ns)
    for key, value in SYSCTLS.items():
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"],
                       capture_output=True, timeout=30, check=True)


def ensure_bridge(name: str, addresses: Iterable[str]) -> None:
    if not link_exists(name):
        ip("link", "add", name, "type", "bridge")
        ip("link", "set", "dev", name, "alias", BRIDGE_ALIAS)
    held = set(ip("-o", "addr", "show", "dev", name).split())
    for cidr in addresses:
        if cidr not in held:
            ip("addr", "replace", cidr, "dev", name)
    ip("link", "set", name, "up")


def plug(ns: str, host: str, ifname: str, bridge_name: str, nic: Nic,
         default_route: bool) -> None:
    """A veth: ``host`` on the bridge, ``ifname`` in the namespace with the port's MAC,
    addresses and (for the first NIC, as DHCP would give it) the default route."""
    if not link_exists(host):
        ip("link", "add", host, "type", "veth", "peer", "name", ifname, "netns", ns)
    ip("link", "set", host, "master", bridge_name, "up")
    ip("link", "set", ifname, "address", nic.mac, ns=ns)
    ip("link", "set", ifname, "up", ns=ns)
    for cidr in nic.addresses:
        ip("addr", "replace", cidr, "dev", ifname, ns=ns)
    if default_route and nic.gateways:
        ip("route", "replace", "default", "via", nic.gateways[0], "dev", ifname, ns=ns)


def delete_link(name: str) -> None:
    ip("link", "delete", "dev", name, check=False)


def remove_unused_bridges(names: Iterable[str]) -> None:
    """Ours (alias) and without ports: deleted."""
    for name in set(names):
        shown = json.loads(ip("-json", "link", "show", "dev", name, check=False) or "[]")
        if not shown or shown[0].get("ifalias") != BRIDGE_ALIAS:
            continue
        if not json.loads(ip("-json", "link", "show", "master", name, check=False) or "[]"):
            delete_link(name)


def netns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                         timeout=30, check=False).stdout
    return [int(p) for p in out.split()]


def kill_all(ns: str, pids: Sequence[int] = (), grace: float = 2.0) -> None:
    """SIGTERM to everything in the namespace (and ``pids``), SIGKILL after ``grace``."""
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while live := [p for p in {*netns_pids(ns), *pids} if alive(p)]:
        for pid in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if time.monotonic() > deadline:
            if sig == signal.SIGKILL and time.monotonic() > deadline + 5:
                raise RuntimeError(f"processes {live} in {ns} do not die")
            sig = signal.SIGKILL
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def listening(pid: int, port: int) -> bool:
    """Whether a socket in ``pid``'s network namespace listens on TCP ``port``
    (/proc/<pid>/net is the process's namespace's view: no subprocess needed)."""
    for table in ("tcp6", "tcp"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
