"""The ``netns`` compute driver: an amphora is a Linux network namespace on this host.

Naming (all derived from the amphora id, so a restarted controller finds everything again):

- namespace ``amphora-<first 8 hex digits of the id>`` (:data:`NAMESPACE_PREFIX`);
- management interface ``mgmt0`` inside it, with a stable MAC, the host end of its veth
  ``amph-m<hash>`` enslaved to the management bridge (``[netns_compute]
  management_bridge``, default ``amph-br<hash of deployment id, "management">``);
- state directory ``<state_dir>/<8 hex>/`` holding ``amphora.json`` (id, address, the
  deployment that made it), a ``ready`` marker once creation completed, and
  ``<name>.pid`` / ``<name>.log`` for every process started inside.

Only amphorae whose state file names this driver's deployment are its own
(drivers/network/ownership.py): a namespace without one, or of another deployment, is
listed without an id, so no sweep removes it.

The host holds the management subnet's gateway address on the bridge, so the controller
reaches each amphora's management address directly. The agent is not started here: callers
plug it in with :meth:`NetnsComputeDriver.start_process`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from oslo_config import cfg

from amphorae.common import config, filelock
from amphorae.drivers.compute import zygote
from amphorae.drivers.compute.base import ACTIVE, BUILDING, DELETED, ERROR
from amphorae.drivers.network import ownership
from amphorae.drivers.network import plumbing as plumbing_mod

LOG = logging.getLogger(__name__)

NAMESPACE_PREFIX = "amphora-"
MGMT_IFNAME = "mgmt0"
MGMT_VETH_PREFIX = "amph-m"
MANAGEMENT_NETWORK = "management"  # the management bridge's network id, for its name
STATE_FILE = "amphora.json"
READY_FILE = "ready"
TERM_GRACE = 1.0  # seconds between SIGTERM and SIGKILL on delete

# Per-namespace kernel settings of an amphora: it forwards (nftables DNAT for UDP) and binds
# VIPs it does not hold yet (the BACKUP of an ACTIVE_STANDBY pair).
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.ip_nonlocal_bind": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv6.ip_nonlocal_bind": "1",
}

netns_compute_opts = [
    cfg.StrOpt("management_bridge", default="",
               help="Host bridge every amphora's management interface is attached to "
                    "(at most 15 characters); default: derived from the deployment id, "
                    "so each deployment on a host has its own."),
    cfg.StrOpt("management_cidr", default="198.19.0.0/24",
               help="Management subnet; the host takes its first address on the bridge, "
                    "amphorae the following ones."),
    cfg.StrOpt("amphora_state_dir", default="",
               help="Where per-amphora state directories go (pid files, logs); default: "
                    "<state_path>/amphorae."),
]
config.CONF.register_opts(netns_compute_opts, group="netns_compute")


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("netns_compute", netns_compute_opts)]


@dataclasses.dataclass(frozen=True)
class Amphora:
    short_id: str
    amphora_id: str | None  # None when only the namespace is left (no state file)
    namespace: str
    management_ip: str | None
    status: str


def short_id(amphora_id: str) -> str:
    """The first 8 hex digits of the id (the full id or just those digits are accepted)."""
    short = amphora_id.replace("-", "").lower()[:8]
    if len(short) != 8 or any(c not in "0123456789abcdef" for c in short):
        raise ValueError(f"not an amphora id: {amphora_id!r}")
    return short


def namespace_name(amphora_id: str) -> str:
    return NAMESPACE_PREFIX + short_id(amphora_id)


def mgmt_veth_name(amphora_id: str) -> str:
    return plumbing_mod.derived_name(MGMT_VETH_PREFIX, short_id(amphora_id))


class NetnsComputeDriver:
    def __init__(self, conf: cfg.ConfigOpts = config.CONF,
                 plumbing: plumbing_mod.Plumbing | None = None, *,
                 state_dir: str | None = None, management_bridge: str | None = None,
                 management_cidr: str | None = None, deployment: str | None = None) -> None:
        """``deployment``: whose amphorae these are; default: the configured state
        path's (read when first needed)."""
        group = conf.netns_compute
        self.plumbing = plumbing or plumbing_mod.Plumbing()
        self.state_dir = Path(state_dir or group.amphora_state_dir
                              or os.path.join(config.state_path(conf), "amphorae"))
        self._conf = conf
        self._deployment = deployment
        self._bridge = management_bridge or group.management_bridge
        self.cidr = ipaddress.ip_network(management_cidr or group.management_cidr)
        self.gateway = next(self.cidr.hosts())
        if self._bridge:
            plumbing_mod.check_name(self._bridge)
        self._children: dict[str, list[subprocess.Popen]] = {}
        self.zygote = zygote.Zygote()
        self._lock = threading.Lock()

    @functools.cached_property
    def deployment(self) -> str:
        return self._deployment or ownership.local_deployment(self._conf)

    @property
    def bridge(self) -> str:
        """The management bridge."""
        return self._bridge or plumbing_mod.bridge_name(self.deployment, MANAGEMENT_NETWORK)

    # -- create ------------------------------------------------------------------------

    def create(self, amphora_id: str) -> Amphora:
        """Namespace + sysctls + management veth and address. Idempotent; on any failure
        everything created is removed again and the error raised."""
        short = short_id(amphora_id)
        ns = namespace_name(short)
        mgmt_ip = self._reserve(amphora_id)  # creates nothing when it fails
        try:
            self.plumbing.ensure_bridge(self.bridge, owner=self.deployment)
            self.plumbing.ensure_host_address(
                self.bridge, f"{self.gateway}/{self.cidr.prefixlen}")
            self.plumbing.ensure_netns(ns)
            self._remember_inode(short, ns)
            self.plumbing.sysctl(ns, SYSCTLS)
            self.plumbing.ensure_veth(mgmt_veth_name(short), self.bridge, ns, MGMT_IFNAME,
                                      mac=plumbing_mod.mac_address(amphora_id))
            self.plumbing.ensure_address(ns, MGMT_IFNAME, f"{mgmt_ip}/{self.cidr.prefixlen}")
            (self._dir(short) / READY_FILE).touch()
        except BaseException:
            self.delete(short)
            raise
        return Amphora(short, amphora_id, ns, mgmt_ip, ACTIVE)

    def _reserve(self, amphora_id: str) -> str:
        """Write the state file with a management address no other amphora here holds."""
        short = short_id(amphora_id)
        with self._state_lock():
            existing = self._read_state(short)
            if existing and existing.get("amphora_id") == amphora_id:
                return existing["management_ip"]
            if existing:  # names use 8 hex digits: refuse to clobber another amphora
                raise RuntimeError(f"amphora {existing.get('amphora_id')} already uses "
                                   f"{namespace_name(short)}")
            taken = {s.get("management_ip") for s in self._all_states().values()}
            free = next((str(h) for h in self.cidr.hosts()
                         if h != self.gateway and str(h) not in taken), None)
            if free is None:
                raise RuntimeError(f"no free management address in {self.cidr}")
            path = self._dir(short)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            state = {"amphora_id": amphora_id, "namespace": namespace_name(short),
                     "management_ip": free, "management_veth": mgmt_veth_name(short),
                     "deployment": self.deployment}
            self._write_state(short, state)
            return free

    # -- processes ---------------------------------------------------------------------

    def start_process(self, amphora_id: str, argv: Sequence[str],
                      name: str | None = None) -> int:
        """Run ``argv`` inside the amphora's namespace, detached in a session of its own,
        output to ``<name>.log``, pid in ``<name>.pid``. Returns the pid."""
        short, path, name = self._process_place(amphora_id, name or os.path.basename(argv[0]))
        with open(path / f"{name}.log", "ab") as log:
            # `ip netns exec` execs the command itself, so the pid is the command's.
            proc = subprocess.Popen(["ip", "netns", "exec", namespace_name(short), *argv],
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=path,
                                    start_new_session=True)
        with self._lock:
            self._children.setdefault(short, []).append(proc)
        return self._started(path, name, proc.pid)

    def start_agent(self, amphora_id: str, command: Sequence[str], config_file: str,
                    name: str) -> int:
        """Start ``amphorae agent --config-file <config_file>`` as :meth:`start_process`
        does, forked from the warm zygote (drivers/compute/zygote.py) when it can;
        ``command`` (the entry point and ``agent``) is the cold way."""
        short, path, name = self._process_place(amphora_id, name)
        try:
            pid = self.zygote.spawn(namespace_name(short), path, path / f"{name}.log",
                                    config_file)
        except zygote.ZygoteError as exc:
            LOG.warning("%s; starting the agent of amphora %s without it", exc, short)
            return self.start_process(
                amphora_id, [*command, "--config-file", config_file], name=name)
        return self._started(path, name, pid)

    def _process_place(self, amphora_id: str, name: str) -> tuple[str, Path, str]:
        short = short_id(amphora_id)
        if not self.plumbing.netns_exists(namespace_name(short)):
            raise RuntimeError(f"amphora {short} has no namespace")
        path = self._dir(short)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return short, path, name

    @staticmethod
    def _started(path: Path, name: str, pid: int) -> int:
        (path / f"{name}.pid").write_text(f"{pid}\n")
        return pid

    def pid(self, amphora_id: str, name: str) -> int | None:
        """The pid of a process started under ``name`` when it is still running inside."""
        short = short_id(amphora_id)
        try:
            pid = int((self._dir(short) / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if pid in self.plumbing.netns_pids(namespace_name(short)) else None

    def running(self, amphora_id: str, name: str) -> bool:
        """Whether the process started under ``name`` still runs. Cheap enough to ask of
        every amphora every second (no subprocess): the pid file, then /proc, where the
        process's working directory (the amphora's own) tells a recycled pid apart."""
        path = os.path.realpath(self._dir(short_id(amphora_id)))
        try:
            pid = int(Path(path, f"{name}.pid").read_text())
            if os.readlink(f"/proc/{pid}/cwd") != path:
                return False
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return False
        return state != "Z"  # a zombie is our child, dead and not reaped yet

    def _stop_processes(self, short: str) -> None:
        ns = namespace_name(short)
        deadline = time.monotonic() + TERM_GRACE
        sig = signal.SIGTERM
        while pids := self._pids(short, ns):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            self._reap(short)
            if time.monotonic() > deadline:
                if sig == signal.SIGKILL and time.monotonic() > deadline + 5:
                    raise RuntimeError(f"processes {pids} in {ns} do not die")
                sig = signal.SIGKILL
            time.sleep(0.01)
        self._reap(short)

    def _pids(self, short: str, ns: str) -> list[int]:
        """Processes in the amphora's network namespace: by its name, and by the inode
        recorded at creation, which finds them also after someone deleted the name
        (`ip netns delete` leaves a namespace with processes running, unnamed)."""
        pids = set(self.plumbing.netns_pids(ns))
        inode = (self._read_state(short) or {}).get("netns_inode")
        if inode and not self.plumbing.netns_exists(ns):
            # An inode is reused once its namespace is gone: only processes started
            # from this amphora's directory (agent, HAProxy, keepalived) are its own.
            pids.update(pids_in_netns(int(inode), str(self._dir(short))))
        return sorted(pids)

    def _remember_inode(self, short: str, ns: str) -> None:
        with self._state_lock():
            state = self._read_state(short) or {}
            state["netns_inode"] = os.stat(f"/run/netns/{ns}").st_ino
            self._write_state(short, state)

    def _reap(self, short: str) -> None:
        with self._lock:
            procs = self._children.get(short, [])
            self._children[short] = [p for p in procs if p.poll() is None]
            if not self._children[short]:
                del self._children[short]

    # -- delete and status ------------------------------------------------------------

    def delete(self, amphora_id: str) -> None:
        """Stop every process in the namespace, then remove the veth (its host end first:
        that is synchronous, namespace teardown is not), the namespace and the state
        directory. Safe on absent and half-created amphorae."""
        short = short_id(amphora_id)
        self._stop_processes(short)
        self.plumbing.delete_link(mgmt_veth_name(short))
        self.plumbing.delete_netns(namespace_name(short))
        shutil.rmtree(self._dir(short), ignore_errors=True)

    def status(self, amphora_id: str) -> str:
        short = short_id(amphora_id)
        return self._status(short, self.plumbing.netns_exists(namespace_name(short)))

    def _status(self, short: str, ns_exists: bool) -> str:
        has_veth = self.plumbing.link_exists(mgmt_veth_name(short))
        has_dir = self._dir(short).exists()
        if (self._dir(short) / READY_FILE).exists():
            return ACTIVE if ns_exists and has_veth else ERROR
        if ns_exists or has_veth or has_dir:
            return BUILDING  # being built, or a build that died: the caller's timeout decides
        return DELETED

    def list_amphorae(self) -> list[Amphora]:
        """Every amphora on this host: namespaces with the prefix and state directories
        (either may be left without the other by a crash), so a restarted controller can
        adopt or clean them."""
        namespaces = {n[len(NAMESPACE_PREFIX):] for n in self.plumbing.netns_list()
                      if n.startswith(NAMESPACE_PREFIX)}
        states = self._all_states()
        out = []
        for short in sorted(namespaces | set(states)):
            state = states.get(short, {})
            mine = "deployment" not in state or state["deployment"] == self.deployment
            out.append(Amphora(short, state.get("amphora_id") if mine else None,
                               NAMESPACE_PREFIX + short, state.get("management_ip"),
                               self._status(short, short in namespaces)))
        return out

    def remove_bridge(self) -> bool:
        """Remove the management bridge when its alias proves it is this deployment's
        (True: it is gone now)."""
        return self.plumbing.delete_bridge(self.bridge, owner=self.deployment)

    # -- state directory ---------------------------------------------------------------

    def _dir(self, short: str) -> Path:
        return self.state_dir / short

    def _read_state(self, short: str) -> dict | None:
        try:
            return json.loads((self._dir(short) / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, short: str, state: dict) -> None:
        path = self._dir(short)
        tmp = path / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path / STATE_FILE)

    def _all_states(self) -> dict[str, dict]:
        if not self.state_dir.is_dir():
            return {}
        found = {}
        for entry in self.state_dir.iterdir():
            if entry.is_dir() and len(entry.name) == 8:
                found[entry.name] = self._read_state(entry.name) or {}
        return found

    @contextlib.contextmanager
    def _state_lock(self) -> Iterator[None]:
        """Across threads and processes: address reservation reads then writes."""
        with self._lock, filelock.exclusive(self.state_dir / ".lock"):
            yield


def pids_in_netns(inode: int, marker: str) -> list[int]:
    """Processes whose network namespace has this inode (named or not) and whose
    command line mentions ``marker`` or whose working directory it is (an agent forked
    from the zygote carries the zygote's command line)."""
    found, directory = [], os.path.realpath(marker)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry.name}/ns/net").st_ino == inode and (
                        marker.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes()
                        or os.readlink(f"/proc/{entry.name}/cwd") == directory):
                    found.append(int(entry.name))
    return found
