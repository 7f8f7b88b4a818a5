"""End to end data plane: HTTP from the host to a VIP, balanced by HAProxy in a booted
netns amphora over three member servers, with a health monitor taking a stopped member
out of rotation and back in (root).

Topology (all on 198.18.0.0/15, created by this test only)::

    host 198.18.230.1 --[VIP bridge]-- eth1 198.18.230.10 (amphora, VIP)
    host 198.18.231.1 --[member bridge]-- eth2 198.18.231.10 (amphora)
                                       +-- eth0 198.18.231.21..23 (one namespace per member)

Everything carries this run's random marker (bridges, member namespaces, amphora id), and
the module fixture removes all of it even when a test fails.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from amphorae.drivers import agent_client
from amphorae.drivers.compute import amphora_boot as boot
from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.drivers.network import ports
from amphorae.render import haproxy as render_haproxy
from amphorae.render import model
from tests import netns
from tests.integration.test_netns_compute import free_cidr, link_names, netns_names

RUN = secrets.token_hex(3)
MARK = RUN[:4]  # first hex digits of the amphora id
VIP_BRIDGE = f"amph-{RUN}v"
MEMBER_BRIDGE = f"amph-{RUN}m"
VIP_CIDR, MEMBER_CIDR = "198.18.230.0/24", "198.18.231.0/24"
VIP = "198.18.230.10"
AMP_MEMBER_IP = "198.18.231.10"
MEMBERS = {f"m{i}": f"198.18.231.2{i}" for i in (1, 2, 3)}
MEMBER_PORT = 8080
MEMBER_NS = {name: f"amph-{RUN}-{name}" for name in MEMBERS}
HTTP_TIMEOUT = 3.0
SETTLE_TIMEOUT = 10.0  # bound for a health-check state change (delay 1 s, fall 2)

# A member: answers every GET with its own name. HTTPServer's server_bind looks up the
# address's DNS name before listening, which hangs in a namespace without DNS: skipped.
SERVER = """
import http.server, socketserver, sys
name, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class S(http.server.ThreadingHTTPServer):
    server_bind = socketserver.TCPServer.server_bind
