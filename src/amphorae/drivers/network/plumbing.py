"""Host-side Linux plumbing: bridges, veth pairs, network namespaces, addresses.

Everything goes through iproute2's ``ip`` (``-json`` where we read state) via one small
runner, so tests can swap it and nothing needs a netlink library. Every operation is
idempotent: calling it twice, or after a crash halfway, converges on the same state.

Interface names are derived from ids by hashing (Linux allows at most 15 characters), so a
restarted controller computes the same names and finds what it created before. A bridge
also records its deployment in its alias (drivers/network/ownership.py): one deployment
never takes over, nor deletes, another's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence

from amphorae.drivers.network import ownership

IFNAMSIZ = 15  # usable characters of a Linux interface name
NETNS_RUN_DIR = "/run/netns"  # where `ip netns add` names namespaces
PREFIX = "amph-"
BRIDGE_PREFIX = "amph-br"

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]

LOG = logging.getLogger(__name__)
# What `ip -n <name>` says when the name's file is not a namespace: `ip netns add` was
# killed between creating /run/netns/<name> and mounting the namespace on it.
_UNUSABLE_NETNS = "failed: Invalid argument"
# Messages iproute2 prints when the thing to delete is already gone, or to add is there.
MISSING = ("does not exist", "Cannot find device", "No such file", "No such process",
            "Cannot open network namespace", "Cannot assign requested address",
            _UNUSABLE_NETNS)
_EXISTS = ("File exists",)

# Sends two gratuitous ARP requests (sender = target = the address) per address, 50 ms
# apart, from the interface named first; run inside the namespace. It first waits (1 s at
# most) for the interface to be operationally up: until the kernel has seen the carrier,
# frames sent on a new veth are dropped.
_GARP = """
import socket, struct, sys, time
ifname, ips = sys.argv[1], sys.argv[2:]
deadline = time.monotonic() + 1.0
while time.monotonic() < deadline:
    try:
        with open(f"/sys/class/net/{ifname}/operstate") as fh:
            if fh.read().strip() == "up":
                break
    except OSError:
        break
    time.sleep(0.005)
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
    s.bind((ifname, 0))
    mac = s.getsockname()[4]
    for attempt in range(2):
        for ip in ips:
            addr = socket.inet_aton(ip)
            s.send(b"\\xff" * 6 + mac + struct.pack("!HHHBBH", 0x0806, 1, 0x0800, 6, 4, 1)
                   + mac + addr + b"\\x00" * 6 + addr)
        time.sleep(0.05)
"""


class PlumbingError(RuntimeError):
    """An ``ip`` command failed for a reason other than "already done"."""


def run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    """The default runner: run, capture text, never raise (callers read returncode)."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)


