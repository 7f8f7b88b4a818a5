"""A whole control plane on this host for end-to-end tests (root): ``amphorae up``, or
``amphorae api`` with separate ``amphorae worker`` processes, on SQLite or PostgreSQL,
booting real netns amphorae, plus member namespaces serving on the member network.

Everything carries the caller's marker (6 hex digits): the state directory
``/tmp/amph-<marker>-*`` (amphora state, CA, logs, SQLite), the networks ``v<marker>``
(VIPs) and ``m<marker>`` (members) whose bridges the local network driver creates (named
after, and marked with, the deployment id the services find in the state directory), the
management bridge ``amph-<marker>g``, member namespaces ``amph-<marker>-<name>``.
:meth:`Deployment.close` stops the services, removes every amphora booted under the state
directory, the members, the bridges and the database, and fails when anything is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import openstack
import requests
from sqlalchemy import func, select

from amphorae.db import engine
from amphorae.db import models as m
from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import distributor, local, ownership, ports
from amphorae.drivers.network import plumbing as plumbing_mod
from tests import dataplane as dp
from tests import leftovers, netns, servers
from tests.integration.test_netns_compute import free_cidr, link_names, netns_names
from tests.members import MemberFarm

FINAL = ("ACTIVE", "ERROR")  # the states a load balancer settles in (or it is gone)
WAIT = 30.0


@dataclasses.dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Deployment:
    def __init__(self, marker: str, vip_cidr: str, member_cidr: str, state: Path,
                 db_url: str, extra_config: str = "",
                 management_cidr: str | None = None, vip_network: str | None = None) -> None:
        self.marker = marker
        self.state = state
        self.db_url = db_url
        # The id the services find in the state path (the first one to ask makes it).
        self.deployment_id = ownership.deployment_id(state)
        self.vip_cidr, self.member_cidr = vip_cidr, member_cidr
        self.vip_network, self.member_network = vip_network or f"v{marker}", f"m{marker}"
        self.vip_subnet_id = local.stable_id("subnet", self.vip_network)
        self.member_subnet_id = local.stable_id("subnet", self.member_network)
        self.mgmt_bridge = f"amph-{marker}g"
        self.port = servers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = state / "amphorae.conf"
        self.config.write_text(f"""[DEFAULT]
state_path = {state}

[api_settings]
bind_host = 127.0.0.1
bind_port = {self.port}
api_workers = 2

[database]
connection = {db_url}

[local_network]
subnets = {self.vip_network}={vip_cidr},{self.member_network}={member_cidr}

[netns_compute]
management_bridge = {self.mgmt_bridge}
management_cidr = {management_cidr or free_cidr()}

[controller_worker]
job_lease_seconds = 3

