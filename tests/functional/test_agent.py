"""The amphora agent as a real process on loopback, driven by the controller's
AgentClient: mutual TLS, config upload and validation, HAProxy start / reload / stop,
certificates, and traffic through the HAProxy it runs."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from amphorae.agent import haproxy as hap
from amphorae.common import pki
from amphorae.contract import model
from amphorae.drivers.agent_client import AgentClient, AgentRequestError, AgentUnavailable
from amphorae.render import haproxy as render_haproxy
from tests.agents import agent_command, kill_everything_under
from tests.servers import free_port

HAPROXY = shutil.which("haproxy")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="needs haproxy")

AMPHORA_ID = str(uuid.uuid4())
CERT_ARGS = {"validity": 3600, "digest": "sha256"}


@dataclass
class Agent:
    root: Path
    base: Path
    port: int
    ca: pki.CertKey
    ca_file: Path
    client_cert: Path
    process: subprocess.Popen[bytes] | None
    start_seconds: float

    def client(self, **kwargs: object) -> AgentClient:
        args = {"port": self.port, "max_retries": 3, "retry_interval": 0.1, **kwargs}
        return AgentClient("127.0.0.1", AMPHORA_ID, str(self.client_cert), str(self.ca_file),
                           **args)  # type: ignore[arg-type]


def launch(agent: Agent) -> Agent:
    """Start the agent process of ``agent`` and wait until /info answers."""
    log = open(agent.root / "agent.log", "ab")  # noqa: SIM115 - the child keeps it
    started = time.monotonic()
    try:
        agent.process = subprocess.Popen(agent_command(agent.root / "agent.conf"),
                                         stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    agent.client(max_retries=2000, retry_interval=0.01).info()
    agent.start_seconds = time.monotonic() - started
    return agent


def terminate(agent: Agent) -> None:
    if agent.process is not None and agent.process.poll() is None:
        agent.process.terminate()  # a clean exit, so that coverage data gets written
        try:
            agent.process.wait(5)
        except subprocess.TimeoutExpired:
            agent.process.kill()
            agent.process.wait(5)


@contextlib.contextmanager
def running_agent(prefix: str, extra_config: str = "") -> Iterator[Agent]:
    """A real agent on loopback with a fresh CA; ``extra_config`` is appended to its
    configuration file. Everything it started is stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    handle = None
    try:
        ca = pki.create_ca(**CERT_ARGS)
        server = pki.issue_server_cert(ca, AMPHORA_ID, "127.0.0.1", **CERT_ARGS)
        client = pki.issue_client_cert(ca, **CERT_ARGS)
        pki.save_bundle(server, root / "server.pem")
        pki.save_bundle(client, root / "client.pem")
        pki.save_cert(ca.cert, root / "ca.pem")
        port = free_port()
        base = root / "base"
        (root / "agent.conf").write_text(f"""[amphora_agent]
amphora_id = {AMPHORA_ID}
bind_host = 127.0.0.1
bind_port = {port}
agent_server_cert = {root / "server.pem"}
agent_server_ca = {root / "ca.pem"}
base_path = {base}
haproxy_cmd = {HAPROXY}
haproxy_stop_timeout = 3
{extra_config}""")
        handle = launch(Agent(root, base, port, ca, root / "ca.pem", root / "client.pem",
                              None, 0.0))
        yield handle
    finally:
        if handle is not None:
            terminate(handle)
        kill_everything_under(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    with running_agent("amphorae-agent-") as handle:
        print(f"\nagent start (process start to /info answering): "
              f"{handle.start_seconds * 1000:.0f} ms")
        yield handle


@contextlib.contextmanager
def backend_server(text: bytes) -> Iterator[int]:
    """A tiny HTTP member on loopback answering ``text``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/slow":
                time.sleep(1.0)
            self.send_response(200)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def render_lb(agent: Agent, lb_id: str, port: int, member_port: int) -> str:
    listener_id, pool_id = str(uuid.uuid4()), str(uuid.uuid4())
    lb = model.LoadBalancer(
        id=lb_id, project_id="amphorae-test", vips=("127.0.0.1",),
        listeners=(model.Listener(id=listener_id, protocol="HTTP", protocol_port=port,
                                  default_pool_id=pool_id),),
        pools=(model.Pool(id=pool_id, protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                          members=(model.Member(id=str(uuid.uuid4()), address="127.0.0.1",
                                                protocol_port=member_port),)),))
    info = agent.client().info()
    settings = render_haproxy.HaproxySettings(fd_limit=info.max_fds, hard_stop_after=5)
    paths = render_haproxy.AmphoraPaths.for_lb(str(agent.base), lb_id)
    return render_haproxy.render(lb, settings, paths)


def http_get(port: int, timeout: float = 5.0, path: str = "/") -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body)
        return body
    finally:
        conn.close()


def raw_tls_get(agent: Agent, context: ssl.SSLContext) -> bytes:
    """GET /1.0/info over a TLS socket set up by hand; what came back (b'' if closed)."""
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname=AMPHORA_ID) as tls:
        tls.sendall(b"GET /1.0/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
        return data


def _client_context(agent: Agent, cert: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(agent.ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert))
    return context


# -- transport -------------------------------------------------------------------------


def test_info_and_version(agent: Agent) -> None:
    client = agent.client()
    assert client.version() == "1.0"
    info = client.info()
    assert info.api_version == "1.0"
    assert info.hostname == socket.gethostname()
    assert info.haproxy_version.startswith("2.")
    assert info.max_fds == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    details = client.details()
    assert details["active"] is True and details["cpu_count"] >= 1
    assert details["memory"]["total"] > 0
    assert agent.start_seconds < 10


def test_refuses_client_without_certificate(agent: Agent) -> None:
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        data = raw_tls_get(agent, _client_context(agent, None))
        assert b"HTTP/1." not in data  # closed without an answer counts as refused
        raise ConnectionResetError("closed without an answer")
    # The control: the same raw request with our certificate is answered.
    assert b" 200 " in raw_tls_get(agent, _client_context(agent, agent.client_cert))


def test_refuses_certificate_of_another_ca(agent: Agent) -> None:
    other_ca = pki.create_ca("another CA", **CERT_ARGS)
    other = pki.issue_client_cert(other_ca, **CERT_ARGS)
    path = agent.root / "other-client.pem"
    pki.save_bundle(other, path)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        data = raw_tls_get(agent, _client_context(agent, path))
        assert b"HTTP/1." not in data
        raise ConnectionResetError("closed without an answer")
    client = AgentClient("127.0.0.1", AMPHORA_ID, str(path), str(agent.ca_file),
                         port=agent.port, max_retries=0)
    with pytest.raises(AgentUnavailable):
        client.info()


def test_client_checks_the_amphora_id(agent: Agent) -> None:
    client = AgentClient("127.0.0.1", str(uuid.uuid4()), str(agent.client_cert),
                         str(agent.ca_file), port=agent.port, max_retries=5)
    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match="certificate"):
        client.info()
    assert time.monotonic() - started < 2  # not retried


def test_unreachable_agent_is_retried_then_unavailable(agent: Agent) -> None:
    client = AgentClient("127.0.0.1", AMPHORA_ID, str(agent.client_cert), str(agent.ca_file),
                         port=free_port(), max_retries=2, retry_interval=0.05)
    with pytest.raises(AgentUnavailable, match="3 attempts"):
        client.info()


def test_errors_are_json(agent: Agent) -> None:
    client = agent.client()
    with pytest.raises(AgentRequestError) as err:
        client.get_haproxy_config(str(uuid.uuid4()))
    assert err.value.status == 404 and err.value.message == "Loadbalancer Not Found"
    with pytest.raises(AgentRequestError) as err:
        client.request("PUT", f"loadbalancer/{uuid.uuid4()}/explode")
    assert err.value.status == 400
    with pytest.raises(AgentRequestError) as err:
        client.request("GET", "no/such/path")
    assert err.value.status == 404
    with pytest.raises(AgentRequestError) as err:
        client.get_haproxy_config("..")
    assert err.value.status in (400, 404)


# -- HAProxy ---------------------------------------------------------------------------


@dataclass
class RunningLb:
    lb_id: str
    port: int
    config: str


@pytest.fixture(scope="module")
def lb(agent: Agent) -> Iterator[RunningLb]:
    lb_id = str(uuid.uuid4())
    with backend_server(b"member-says-hello") as member_port:
        port = free_port()
        config = render_lb(agent, lb_id, port, member_port)
        client = agent.client()
        etag = client.upload_haproxy_config(lb_id, config)
        assert len(etag) == 32
        client.start(lb_id)
        try:
            yield RunningLb(lb_id, port, config)
        finally:
            with contextlib.suppress(Exception):
                client.delete_listeners(lb_id)


def test_traffic_flows_through_haproxy(agent: Agent, lb: RunningLb) -> None:
    client = agent.client()
    assert client.get_haproxy_config(lb.lb_id) == lb.config
    assert http_get(lb.port) == b"member-says-hello"
    listeners = client.listeners()
    assert [(item["type"], item["status"]) for item in listeners] == [("HTTP", "ACTIVE")]
    pid_file = agent.base / lb.lb_id / "haproxy.pid"
    assert pid_file.is_file()
    assert (agent.base / lb.lb_id / "servers-state").exists()
    assert client.start(lb.lb_id)["details"].endswith("already running")


def test_the_running_config_is_told_apart_from_the_installed_one(agent: Agent,
                                                                  lb: RunningLb) -> None:
    """Between an upload and its reload the agent reports both: a controller that died in
    between must see that the new config is not running yet."""
    client = agent.client()
    changed = lb.config + "# changed\n"
    try:
        assert client.running_haproxy_md5(lb.lb_id) == _md5(lb.config)
        client.upload_haproxy_config(lb.lb_id, changed)
        assert client.get_haproxy_config(lb.lb_id) == changed
        assert client.running_haproxy_md5(lb.lb_id) == _md5(lb.config)
        client.reload(lb.lb_id)
        assert client.running_haproxy_md5(lb.lb_id) == _md5(changed)
        client.stop(lb.lb_id)
        assert client.running_haproxy_md5(lb.lb_id) is None
        assert client.running_haproxy_md5(str(uuid.uuid4())) is None
    finally:
        client.upload_haproxy_config(lb.lb_id, lb.config)
        client.reload(lb.lb_id)  # starts it again
    assert client.running_haproxy_md5(lb.lb_id) == _md5(lb.config)
    assert http_get(lb.port) == b"member-says-hello"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_broken_config_is_refused_and_old_one_keeps_serving(agent: Agent,
                                                            lb: RunningLb) -> None:
    client = agent.client()
    broken = lb.config.replace("    maxconn", "    no_such_keyword 1\n    maxconn", 1)
    with pytest.raises(AgentRequestError) as err:
        client.upload_haproxy_config(lb.lb_id, broken)
    assert err.value.status == 400
    assert err.value.message == "Invalid request"
    assert "no_such_keyword" in err.value.details
    assert client.get_haproxy_config(lb.lb_id) == lb.config
    client.reload(lb.lb_id)
    assert http_get(lb.port) == b"member-says-hello"


def test_reloads_refuse_no_connection(agent: Agent, lb: RunningLb) -> None:
    client = agent.client()
    done = threading.Event()
    results = {"ok": 0, "failed": 0}
    errors: list[str] = []

    def traffic() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline and results["ok"] < 100_000:
            try:
                http_get(lb.port)
                results["ok"] += 1
            except Exception as exc:
                results["failed"] += 1
                errors.append(repr(exc))

    slow: list[bytes | Exception] = []

    def slow_request() -> None:
        try:
            slow.append(http_get(lb.port, path="/slow"))
        except Exception as exc:
            slow.append(exc)

    pid = int((agent.base / lb.lb_id / "haproxy.pid").read_text())
    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    in_flight = threading.Thread(target=slow_request, daemon=True)
    in_flight.start()  # a request the old worker is still serving while reloads happen
    try:
        time.sleep(0.1)
        started = time.monotonic()
        for _ in range(20):
            assert client.reload(lb.lb_id)["details"].endswith("reloaded")
        elapsed = time.monotonic() - started
        time.sleep(0.1)
    finally:
        done.set()
        thread.join(10)
        in_flight.join(10)
    print(f"\n20 reloads in {elapsed:.2f} s; requests: {results['ok']} ok, "
          f"{results['failed']} failed")
    assert results["failed"] == 0, errors[:5]
    assert results["ok"] >= 20
    assert slow == [b"member-says-hello"]
    # Each reload started a new HAProxy; the ones told to finish are gone once their
    # connections ended (the slow one above).
    seen = hap.Supervisor(agent.base, "haproxy")
    assert seen.pid(lb.lb_id) not in (None, pid)
    deadline = time.monotonic() + 10
    while seen.processes(lb.lb_id) != [seen.pid(lb.lb_id)]:
        assert time.monotonic() < deadline, seen.processes(lb.lb_id)
        time.sleep(0.05)


def test_certificates(agent: Agent, lb: RunningLb) -> None:
    client = agent.client()
    pem = agent.ca.cert_pem()
    assert client.certificate_md5(lb.lb_id, "ca-bundle.pem") is None
    assert client.ensure_certificate(lb.lb_id, "ca-bundle.pem", pem) is True
    assert client.ensure_certificate(lb.lb_id, "ca-bundle.pem", pem) is False
    path = agent.base / lb.lb_id / "certs" / "ca-bundle.pem"
    assert path.read_bytes() == pem
    assert path.stat().st_mode & 0o777 == 0o600
    for bad in ("server.crt", ".pem", "..pem", "a%2Fb.pem"):
        with pytest.raises(AgentRequestError) as err:
            client.upload_certificate(lb.lb_id, bad, pem)
        assert err.value.status in (400, 404), bad
    client.delete_certificate(lb.lb_id, "ca-bundle.pem")
    assert not path.exists()


def test_stop_and_delete(agent: Agent) -> None:
    client = agent.client()
    lb_id = str(uuid.uuid4())
    with backend_server(b"second") as member_port:
        port = free_port()
        client.upload_haproxy_config(lb_id, render_lb(agent, lb_id, port, member_port))
        client.reload(lb_id)  # reload of a stopped load balancer starts it
        assert http_get(port) == b"second"
        pid = int((agent.base / lb_id / "haproxy.pid").read_text())
        assert client.stop(lb_id)["details"].endswith("stopped")
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
        assert not (agent.base / lb_id / "haproxy.pid").exists()
        with pytest.raises(OSError):
            http_get(port, timeout=1)
        client.start(lb_id)
        assert http_get(port) == b"second"
        pid = int((agent.base / lb_id / "haproxy.pid").read_text())
        client.delete_listeners(lb_id)
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
        assert not (agent.base / lb_id).exists()
        client.delete_listeners(lb_id)  # unknown ids are fine
        with pytest.raises(AgentRequestError) as err:
            client.get_haproxy_config(lb_id)
        assert err.value.status == 404


def test_start_failure_reports_haproxy_output(agent: Agent) -> None:
    client = agent.client()
    lb_id = str(uuid.uuid4())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        client.upload_haproxy_config(lb_id, render_lb(agent, lb_id, port, free_port()))
        try:
            with pytest.raises(AgentRequestError) as err:
                client.start(lb_id)
            assert err.value.status == 500
            assert "cannot bind socket" in err.value.details
            # Installed, though not running.
            assert "STOPPED" in {item["status"] for item in client.listeners()}
        finally:
            client.delete_listeners(lb_id)


def test_restarted_agent_adopts_running_haproxy(agent: Agent) -> None:
    client = agent.client()
    lb_id = str(uuid.uuid4())
    with backend_server(b"adopted") as member_port:
        port = free_port()
        client.upload_haproxy_config(lb_id, render_lb(agent, lb_id, port, member_port))
        client.start(lb_id)
        pid = int((agent.base / lb_id / "haproxy.pid").read_text())
        terminate(agent)  # HAProxy outlives its agent, as it would under systemd
        assert http_get(port) == b"adopted"
        launch(agent)
        assert agent.client().details()["haproxy_count"] >= 1
        assert agent.client().start(lb_id)["details"].endswith("already running")
        agent.client().reload(lb_id)  # the adopted process hands over its sockets
        reloaded = int((agent.base / lb_id / "haproxy.pid").read_text())
        assert reloaded != pid
        assert http_get(port) == b"adopted"
        agent.client().delete_listeners(lb_id)
        for gone in (pid, reloaded):
            assert not Path(f"/proc/{gone}").exists() or _zombie(gone)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
