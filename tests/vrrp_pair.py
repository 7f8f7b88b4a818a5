"""An ACTIVE_STANDBY pair of booted netns amphorae behind one VIP, for tests and benches
(root).

Topology on three /24s of 198.18.0.0/15 (``Subnets``; .1 is the host on each bridge)::

    host .1 --[VIP bridge]-- eth1 .11 amphora A (MASTER)   VIP .10 moved by keepalived
                          +- eth1 .12 amphora B (BACKUP)
    host .1 --[member bridge]-- eth2 .11 / .12 (the amphorae)
                             +- eth0 .21, .22, ... one namespace per member
    host .1 --[management bridge]-- mgmt0 of each amphora (agent over mutual TLS)

Members are HAProxy processes answering every request with a static ``200`` naming the
member: fast enough that a benchmark measures the load balancer, not the members.

HAProxy (topology ACTIVE_STANDBY, a peers section naming both amphorae) and keepalived
(MASTER/BACKUP, unicast peers, the HAProxy check script) are rendered by the project's
renderers and pushed through the agent client, as the controller does. The VIP is not
plugged: keepalived adds it on the MASTER.

Everything carries a random run marker (bridges, namespaces, amphora ids, the state
directory) and :func:`vrrp_pair` removes all of it when its block ends, also on failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import ipaddress
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from amphorae.contract import model
from amphorae.contract.layout import VrrpFiles
from amphorae.contract.peers import peer_name
from amphorae.drivers import agent_client
from amphorae.drivers.compute import amphora_boot as boot
from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import ownership, ports
from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.render import haproxy as render_haproxy
from amphorae.render import keepalived as render_keepalived
from tests import leftovers
from tests.dataplane import Probe, http_request, subnets_in_use
from tests.netns import crash_namespace

MEMBER_PORT = 8080
VIP_PORT = 80
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
READY_TIMEOUT = 20.0  # one bound for every "wait until up" while building
# keepalived's startup and the first election happen on a shared 2-core machine.
ELECTION_MARGIN = 5.0

# One single-threaded HAProxy per member: a static answer, no backend.
MEMBER_CONFIG = """global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout client 30s
    timeout http-keep-alive 30s
frontend member
    bind {address}:{port}
    http-request return status 200 content-type text/plain string {name}
"""


class PairError(RuntimeError):
    """The pair could not be built, or something of it was left behind."""


@dataclasses.dataclass(frozen=True)
class Subnets:
    """The three /24s of one pair; nothing else is addressed."""

    vip: str
    member: str
    management: str

    @property
    def all(self) -> tuple[str, ...]:
        return (self.vip, self.member, self.management)

    @staticmethod
    def host(cidr: str, index: int) -> str:
        return str(ipaddress.ip_network(cidr)[index])

    @property
    def vip_address(self) -> str:
        return self.host(self.vip, 10)

    def prefixed(self, cidr: str, index: int) -> str:
        return f"{self.host(cidr, index)}/{ipaddress.ip_network(cidr).prefixlen}"


@dataclasses.dataclass
class PairAmphora:
    role: str  # MASTER or BACKUP
    booted: boot.BootedAmphora
    vrrp_ip: str  # its own address on the VIP subnet (eth1)
    member_ip: str  # on the member subnet (eth2)
    client: agent_client.AgentClient
    base: Path  # the agent's base path

    @property
    def amphora_id(self) -> str:
        return self.booted.amphora_id

    @property
    def ns(self) -> str:
        return self.booted.compute_id


@dataclasses.dataclass
class Member:
    name: str
    ns: str
    address: str
    process: subprocess.Popen | None = None


@dataclasses.dataclass(frozen=True)
class Failover:
    """What the clients saw while the MASTER died and the BACKUP took over."""

    gap: float  # last success before the kill to the first one after
    takeover: float  # kill to the VIP on the BACKUP's eth1
    failed: int  # requests that failed meanwhile
    requests: int  # all requests of the probe


class Pair:
    def __init__(self, net: Subnets, run: str, plumbing: plumbing_mod.Plumbing,
                 booter: boot.AmphoraBooter, advert_int: float) -> None:
        self.net = net
        self.run = run
        self.plumbing = plumbing
        self.booter = booter
        self.advert_int = advert_int
        self.amphorae: list[PairAmphora] = []
        self.members: list[Member] = []
        self.lb_id = str(uuid.uuid4())

    @property
    def vip(self) -> str:
        return self.net.vip_address

    @property
    def master(self) -> PairAmphora:
        return next(a for a in self.amphorae if a.role == "MASTER")

    @property
    def backup(self) -> PairAmphora:
        return next(a for a in self.amphorae if a.role == "BACKUP")

    def holds_vip(self, amp: PairAmphora) -> bool:
        """The VIP is among the addresses of the amphora's eth1."""
        try:
            found = self.plumbing.addresses("eth1", ns=amp.ns)
        except plumbing_mod.PlumbingError:  # namespace gone
            return False
        return f"{self.vip}/{ipaddress.ip_network(self.net.vip).prefixlen}" in found

    def holders(self) -> list[str]:
        return [a.role for a in self.amphorae if self.holds_vip(a)]

    def pids(self, amp: PairAmphora) -> list[int]:
        return self.plumbing.netns_pids(amp.ns)

    def stats_socket(self, amp: PairAmphora) -> str:
        return render_haproxy.AmphoraPaths.for_lb(str(amp.base), self.lb_id).stats_socket

    def kill(self, amp: PairAmphora, timeout: float = 10.0) -> list[int]:
        """Crash the amphora (tests/netns.crash_namespace); the pids killed."""
        return crash_namespace(amp.ns, timeout)

    def takeover_bound(self) -> float:
        """The BACKUP's master down interval: ``down_timer_adverts`` adverts (keepalived
        drops VRRP's skew time then), how long it waits for a silent MASTER at most."""
        return render_keepalived.VRRPConfig.down_timer_adverts * self.advert_int

    def get(self, address: str | None = None, port: int = VIP_PORT,
            timeout: float = 3.0) -> str:
        """One GET on a fresh connection (the VIP by default); the answering member."""
        reply = http_request(address or self.vip, port, timeout=timeout)
        if reply.status != 200:
            raise PairError(f"GET {address or self.vip}:{port}: {reply.status} {reply.text}")
        return reply.text