class Plumbing:
    def __init__(self, runner: Runner = run) -> None:
        self._run = runner

    # -- low level ---------------------------------------------------------------------

    def ip(self, *args: str, ns: str | None = None, ok_if: Iterable[str] = ()) -> str:
        """Run ``ip [-n ns] args``; tolerate failures whose message matches ``ok_if``."""
        argv = ["ip", *(["-n", ns] if ns else []), *args]
        proc = self._run(argv)
        if proc.returncode != 0:
            err = (proc.stderr or "") + (proc.stdout or "")
            if any(m in err for m in ok_if):
                return ""
            raise PlumbingError(f"{' '.join(argv)}: {err.strip()}")
        return proc.stdout or ""

    def ip_json(self, *args: str, ns: str | None = None) -> list[dict]:
        """``ip -json args`` parsed; an empty list when the object does not exist."""
        out = self.ip("-json", *args, ns=ns, ok_if=MISSING)
        return json.loads(out) if out.strip() else []

    # -- namespaces --------------------------------------------------------------------

    @property
    def _direct(self) -> bool:
        """Whether questions about this host may skip `ip`: with the real runner, the
        health manager's and housekeeping's listings (every second, for every amphora)
        read what `ip` would read, without starting a process; a given runner (a test's
        fake, a wrapper) still sees every question."""
        return self._run is run

    def netns_created(self, name: str) -> dt.datetime:
        """When the namespace was named (its iproute2 entry's time), naive UTC."""
        seconds = os.stat(os.path.join(NETNS_RUN_DIR, name)).st_mtime
        return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)

    def netns_list(self) -> list[str]:
        """The named namespaces: the entries of iproute2's directory (`ip netns list`)."""
        if not self._direct:
            return sorted(n["name"] for n in self.ip_json("netns", "list"))
        try:
            return sorted(os.listdir(NETNS_RUN_DIR))
        except FileNotFoundError:  # no namespace was ever named on this host
            return []

    def netns_exists(self, name: str) -> bool:
        return name in self.netns_list()

    def ensure_netns(self, name: str) -> None:
        """The namespace exists, with loopback up; a name a crash left without its
        namespace is made again."""
        exists = self.netns_exists(name)
        if exists and not self.ip_json("link", "show", "lo", ns=name):
            self.delete_netns(name)
            exists = False
        if not exists:
            self.ip("netns", "add", name, ok_if=_EXISTS)
        self.ip("link", "set", "lo", "up", ns=name)

    def delete_netns(self, name: str) -> None:
        self.ip("netns", "delete", name, ok_if=MISSING)

    def netns_pids(self, name: str) -> list[int]:
        """Processes whose network namespace is ``name`` (none if it does not exist)."""
        if not self.netns_exists(name):
            return []
        out = self.ip("netns", "pids", name, ok_if=MISSING)
        return [int(p) for p in out.split()]

    def sysctl(self, ns: str, settings: dict[str, str]) -> None:
        """Set sysctls inside ``ns`` (per-namespace keys such as net.ipv4.ip_forward)."""
        argv = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                *(f"{k}={v}" for k, v in settings.items())]
        proc = self._run(argv)
        if proc.returncode != 0:
            raise PlumbingError(f"{' '.join(argv)}: {proc.stderr.strip()}")

    # -- links -------------------------------------------------------------------------

    def link_exists(self, name: str) -> bool:
        """Whether this process's namespace has an interface ``name``."""
        if not self._direct:
            return self.link(name) is not None
        try:
            socket.if_nametoindex(name)
        except OSError:
            return False
        return True

    def link(self, name: str, ns: str | None = None) -> dict | None:
        found = self.ip_json("link", "show", "dev", name, ns=ns)
        return found[0] if found else None

    def links(self, ns: str | None = None) -> list[dict]:
        return self.ip_json("link", "show", ns=ns)

    def delete_link(self, name: str, ns: str | None = None) -> None:
        """Delete an interface; deleting one end of a veth removes the other end too."""
        self.ip("link", "delete", "dev", name, ns=ns, ok_if=MISSING)

    def ensure_bridge(self, name: str, owner: str | None = None) -> None:
        """A bridge named ``name`` exists and is up (a name taken by another kind fails).

        With ``owner`` (a deployment id) the bridge carries it in its alias; a bridge of
        another deployment is refused. One without an alias is taken over: the alias is
        set right after creation (the kernel ignores one given to ``link add``), so a
        crash in between leaves one."""
        check_name(name)
        if self.link(name) is None:
            self.ip("link", "add", name, "type", "bridge", ok_if=_EXISTS)
        details = self.ip_json("-details", "link", "show", "dev", name)
        kind = details[0].get("linkinfo", {}).get("info_kind") if details else None
        if kind != "bridge":
            raise PlumbingError(f"{name} exists and is not a bridge ({kind})")
        if owner is not None:
            found = details[0].get("ifalias")
            if found and ownership.owner(found) != owner:
                raise PlumbingError(f"bridge {name} belongs to someone else ({found!r}), "
                                    f"not to deployment {owner}")
            if not found:
                self.ip("link", "set", "dev", name, "alias", ownership.alias(owner))
        # A bridge without an address of its own takes the lowest MAC of its ports, so
        # it changes as amphorae come and go: everyone behind it that cached the host's
        # address (heartbeats, default routes) would then send to a MAC nobody has.
        mac = mac_address(f"bridge/{name}")
        if details[0].get("address") != mac:
            self.ip("link", "set", "dev", name, "address", mac)
        self.ip("link", "set", "dev", name, "up")

    def link_owner(self, name: str) -> str | None:
        """The deployment whose alias the interface carries (None: none, or no such
        interface)."""
        found = self.link(name)
        return ownership.owner(found.get("ifalias")) if found else None

    def delete_bridge(self, name: str, owner: str | None = None) -> bool:
        """Delete the bridge; with ``owner``, only when its alias proves it is that
        deployment's. True when it was deleted (or did not exist)."""
        if owner is not None:
            found = self.link(name)
            if found is None:
                return True
            if ownership.owner(found.get("ifalias")) != owner:
                LOG.info("bridge %s is not deployment %s's: left in place", name, owner)
                return False
        self.delete_link(name)
        return True

    def ensure_host_address(self, bridge: str, address: str) -> None:
        """The host holds ``address`` (``ip/prefixlen``) on ``bridge``: it routes the subnet
        there, so it reaches the amphorae and VIPs behind the bridge."""
        iface = ipaddress.ip_interface(address)
        extra = ["nodad"] if iface.version == 6 else []
        self.ip("address", "replace", str(iface), "dev", bridge, *extra)

    def ensure_veth(self, host_name: str, bridge: str, ns: str, peer_name: str,
                    mac: str | None = None, mtu: int | None = None) -> None:
        """A veth pair: ``host_name`` on ``bridge`` in the host, ``peer_name`` (with ``mac``)
        inside ``ns``; both up.

        The peer is created directly inside the namespace, so there is never a moment where
        it sits in the host under a name that could clash. A pair found half-made (host end
        without its peer in ``ns``) is recreated.
        """
        check_name(host_name)
        check_name(peer_name)
        host = self.link(host_name)
        peer = self.link(peer_name, ns=ns)
        if host is not None and (peer is None or (mac and peer.get("address") != mac.lower())):
            self.delete_link(host_name)
            host = None
        if host is None:
            if peer is not None:  # a stale peer (another pair) blocks the name
                self.delete_link(peer_name, ns=ns)
            peer_opts = ["address", mac] if mac else []
            mtu_opts = ["mtu", str(mtu)] if mtu else []
            self.ip("link", "add", host_name, *mtu_opts, "type", "veth", "peer", "name",
                    peer_name, *peer_opts, *mtu_opts, "netns", ns)
        self.ip("link", "set", "dev", host_name, "master", bridge, "up")
        self.ip("link", "set", "dev", peer_name, "up", ns=ns)

    def announce(self, ns: str, ifname: str, addresses: Sequence[str]) -> None:
        """Gratuitous ARP for the IPv4 ``addresses`` from ``ifname`` in ``ns``: neighbours
        that knew one of them at another MAC (a deleted load balancer's VIP, handed out
        again) learn the new one at once instead of after their entry times out (up to
        45 s). The kernel's own (arp_notify) goes out before a new veth has carrier, and
        is lost; ours needs no address on the interface yet."""
        ips = [a for a in addresses if ipaddress.ip_address(a).version == 4]
        if not ips:
            return
        proc = self._run(["ip", "netns", "exec", ns, sys.executable, "-c", _GARP, ifname,
                          *ips])
        if proc.returncode != 0:  # best effort: neighbours still learn it, only later
            LOG.warning("gratuitous ARP from %s in %s failed: %s", ifname, ns,
                        (proc.stderr or "").strip()[-500:])

    # -- addresses and routes inside a namespace --------------------------------------

    def ensure_address(self, ns: str, ifname: str, address: str) -> None:
        """``address`` (``ip/prefixlen``) is on ``ifname`` inside ``ns`` (IPv6 without DAD,
        so it is usable at once)."""
        iface = ipaddress.ip_interface(address)
        extra = ["nodad"] if iface.version == 6 else []
        self.ip("address", "replace", str(iface), "dev", ifname, *extra, ns=ns)

    def addresses(self, ifname: str, ns: str | None = None) -> list[str]:
        """``ip/prefixlen`` of every global address on ``ifname``."""
        out = []
        for entry in self.ip_json("address", "show", "dev", ifname, ns=ns):
            for a in entry.get("addr_info", []):
                if a.get("scope") == "global":
                    out.append(f"{a['local']}/{a['prefixlen']}")
        return out

    def ensure_route(self, ns: str, destination: str, via: str | None = None,
                     dev: str | None = None, table: str | None = None) -> None:
        """A route to ``destination`` ("default" or a CIDR) inside ``ns``."""
        argv = ["route", "replace", destination]
        if via:
            argv += ["via", via]
        if dev:
            argv += ["dev", dev]
        if table:
            argv += ["table", table]
        if ":" in (via or destination):
            argv.insert(0, "-6")
        self.ip(*argv, ns=ns)


def derived_name(prefix: str, ident: str) -> str:
    """``prefix`` + as many hex digits of sha256(ident) as fit in an interface name."""
    room = IFNAMSIZ - len(prefix)
    if room < 6:  # fewer hex digits than this makes collisions likely
        raise ValueError(f"prefix {prefix!r} leaves no room for a hash")
    return prefix + hashlib.sha256(ident.encode()).hexdigest()[:room]


def bridge_name(deployment: str, network_id: str) -> str:
    """The bridge of a network in a deployment: ``amph-br`` + 8 hex digits of the hash of
    both, so each deployment on a host has its own even for networks named alike."""
    return derived_name(BRIDGE_PREFIX, f"{deployment}/{network_id}")


def mac_address(ident: str) -> str:
    """A stable MAC in OpenStack's fa:16:3e range (locally administered, unicast)."""
    h = hashlib.sha256(ident.encode()).digest()
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in h[:3])


def check_name(name: str) -> None:
    if not name or len(name) > IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid interface name {name!r}")