S((addr, port), H).serve_forever()
"""


class Topology:
    def __init__(self, booter: boot.AmphoraBooter, amp: boot.BootedAmphora) -> None:
        self.booter = booter
        self.amp = amp
        self.servers: dict[str, subprocess.Popen] = {}

    def start_member(self, name: str) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", MEMBER_NS[name], sys.executable, "-c", SERVER, name,
             MEMBERS[name], str(MEMBER_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.servers[name] = proc
        deadline = time.monotonic() + 10
        while True:  # the host reaches members through its address on the member bridge
            with contextlib.suppress(OSError):
                socket.create_connection((MEMBERS[name], MEMBER_PORT), timeout=1).close()
                return
            assert proc.poll() is None, f"member {name} exited"
            assert time.monotonic() < deadline, f"member {name} not listening"
            time.sleep(0.05)

    def stop_member(self, name: str) -> None:
        proc = self.servers.pop(name, None)
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def subnets_in_use() -> list[str]:
    wanted = [ipaddress.ip_network(c) for c in (VIP_CIDR, MEMBER_CIDR)]
    routed = [ipaddress.ip_network(r["dst"], strict=False)
              for r in json.loads(netns.run("ip", "-json", "route", "show").stdout)
              if r["dst"] != "default"]
    return [str(w) for w in wanted if any(w.overlaps(r) for r in routed if r.version == 4)]


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    netns.require_root()
    busy = subnets_in_use()
    if busy:  # another run of this test (fixed subnets): do not touch its bridges
        pytest.fail(f"{', '.join(busy)} already routed on this host")
    plumbing = plumbing_mod.Plumbing()
    # Short: HAProxy's stats socket path under it must fit in 97 characters.
    state = tempfile.mkdtemp(prefix=f"amph-{RUN}-")
    ca_dir = tmp_path_factory.mktemp("amph-vip-ca")
    mgmt_bridge = f"amph-{RUN}g"
    driver = compute.NetnsComputeDriver(state_dir=state, management_bridge=mgmt_bridge,
                                        management_cidr=free_cidr())
    booter = boot.AmphoraBooter(driver, ca_dir, ready_timeout=15, cert_validity=3600)
    amp_id = MARK + str(uuid.uuid4())[len(MARK):]
    topo: Topology | None = None
    try:
        for bridge, host_ip in ((VIP_BRIDGE, "198.18.230.1/24"),
                                (MEMBER_BRIDGE, "198.18.231.1/24")):
            plumbing.ensure_bridge(bridge)
            plumbing.ensure_host_address(bridge, host_ip)
        amp = booter.create(amp_id)
        topo = Topology(booter, amp)
        ns = amp.compute_id
        ports.plug_port(plumbing, ns, VIP_BRIDGE, "eth1",
                        plumbing_mod.mac_address(f"{amp_id}/vip"), f"{VIP}/24")
        # Plugging twice changes nothing (idempotent).
        ports.plug_port(plumbing, ns, VIP_BRIDGE, "eth1",
                        plumbing_mod.mac_address(f"{amp_id}/vip"), f"{VIP}/24")
        ports.plug_port(plumbing, ns, MEMBER_BRIDGE, "eth2",
                        plumbing_mod.mac_address(f"{amp_id}/member"), f"{AMP_MEMBER_IP}/24")
        assert plumbing.addresses("eth1", ns=ns) == [f"{VIP}/24"]
        for name, address in MEMBERS.items():
            plumbing.ensure_netns(MEMBER_NS[name])
            ports.plug_port(plumbing, MEMBER_NS[name], MEMBER_BRIDGE, "eth0",
                            plumbing_mod.mac_address(MEMBER_NS[name]), f"{address}/24",
                            gateway="198.18.231.1")
            topo.start_member(name)
        yield topo
    finally:
        if topo is not None:
            for name in list(topo.servers):
                topo.stop_member(name)
        booter.delete(amp_id)  # the agent, HAProxy and the namespace with eth1/eth2
        run_ports = [(compute.namespace_name(amp_id), "eth1"),
                     (compute.namespace_name(amp_id), "eth2"),
                     *((MEMBER_NS[name], "eth0") for name in MEMBERS)]
        for ns, ifname in run_ports:
            ports.unplug_port(plumbing, ns, ifname)
        for ns in netns_names():  # anything else of this run, e.g. after a failed boot
            if ns.startswith(compute.NAMESPACE_PREFIX + MARK):
                driver.delete(ns[len(compute.NAMESPACE_PREFIX):])
            if ns.startswith((f"amph-{RUN}", compute.NAMESPACE_PREFIX + MARK)):
                plumbing.delete_netns(ns)
        for bridge in (VIP_BRIDGE, MEMBER_BRIDGE, mgmt_bridge):
            plumbing.delete_bridge(bridge)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(ca_dir, ignore_errors=True)
        veths = {ports.host_veth_name(ns, ifname) for ns, ifname in run_ports}
        left = ({n for n in netns_names()
                 if n.startswith((f"amph-{RUN}", compute.NAMESPACE_PREFIX + MARK))}
                | {n for n in link_names() if RUN in n or n in veths})
        assert not left, f"left behind: {left}"


def render_lb(topo: Topology, lb_id: str) -> str:
    listener_id, pool_id = str(uuid.uuid4()), str(uuid.uuid4())
    # Member ids start with the name, so HAProxy's server names tell who is who.
    members = tuple(model.Member(id=f"{name}-{uuid.uuid4()}"[:36], address=address,
                                 protocol_port=MEMBER_PORT)
                    for name, address in MEMBERS.items())
    monitor = model.HealthMonitor(id=str(uuid.uuid4()), type="TCP", delay=1, timeout=1,
                                  max_retries=1, max_retries_down=2)
    lb = model.LoadBalancer(
        id=lb_id, project_id="amphorae-test", vips=(VIP,),
        listeners=(model.Listener(id=listener_id, protocol="HTTP", protocol_port=80,
                                  default_pool_id=pool_id, timeout_member_connect=1000),),
        pools=(model.Pool(id=pool_id, protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                          members=members, health_monitor=monitor),))
    info = client(topo).info()
    assert info.max_fds, "the agent reports no max_fds"
    settings = render_haproxy.HaproxySettings(fd_limit=info.max_fds, hard_stop_after=5)
    base = topo.booter.folder(topo.amp.amphora_id) / boot.AGENT_BASE
    return render_haproxy.render(lb, settings, render_haproxy.AmphoraPaths.for_lb(
        str(base), lb_id))


def client(topo: Topology) -> agent_client.AgentClient:
    return topo.booter.client(topo.amp.amphora_id, topo.amp.management_ip, max_retries=3,
                              retry_interval=0.2, conn_timeout=5, read_timeout=30)


def get() -> str:
    """One GET to the VIP on a fresh connection; the answering member's name."""
    conn = http.client.HTTPConnection(VIP, 80, timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, (resp.status, body)
        return body
    finally:
        conn.close()


def server_states(topo: Topology, lb_id: str) -> dict[str, str]:
    """Member name -> HAProxy's status (UP / DOWN / ...), from the stats socket."""
    sock_path = render_haproxy.AmphoraPaths.for_lb(
        str(topo.booter.folder(topo.amp.amphora_id) / boot.AGENT_BASE), lb_id).stats_socket
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(3)
        sock.connect(sock_path)
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    states = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname", "")[:2] in MEMBERS:
            states[row["svname"][:2]] = row["status"]
    return states


def wait_for(predicate, what: str, timeout: float = SETTLE_TIMEOUT) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


def assert_round_robin(answers: list[str], names: list[str]) -> None:
    """Every member answers equally often, in a fixed rotation."""
    assert sorted(set(answers)) == sorted(names), answers
    period = len(names)
    assert all(a == answers[i % period] for i, a in enumerate(answers)), answers
    for name in names:
        assert answers.count(name) == len(answers) // period, answers


def test_vip_traffic_round_robin_and_failover(topo: Topology) -> None:
    started = time.perf_counter()
    lb_id = str(uuid.uuid4())
    agent = client(topo)
    agent.upload_haproxy_config(lb_id, render_lb(topo, lb_id))
    agent.start(lb_id)
    try:
        assert [(x["type"], x["status"]) for x in agent.listeners()] == [("HTTP", "ACTIVE")]
        wait_for(lambda: _states_or_none(topo, lb_id) == dict.fromkeys(MEMBERS, "UP"),
                 "HAProxy up with all members UP")

        answers = [get() for _ in range(30)]
        assert_round_robin(answers, list(MEMBERS))
        assert answers.count("m1") == answers.count("m2") == answers.count("m3") == 10

        # Member 2 stops: the monitor takes it out, the other two carry the traffic.
        # Clients keep sending meanwhile: HAProxy's retries with redispatch hide the
        # refused connections to m2 before the monitor marks it DOWN.
        topo.stop_member("m2")
        stopped = time.monotonic()
        during = []
        while server_states(topo, lb_id).get("m2") != "DOWN":
            assert time.monotonic() - stopped < SETTLE_TIMEOUT, "m2 not marked DOWN in time"
            during.append(get())
            time.sleep(0.05)
        down_after = time.monotonic() - stopped
        assert during and "m2" not in during and set(during) <= {"m1", "m3"}
        answers = [get() for _ in range(12)]  # retries + redispatch: no failed request
        assert "m2" not in answers
        assert_round_robin(answers, ["m1", "m3"])

        # Back again: within a few seconds it is UP and gets its share.
        topo.start_member("m2")
        up_after = wait_for(lambda: server_states(topo, lb_id).get("m2") == "UP",
                            "m2 back UP")
        answers = [get() for _ in range(30)]
        assert_round_robin(answers, list(MEMBERS))
        print(f"\nVIP traffic: m2 DOWN after {down_after:.1f} s ({len(during)} GETs meanwhile, "
              f"none failed), UP after {up_after:.1f} s, test body "
              f"{time.perf_counter() - started:.1f} s")

        # Deleting the load balancer's listeners stops HAProxy: the VIP refuses at once.
        agent.delete_listeners(lb_id)
        assert agent.listeners() == []
        with pytest.raises(ConnectionRefusedError):
            get()
    finally:
        with contextlib.suppress(Exception):
            agent.delete_listeners(lb_id)


def _states_or_none(topo: Topology, lb_id: str) -> dict[str, str] | None:
    """The member states, or None while HAProxy's stats socket does not answer yet."""
    try:
        return server_states(topo, lb_id)
    except OSError:
        return None