[house_keeping]
cleanup_interval = 2
{extra_config}
""")
        # As an operator does before starting services on a shared database.
        servers.run_cli("db", "upgrade", config_file=self.config)
        self.services: dict[str, Service] = {}
        self.members = MemberFarm(marker, self.bridge(self.member_network), member_cidr,
                                  state)
        self.plumbing = plumbing_mod.Plumbing()
        self._conn: Any = None
        self._pair_flavor: str | None = None

    # -- processes ----------------------------------------------------------------------

    def start(self, command: str, name: str | None = None) -> Service:
        """Run ``amphorae <command>`` with this deployment's config."""
        name = name or command
        log = self.state / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(servers.VENV_BIN / "amphorae"), command, "--config-file",
                 str(self.config)], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        service = Service(name, proc, log)
        self.services[name] = service
        if command in ("up", "api"):
            self._wait_api(service)
        return service

    def _wait_api(self, service: Service) -> None:
        def up() -> bool:
            assert service.process.poll() is None, service.log.read_text()[-3000:]
            with contextlib.suppress(OSError):
                requests.get(self.url + "/", timeout=1)
                return True
            return False

        dp.wait_for(up, "the API answering", timeout=60)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal a service and wait for it; SIGKILL takes its whole process group."""
        service = self.services.pop(name)
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGKILL)
        else:
            service.process.send_signal(sig)
        try:
            return service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait(10)
            raise AssertionError(f"{name} did not stop within {timeout} s") from None

    # -- the API ------------------------------------------------------------------------

    @property
    def lb(self) -> Any:
        """openstacksdk's load-balancer proxy, no auth, on this deployment's API."""
        if self._conn is None:
            self._conn = openstack.connection.Connection(
                auth_type="none", auth={"endpoint": self.url},
                load_balancer_endpoint_override=self.url)
        return self._conn.load_balancer

    def flavor(self, name: str, data: dict[str, Any]) -> str:
        """The id of a new enabled amphora flavor ``name`` with flavor ``data``."""
        profile = self.lb.create_flavor_profile(name=name, provider_name="amphora",
                                                flavor_data=json.dumps(data))
        return str(self.lb.create_flavor(name=name, flavor_profile_id=profile.id,
                                         is_enabled=True).id)

    def pair_flavor(self) -> str:
        """The id of an enabled flavor whose load balancers are ACTIVE_STANDBY pairs
        (made on first use)."""
        if self._pair_flavor is None:
            self._pair_flavor = self.flavor(f"pair-{self.marker}",
                                            {"loadbalancer_topology": "ACTIVE_STANDBY"})
        return self._pair_flavor

    def http_tree(self, lb_id: str, members: Sequence[str] = ("m1",), port: int = 80
                  ) -> tuple[Any, Any]:
        """An HTTP listener on ``port`` with a ROUND_ROBIN pool of ``members`` (by name,
        on the member subnet), each change settled: (listener, pool)."""
        listener = self.settle(lb_id, self.lb.create_listener, loadbalancer_id=lb_id,
                               protocol="HTTP", protocol_port=port)
        pool = self.settle(lb_id, self.lb.create_pool, listener_id=listener.id,
                           protocol="HTTP", lb_algorithm="ROUND_ROBIN")
        for name in members:
            self.settle(lb_id, self.lb.create_member, pool.id, name=name,
                        address=self.members.addresses[name], protocol_port=dp.HTTP.port,
                        subnet_id=self.member_subnet_id)
        return listener, pool

    def allocated_amphorae(self, lb_id: str) -> list[str]:
        """Ids of the load balancer's serving (ALLOCATED) amphorae, over plain HTTP."""
        amps = requests.get(f"{self.url}/v2/octavia/amphorae",
                            params={"loadbalancer_id": lb_id}, timeout=10).json()["amphorae"]
        return sorted(a["id"] for a in amps if a["status"] == "ALLOCATED")

    def wait_lb(self, lb_id: str, status: str = "ACTIVE", timeout: float = WAIT) -> Any:
        """Wait for the load balancer's provisioning status; fails on ERROR (unless it
        is the one awaited) and on timeout."""
        found: dict[str, Any] = {}

        def reached() -> bool:
            found["lb"] = lb = self.lb.get_load_balancer(lb_id)
            assert lb.provisioning_status != "ERROR" or status == "ERROR", \
                f"load balancer {lb_id} went to ERROR:\n{self.logs()}"
            return bool(lb.provisioning_status == status)

        dp.wait_for(reached, f"load balancer {lb_id} {status}", timeout=timeout)
        return found["lb"]

    def settle(self, lb_id: str, call: Callable[..., Any], *args: Any,
               **kwargs: Any) -> Any:
        """Make one API call that changes the load balancer, then wait until it is
        ACTIVE again; the call's result."""
        out = call(*args, **kwargs)
        self.wait_lb(lb_id)
        return out

    def wait_gone(self, lb_id: str, timeout: float = WAIT) -> None:
        def gone() -> bool:
            try:
                return bool(self.lb.get_load_balancer(lb_id).provisioning_status == "DELETED")
            except openstack.exceptions.NotFoundException:
                return True

        dp.wait_for(gone, f"load balancer {lb_id} deleted", timeout=timeout)

    def logs(self, lines: int = 60) -> str:
        out = []
        for log in sorted(self.state.glob("*.log")):
            if log.name.startswith("member-"):
                continue
            out.append(f"--- {log.name}\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    # -- what exists --------------------------------------------------------------------

    def bridge(self, network: str) -> str:
        """The bridge the local network driver makes for the network named so."""
        return plumbing_mod.bridge_name(self.deployment_id, local.stable_id("network", network))

    @property
    def distribution_bridge(self) -> str:
        return self.bridge(local.DISTRIBUTION)

    def distributor_namespaces(self) -> list[str]:
        prefix = local.distributor_namespace(self.deployment_id, "")
        return sorted(n for n in netns_names() if n.startswith(prefix))

    def amphora_dirs(self) -> list[str]:
        root = self.state / "amphorae"
        return sorted(p.name for p in root.iterdir() if len(p.name) == 8) \
            if root.is_dir() else []

    def leftovers(self) -> dict[str, Any]:
        """What remains of load balancers once all are deleted: amphora namespaces and
        state, port interfaces, processes started from the state directory, address
        allocations and live rows."""
        state = str(self.state)
        procs = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    if state.encode() in cmd and b"amphorae.conf" not in cmd:
                        procs.append(cmd.decode(errors="replace")[:120])
        with engine.transaction(write=False, url=self.db_url) as session:
            rows = {
                "ip_allocation": session.scalar(select(func.count()).select_from(
                    m.IPAllocation)),
                "amphora": session.scalar(select(func.count()).select_from(m.Amphora).where(
                    m.Amphora.status != "DELETED")),
                "load_balancer": session.scalar(select(func.count()).select_from(
                    m.LoadBalancer).where(m.LoadBalancer.provisioning_status != "DELETED")),
                "listener": session.scalar(select(func.count()).select_from(m.Listener)),
                "pool": session.scalar(select(func.count()).select_from(m.Pool)),
                "member": session.scalar(select(func.count()).select_from(m.Member)),
                "job": session.scalar(select(func.count()).select_from(m.Job)),
            }
        left: dict[str, Any] = {k: v for k, v in rows.items() if v}
        amphora_ns = {n for n in netns_names() if n.startswith(compute.NAMESPACE_PREFIX)
                      and n[len(compute.NAMESPACE_PREFIX):] in self.amphora_dirs()}
        if self.amphora_dirs():
            left["amphora_dirs"] = self.amphora_dirs()
        if amphora_ns:
            left["namespaces"] = sorted(amphora_ns)
        if self.distributor_namespaces():
            left["distributors"] = self.distributor_namespaces()
        port_links = {n for n in link_names() if n.startswith("amph-p")}
        mine = {n for n in port_links if self._is_amphora_port(n)}
        if mine:
            left["port_links"] = sorted(mine)
        if procs:
            left["processes"] = procs
        return left

    def _is_amphora_port(self, link: str) -> bool:
        """A port veth on one of this deployment's bridges that no member holds."""
        members = {ports.host_veth_name(self.members.namespace(name), "eth0")
                   for name in self.members.addresses}
        if link in members:
            return False
        info = self.plumbing.link(link)
        return bool(info) and info.get("master") in (
            self.bridge(self.vip_network), self.bridge(self.member_network),
            self.distribution_bridge)

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        for name in list(self.services):
            with contextlib.suppress(Exception):
                self.stop(name)
        if self._conn is not None:
            self._conn.close()
        driver = compute.NetnsComputeDriver(state_dir=str(self.state / "amphorae"),
                                            management_bridge=self.mgmt_bridge,
                                            deployment=self.deployment_id)
        for amp in driver.list_amphorae():
            if amp.amphora_id is not None:
                for link in self.plumbing.links(ns=amp.namespace) \
                        if self.plumbing.netns_exists(amp.namespace) else []:
                    if link.get("ifname", "").startswith(("eth1", "mn", ports.DIST_IFNAME)):
                        ports.unplug_port(self.plumbing, amp.namespace, link["ifname"])
                driver.delete(amp.short_id)
        for namespace in self.distributor_namespaces():
            distributor.Distributor(self.plumbing).remove(namespace)
        self.members.close()
        for bridge in (self.bridge(self.vip_network), self.bridge(self.member_network),
                       self.distribution_bridge, self.mgmt_bridge):
            self.plumbing.delete_bridge(bridge)
        left = ({n for n in netns_names() if n.startswith(f"amph-{self.marker}")}
                | {n for n in link_names() if self.marker in n}
                | {link["ifname"] for link in self.plumbing.links()
                   if ownership.owner(link.get("ifalias")) == self.deployment_id})
        assert not left, f"left behind: {left}"


@contextlib.contextmanager
def deployment(marker: str, vip_cidr: str, member_cidr: str, backend: str = "sqlite",
               extra_config: str = "", management_cidr: str | None = None,
               vip_network: str | None = None) -> Iterator[Deployment]:
    """A :class:`Deployment`; the management network is ``management_cidr``, or a free
    random /24 of 198.19.128.0/17; the VIP network is named ``vip_network`` (default
    ``v<marker>``)."""
    netns.require_root()
    busy = dp.subnets_in_use([vip_cidr, member_cidr]
                             + ([management_cidr] if management_cidr else []))
    if busy:
        raise dp.TopologyError(f"{', '.join(busy)} already routed on this host")
    leftovers.register(f"amph-{marker}")
    state = Path(tempfile.mkdtemp(prefix=f"amph-{marker}-"))
    leftovers.register(state)
    try:
        with servers.database(backend, state, f"e2e_{marker}") as db_url:
            d = Deployment(marker, vip_cidr, member_cidr, state, db_url, extra_config,
                           management_cidr, vip_network)
            try:
                yield d
            finally:
                d.close()
                engine.get_engine(db_url).dispose()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def per_worker(first: str, second: str) -> tuple[str, str]:
    """Two /24s for this xdist worker: the given ones on gw0 (or without xdist), the
    next free pair above them on gw1, and so on (a module's tests may be split over
    workers, each then builds its own deployment)."""
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
    shift = 2 * index
    return tuple(str(ipaddress.ip_network(n).network_address + 256 * shift) + "/24"
                 for n in (first, second))  # type: ignore[return-value]


def answers(address: str, count: int, port: int = 80, path: str = "/",
            **kwargs: Any) -> list[str]:
    """``count`` GETs through ``address`` on fresh connections: who answered each."""
    return [dp.http_request(address, port, path, **kwargs).text for _ in range(count)]


def eventually(check: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Retry ``check`` (which asserts) until it passes; the last failure is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
