"""The agent's keepalived and nftables endpoints, with a real agent inside a namespace.

    host  amph-<hex> 198.18.220.1/24 ── veth ── eth1 198.18.220.2/24  namespace amph-agent-*
                                                 agent :9443, keepalived, nft table

The agent is reached from the host over the veth with mutual TLS, as a controller would.
Its keepalived config comes from render.keepalived (a MASTER whose only peer, .3, does
not exist: no election to lose) and its check script from render_check_script, checking
that the nftables table is loaded; the rules come from contract.nftables. Everything (agent,
keepalived, veth, namespace, files) is removed afterwards, also when a test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from amphorae.agent import haproxy as hap
from amphorae.common import pki
from amphorae.contract import model
from amphorae.contract import nftables as render_nft
from amphorae.contract.layout import VrrpFiles
from amphorae.drivers.agent_client import AgentClient, AgentRequestError
from amphorae.render import keepalived as render_ka
from tests import leftovers, netns
from tests.agents import agent_command, kill_everything_under

AMPHORA_ID = str(uuid.uuid4())
HOST_IP = "198.18.220.1"
AGENT_IP = "198.18.220.2"
PEER_IP = "198.18.220.3"  # nobody: the MASTER never hears a competing advert
VIP = "198.18.220.100"
IFACE = "eth1"
PORT = 9443
CERT_ARGS = {"validity": 3600, "digest": "sha256"}


@dataclass
class Amphora:
    ns: str
    root: Path
    base: Path
    client: AgentClient
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start the agent inside the namespace and wait until it answers."""
        with open(self.root / "agent.log", "ab") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *agent_command(self.root / "agent.conf")],
                stdout=log, stderr=subprocess.STDOUT)
        self.client.request("GET", "info", max_retries=300, retry_interval=0.05)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean exit, so that coverage data gets written
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _require() -> None:
    netns.require_root()
    for tool in ("ip", "nft", "keepalived", "socat"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed")


def _wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout}s")


@contextlib.contextmanager
def _veth(ns: str) -> Iterator[str]:
    host_end = f"amph-{secrets.token_hex(3)}"
    leftovers.register(host_end)
    netns.run("ip", "link", "add", host_end, "type", "veth", "peer", "name", IFACE,
              "netns", ns)
    try:
        netns.run("ip", "addr", "add", f"{HOST_IP}/24", "dev", host_end)
        netns.run("ip", "link", "set", host_end, "up")
        netns.run("ip", "-n", ns, "addr", "add", f"{AGENT_IP}/24", "dev", IFACE)
        netns.run("ip", "-n", ns, "link", "set", IFACE, "up")
        yield host_end
    finally:
        subprocess.run(["ip", "link", "delete", host_end], check=False, capture_output=True)


@contextlib.contextmanager
def _subnet_lock(timeout: float = 120) -> Iterator[None]:
    """The host end holds 198.18.220.1/24: one user of the subnet at a time (parallel
    runs, xdist workers), waiting a bounded time for the other. The lock is on this
    file, so nothing is left behind."""
    with open(__file__, "rb") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"198.18.220.0/24 still in use after {timeout}s")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def amphora() -> Iterator[Amphora]:
    _require()
    root = Path(tempfile.mkdtemp(prefix="amphorae-vrrp-"))
    leftovers.register(root)
    amp = None
    try:
        with _subnet_lock(), netns.namespace("agent") as ns, _veth(ns):
            ca = pki.create_ca(**CERT_ARGS)
            pki.save_bundle(pki.issue_server_cert(ca, AMPHORA_ID, AGENT_IP, **CERT_ARGS),
                            root / "server.pem")
            pki.save_bundle(pki.issue_client_cert(ca, **CERT_ARGS), root / "client.pem")
            pki.save_cert(ca.cert, root / "ca.pem")
            base = root / "base"
            (root / "agent.conf").write_text(f"""[amphora_agent]
amphora_id = {AMPHORA_ID}
bind_host = {AGENT_IP}
bind_port = {PORT}
agent_server_cert = {root / "server.pem"}
agent_server_ca = {root / "ca.pem"}
base_path = {base}
""")
            client = AgentClient(AGENT_IP, AMPHORA_ID, str(root / "client.pem"),
                                 str(root / "ca.pem"), port=PORT, max_retries=3,
                                 retry_interval=0.1)
            amp = Amphora(ns, root, base, client)
            amp.launch()
            yield amp
    finally:
        if amp is not None:
            amp.terminate()
        kill_everything_under(root)  # keepalived outlives the agent by design
        shutil.rmtree(root, ignore_errors=True)


def _put(amp: Amphora, path: str, body: bytes | None = None) -> dict:
    return dict(amp.client.request("PUT", path, body=body).json())


def _refused(amp: Amphora, method: str, path: str, body: bytes | None = None
             ) -> AgentRequestError:
    with pytest.raises(AgentRequestError) as info:
        amp.client.request(method, path, body=body)
    return info.value


def _udp_lb() -> model.LoadBalancer:
    pool = model.Pool(id="pool-udp", protocol="UDP", lb_algorithm="ROUND_ROBIN", members=(
        model.Member(id="m1", address="198.18.221.10", protocol_port=5300),
        model.Member(id="m2", address="198.18.221.11", protocol_port=5300)))
    listener = model.Listener(id="listener-udp", protocol="UDP", protocol_port=53,
                              default_pool_id=pool.id)
    return model.LoadBalancer(id="lb-udp", project_id="p", vips=(VIP,),
                              listeners=(listener,), pools=(pool,))


def _table(amp: Amphora) -> subprocess.CompletedProcess:
    return netns.run("nft", "list", "table", render_nft.TABLE, ns=amp.ns, check=False)