# --- traffic while failing over -----------------------------------------------------


def fail_over(pair: Pair, settle: int = 20) -> Failover:
    """Continuous traffic to the VIP; SIGKILL everything in the MASTER; wait for the
    BACKUP to hold the VIP and for ``settle`` successful GETs after that."""
    if pair.holders() != ["MASTER"]:
        raise PairError(f"VIP held by {pair.holders()}, not by the MASTER alone")
    probe = Probe(pair.get)
    probe.start()
    try:
        probe.wait_successes(settle, READY_TIMEOUT)
        killed_at = time.monotonic()
        pair.kill(pair.master)
        deadline = killed_at + pair.takeover_bound() + ELECTION_MARGIN
        while not pair.holds_vip(pair.backup):
            if time.monotonic() > deadline:
                raise PairError(f"BACKUP did not take the VIP within "
                                f"{deadline - killed_at:.1f} s")
            time.sleep(0.01)
        took = time.monotonic() - killed_at
        probe.wait_successes(settle, READY_TIMEOUT)
    finally:
        probe.stop()
    return Failover(gap=probe.gap(killed_at), takeover=took, failed=probe.failures(),
                    requests=len(probe.results))


# --- building and removing ----------------------------------------------------------


def _wait(what: str, done: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise PairError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def _listening(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return False
    return True


def start_member(member: Member, folder: Path) -> None:
    """A single-threaded HAProxy answering a static 200 with the member's name."""
    config = folder / f"{member.name}.cfg"
    config.write_text(MEMBER_CONFIG.format(address=member.address, port=MEMBER_PORT,
                                           name=member.name))
    log = folder / f"{member.name}.log"
    with open(log, "wb") as out:
        member.process = subprocess.Popen(
            ["ip", "netns", "exec", member.ns, HAPROXY, "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    proc = member.process

    def up() -> bool:
        if proc.poll() is not None:
            raise PairError(f"member {member.name} exited ({proc.returncode}): "
                            f"{log.read_text(errors='replace')[-2000:]}")
        return _listening(member.address, MEMBER_PORT)

    _wait(f"member {member.name} listening", up)


def stop_member(member: Member) -> None:
    if member.process is None:
        return
    member.process.terminate()
    try:
        member.process.wait(5)
    except subprocess.TimeoutExpired:
        member.process.kill()
        member.process.wait(5)
    member.process = None


def render_lb(pair: Pair, amp: PairAmphora, max_fds: int | None) -> str:
    """haproxy.cfg of the pair's load balancer on ``amp``: ACTIVE_STANDBY, both peers."""
    listener_id, pool_id = str(uuid.uuid4()), str(uuid.uuid4())
    members = tuple(model.Member(id=f"{m.name}-{uuid.uuid4()}"[:36], address=m.address,
                                 protocol_port=MEMBER_PORT) for m in pair.members)
    peers = tuple(model.Peer(name=peer_name(a.amphora_id), address=a.vrrp_ip)
                  for a in pair.amphorae)
    lb = model.LoadBalancer(
        id=pair.lb_id, project_id="amphorae-test", vips=(pair.vip,),
        topology="ACTIVE_STANDBY", peers=peers,
        listeners=(model.Listener(id=listener_id, protocol="HTTP", protocol_port=VIP_PORT,
                                  default_pool_id=pool_id, timeout_member_connect=1000),),
        pools=(model.Pool(id=pool_id, protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                          members=members),))
    settings = render_haproxy.HaproxySettings(fd_limit=max_fds, hard_stop_after=5)
    return render_haproxy.render(lb, settings,
                                 render_haproxy.AmphoraPaths.for_lb(str(amp.base), pair.lb_id))


def render_vrrp(pair: Pair, amp: PairAmphora) -> str:
    peers = tuple(a.vrrp_ip for a in pair.amphorae if a is not amp)
    prefixlen = ipaddress.ip_network(pair.net.vip).prefixlen
    return render_keepalived.render(render_keepalived.VRRPConfig(
        name=pair.lb_id.replace("-", ""), interface="eth1", vrrp_ip=amp.vrrp_ip,
        peer_ips=peers, priority=render_keepalived.priority_for(amp.role),
        vips=(render_keepalived.VRRPVip(pair.vip, prefixlen),),
        auth_pass=pair.run[:8], advert_int=pair.advert_int,
        check_script=str(VrrpFiles.under(amp.base).check_script),
        check_interval=1, check_timeout=2, check_fall=2, check_rise=1,
        router_id=amp.amphora_id.replace("-", "")[:16]))


def _add_amphora(pair: Pair, role: str, index: int, mark: str,
                 bridges: dict[str, str]) -> None:
    """Boot an amphora, then plug eth1 (its VRRP address) and eth2 (the members)."""
    amp_id = f"{mark}{index:x}" + str(uuid.uuid4())[len(mark) + 1:]  # distinct namespaces
    booted = pair.booter.create(amp_id)
    net = pair.net
    amp = PairAmphora(role, booted, net.host(net.vip, 10 + index),
                      net.host(net.member, 10 + index),
                      pair.booter.client(amp_id, booted.management_ip, max_retries=3,
                                         retry_interval=0.2, conn_timeout=5,
                                         read_timeout=30),
                      pair.booter.folder(amp_id) / boot.AGENT_BASE)
    pair.amphorae.append(amp)
    ports.plug_port(pair.plumbing, amp.ns, bridges["vip"], "eth1",
                    plumbing_mod.mac_address(f"{amp_id}/vip"), net.prefixed(net.vip, 10 + index))
    ports.plug_port(pair.plumbing, amp.ns, bridges["member"], "eth2",
                    plumbing_mod.mac_address(f"{amp_id}/member"),
                    net.prefixed(net.member, 10 + index))


def _add_member(pair: Pair, index: int, bridge: str, folder: Path) -> None:
    net = pair.net
    member = Member(f"m{index}", f"amph-{pair.run}-m{index}", net.host(net.member, 20 + index))
    pair.members.append(member)
    pair.plumbing.ensure_netns(member.ns)
    ports.plug_port(pair.plumbing, member.ns, bridge, "eth0",
                    plumbing_mod.mac_address(member.ns), net.prefixed(net.member, 20 + index),
                    gateway=net.host(net.member, 1))
    start_member(member, folder)


def _configure(pair: Pair) -> None:
    """HAProxy on both, then keepalived: the MASTER first, so it wins the election; the
    BACKUP once the VIP is on the MASTER (with nopreempt the order is what decides)."""
    for amp in pair.amphorae:
        info = amp.client.info()
        amp.client.upload_haproxy_config(pair.lb_id, render_lb(pair, amp, info.max_fds))
        amp.client.start(pair.lb_id)
        amp.client.upload_vrrp_check_script(render_keepalived.render_check_script(
            [pair.stats_socket(amp)]))
        amp.client.upload_vrrp_config(render_vrrp(pair, amp))
    pair.master.client.vrrp_start()
    _wait("VIP on the MASTER", lambda: pair.holds_vip(pair.master),
          pair.takeover_bound() + ELECTION_MARGIN)
    pair.backup.client.vrrp_start()
    _wait("VIP answering", lambda: _answers(pair))


def _answers(pair: Pair) -> bool:
    try:
        pair.get(timeout=1)
    except (OSError, http.client.HTTPException, PairError):
        return False
    return True


@contextlib.contextmanager
def vrrp_pair(net: Subnets, *, advert_int: float = 1, members: int = 2) -> Iterator[Pair]:
    """Build the pair on ``net``; yields it with the VIP on the MASTER and answering.
    Everything is removed when the block ends, also when building or the block fails."""
    busy = subnets_in_use(net.all)
    if busy:  # another run: do not touch its bridges
        raise PairError(f"{', '.join(busy)} already routed on this host")
    run = secrets.token_hex(3)
    mark = run[:4]  # first hex digits of the amphora ids
    bridges = {"vip": f"amph-{run}v", "member": f"amph-{run}m", "mgmt": f"amph-{run}g"}
    # Short: HAProxy's stats socket path under it must fit in 97 characters.
    leftovers.register(f"amph-{run}")
    state = Path(tempfile.mkdtemp(prefix=f"amph-{run}-"))
    leftovers.register(state)
    plumbing = plumbing_mod.Plumbing()
    driver = compute.NetnsComputeDriver(state_dir=str(state / "amp"),
                                        management_bridge=bridges["mgmt"],
                                        management_cidr=net.management,
                                        deployment=ownership.deployment_id(state))
    pair: Pair | None = None
    try:
        booter = boot.AmphoraBooter(driver, state / "ca", ready_timeout=READY_TIMEOUT,
                                    cert_validity=3600)
        pair = Pair(net, run, plumbing, booter, advert_int)
        for key, cidr in (("vip", net.vip), ("member", net.member)):
            plumbing.ensure_bridge(bridges[key])
            plumbing.ensure_host_address(bridges[key], net.prefixed(cidr, 1))
        for index in range(1, members + 1):
            _add_member(pair, index, bridges["member"], state)
        for index, role in enumerate(("MASTER", "BACKUP"), start=1):
            _add_amphora(pair, role, index, mark, bridges)
        _configure(pair)
        yield pair
    finally:
        _remove(pair, driver, plumbing, run, bridges, state)


def _remove(pair: Pair | None, driver: compute.NetnsComputeDriver,
            plumbing: plumbing_mod.Plumbing, run: str, bridges: dict[str, str],
            state: Path) -> None:
    """Everything of run ``run``. Every step is tried even when one fails; raises
    PairError with what failed or is left."""
    mark = run[:4]
    ours = (f"amph-{run}", compute.NAMESPACE_PREFIX + mark)
    errors: list[str] = []

    def attempt(step, *args) -> None:
        try:
            step(*args)
        except Exception as exc:  # reported below, after the other steps
            errors.append(f"{getattr(step, '__name__', step)}{args}: {exc}")

    run_ports: list[tuple[str, str]] = []
    if pair is not None:
        for member in pair.members:
            attempt(stop_member, member)
            run_ports.append((member.ns, "eth0"))
        run_ports += [(a.ns, ifname) for a in pair.amphorae for ifname in ("eth1", "eth2")]
    # The driver stops every process in an amphora's namespace (keepalived too), removes
    # its management veth, the namespace and its state.
    for ns in plumbing.netns_list():
        if ns.startswith(compute.NAMESPACE_PREFIX + mark):
            attempt(driver.delete, ns[len(compute.NAMESPACE_PREFIX):])
    for amp in driver.list_amphorae():  # a state directory without its namespace
        if amp.short_id.startswith(mark):
            attempt(driver.delete, amp.short_id)
    for ns, ifname in run_ports:
        attempt(ports.unplug_port, plumbing, ns, ifname)
    for ns in plumbing.netns_list():  # the members' namespaces
        if ns.startswith(ours):
            attempt(plumbing.delete_netns, ns)
    for bridge in bridges.values():
        attempt(plumbing.delete_bridge, bridge)
    shutil.rmtree(state, ignore_errors=True)
    veths = {ports.host_veth_name(ns, ifname) for ns, ifname in run_ports}
    left = sorted({n for n in plumbing.netns_list() if n.startswith(ours)}
                  | {link["ifname"] for link in plumbing.links()
                     if run in link["ifname"] or link["ifname"] in veths})
    if errors or left or state.exists():
        raise PairError(f"cleanup of run {run}: errors {errors}, left behind {left}"
                        + (f", {state}" if state.exists() else ""))