def _vrrp_config(amp: Amphora, **overrides: object) -> str:
    args: dict = {
        "name": "lbvrrptest", "interface": IFACE, "vrrp_ip": AGENT_IP, "peer_ips": (PEER_IP,),
        "priority": render_ka.MASTER_PRIORITY, "vips": (render_ka.VRRPVip(VIP, 24),),
        "auth_pass": "amphpass", "check_script": str(VrrpFiles.under(amp.base).check_script),
        "advert_int": 1, "check_interval": 1, "check_timeout": 2, "check_fall": 1,
        "check_rise": 1, "router_id": "amphvrrptest", **overrides}
    return render_ka.render(render_ka.VRRPConfig(**args))


def _has_vip(amp: Amphora) -> bool:
    out = netns.run("ip", "-o", "addr", "show", "dev", IFACE, ns=amp.ns).stdout
    return f" {VIP}/24 " in out


def _keepalived_pid(amp: Amphora) -> int | None:
    try:
        return int(VrrpFiles.under(amp.base).pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def test_nftables_apply_invalid_delete(amphora: Amphora) -> None:
    amp = amphora
    script = render_nft.render(_udp_lb())
    assert _put(amp, "nftables", script.encode()) == {"message": "OK"}
    listed = _table(amp)
    assert listed.returncode == 0, listed.stderr
    assert "udp dport 53" in listed.stdout and "198.18.221.10 . 5300" in listed.stdout
    assert amp.client.request("GET", "nftables").body.decode() == script
    # The agent's namespace forwards (DNAT to members); the host's is not touched.
    assert netns.run("sysctl", "-n", "net.ipv4.ip_forward", ns=amp.ns).stdout.strip() == "1"

    error = _refused(amp, "PUT", "nftables", b"table inet amphorae { chain c { bogus; } }\n")
    assert error.status == 400 and "bogus" in str(error.details)
    assert _table(amp).stdout == listed.stdout  # the rules in force stay
    assert amp.client.request("GET", "nftables").body.decode() == script

    assert amp.client.request("DELETE", "nftables").json() == {"message": "OK"}
    assert _table(amp).returncode != 0
    assert _refused(amp, "GET", "nftables").status == 404
    amp.client.request("DELETE", "nftables")  # deleting again is fine


def test_vrrp_master_holds_vip_until_stopped(amphora: Amphora) -> None:
    amp = amphora
    # The check script passes while the UDP rules are loaded.
    _put(amp, "nftables", render_nft.render(_udp_lb()).encode())
    script = render_ka.render_check_script((), nft_tables=(render_nft.TABLE,))
    _put(amp, "vrrp/check_script", script.encode())
    assert _refused(amp, "PUT", "vrrp/start").status == 404  # nothing uploaded yet

    config = _vrrp_config(amp)
    resp = amp.client.request("PUT", "vrrp/upload", body=config.encode())
    assert resp.status == 200 and resp.json() == {"message": "OK"}

    # A refused config leaves the installed one alone.
    broken = config.replace("    nopreempt\n", "    nopreempt\n    no_such_keyword {\n")
    error = _refused(amp, "PUT", "vrrp/upload", broken.encode())
    assert error.status == 400 and "no_such_keyword" in str(error.details)
    error = _refused(amp, "PUT", "vrrp/upload",
                     _vrrp_config(amp, interface="eth9").encode())
    assert error.status == 400 and "eth9" in str(error.details)
    assert amp.client.request("GET", "vrrp/upload").body.decode() == config
    assert _refused(amp, "PUT", "vrrp/explode").status == 400

    assert not _has_vip(amp)
    assert amp.client.running_vrrp_md5() is None  # installed, not running
    assert "started" in _put(amp, "vrrp/start")["details"]
    pid = _keepalived_pid(amp)
    assert pid is not None
    _wait("VIP on the MASTER", lambda: _has_vip(amp), 15)
    assert amp.client.running_vrrp_md5() == _md5(config)

    # start when running is a reload (same process); so is reload. What runs is told
    # apart from what is installed until the reload.
    assert "reloaded" in _put(amp, "vrrp/start")["details"]
    changed = config + "# changed\n"
    amp.client.upload_vrrp_config(changed)
    assert amp.client.running_vrrp_md5() == _md5(config)
    assert "reloaded" in _put(amp, "vrrp/reload")["details"]
    assert amp.client.running_vrrp_md5() == _md5(changed)
    assert _keepalived_pid(amp) == pid
    _wait("VIP after reload", lambda: _has_vip(amp), 15)

    # The check fails once the rules are gone: the instance goes to FAULT, drops the VIP.
    amp.client.request("DELETE", "nftables")
    _wait("VIP dropped on a failing check", lambda: not _has_vip(amp), 15)
    _put(amp, "nftables", render_nft.render(_udp_lb()).encode())
    _wait("VIP back with the check passing", lambda: _has_vip(amp), 15)

    # keepalived outlives the agent; a new agent finds it through its pid file.
    amp.terminate()
    assert hap._alive(pid) and _has_vip(amp)
    amp.launch()
    assert "reloaded" in _put(amp, "vrrp/start")["details"]

    assert _put(amp, "vrrp/stop")["details"] == "keepalived stopped: stopped"
    assert amp.client.running_vrrp_md5() is None
    assert not _has_vip(amp)  # stop returns once keepalived is gone, VIPs with it
    assert not hap._alive(pid)  # (not yet reaped by init maybe, but not running)
    assert _put(amp, "vrrp/stop")["details"] == "keepalived stopped: not running"
    amp.client.request("DELETE", "nftables")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()
