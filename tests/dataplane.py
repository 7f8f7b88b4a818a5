"""A load balancer's data plane on this host: one booted netns amphora between the host
(the client) and member namespaces running small servers. For integration tests and
benchmarks; needs root.

:func:`single_amphora_topology` builds this, and removes all of it again::

    host .1 (.2 ...) --[VIP bridge]----- eth1 .10 = the VIP (amphora: agent, HAProxy, nft)
    host .1 ------------[member bridge]-- eth2 .10 (amphora)
                                       +-- eth0 .21, .22 ... (one namespace per member)

The amphora is booted by AmphoraBooter (agent over mutual TLS, its own management bridge
and a free /24 in 198.19.128.0/17). Each member namespace runs one server process
(:data:`MEMBER_SERVER`) with the :class:`Service` s asked for, each answering with the
member's name (``m1``, ``m2`` ...), so a client sees who served it. The host holds the
first addresses of the VIP subnet, so a test can speak from several source addresses.

A test renders a load balancer from the render model (:meth:`Topology.pool`,
:meth:`Topology.load_balancer`, :meth:`Topology.render`), runs it on the amphora through
the agent client (:meth:`Topology.serving`, :meth:`Topology.reload`) and sends traffic
to the VIP (:meth:`Topology.request`, :meth:`Topology.answer`, :meth:`Topology.tcp_exchange`,
:meth:`Topology.udp_exchange`).

Everything carries the caller's marker (6 hex digits): bridges ``amph-<marker>v/m/g``,
member namespaces ``amph-<marker>-m1``..., the state directory ``/tmp/amph-<marker>-*``,
and the amphora id starts with the marker's first 4 digits. Only the two given subnets
are used, and they must not be routed on the host yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import ipaddress
import json
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from email.message import Message
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from amphorae.common import pki
from amphorae.contract import model
from amphorae.drivers import agent_client
from amphorae.drivers.compute import amphora_boot as boot
from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import ownership, ports
from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.render import haproxy as render_haproxy
from tests import leftovers, netns
from tests.integration.test_netns_compute import free_cidr, link_names, netns_names

AMPHORA_HOST = 10  # host part of the VIP and of the amphora's member-network address
MEMBER_HOST_BASE = 20  # member mN gets host part 20 + N
MAX_CLIENTS = AMPHORA_HOST - 1  # host addresses .1 .. .9 on the VIP subnet
HTTP_TIMEOUT = 3.0
SETTLE_TIMEOUT = 10.0  # bound for a state change: health checks, readiness
MEMBER_READY_TIMEOUT = 10.0
HARD_STOP_AFTER = 5  # seconds an old HAProxy worker may linger after a reload
PROJECT_ID = "amphorae-test"
CERT_VALIDITY = 3600
DIGEST = "sha256"
MEMBER_DOMAIN = "members.test"  # member mN's TLS certificate names mN.members.test


@dataclasses.dataclass(frozen=True)
class Service:
    """One server every member runs, on its own address and ``port``.

    kinds (every answer starts with the member's name):

    - ``http``: GET any path -> 200, body = the name. ``GET /headers`` -> JSON
      ``{"member": name, "headers": {lower-case name: value}}`` (what reached the
      member). ``?set-cookie=NAME`` -> also ``Set-Cookie: NAME=<name>-<n>`` (a new
      application session). POST reads the whole body (Content-Length) before it
      answers: a client that holds the body back holds a connection on the member.
    - ``https``: the same over TLS, with a certificate from the topology's member CA
      naming ``<name>.members.test``.
    - ``tcp``: reads one line, answers ``<name>|<line>`` and closes.
    - ``udp``: answers each datagram with ``<name>|<datagram>``.
    """

    kind: str
    port: int


HTTP = Service("http", 8080)
HTTPS = Service("https", 8443)
TCP = Service("tcp", 9100)
UDP = Service("udp", 5300)
POOL_SERVICE = {"HTTP": HTTP, "HTTPS": HTTPS, "TCP": TCP, "UDP": UDP}  # pool protocol

# The member process. One per member namespace, one thread per service; it prints
# "ready" once every socket is bound and ends when its stdin closes (the test stops it,
# or the test process died). HTTPServer's server_bind looks up the address's DNS name
# before listening, which hangs in a namespace without DNS: skipped.
MEMBER_SERVER = r"""
import http.server, itertools, json, socketserver, ssl, sys, threading, urllib.parse

name, address, specs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sessions = itertools.count(1)


class Quiet:
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # failed handshakes, health checks that hang up: nothing to report


class Http(http.server.BaseHTTPRequestHandler):
    timeout = 10

    def setup(self):
        self.request.settimeout(self.timeout)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # here, not in the accepting thread
        super().setup()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        extra = [("Set-Cookie", f"{cookie}={name}-{next(sessions)}")
                 for cookie in urllib.parse.parse_qs(url.query).get("set-cookie", [])]
        if url.path == "/whoami":  # the member, and who connected (an amphora's port)
            self.reply(f"{name}|{self.client_address[0]}".encode(), extra)
        elif url.path == "/headers":
            headers = {key.lower(): value for key, value in self.headers.items()}
            self.reply(json.dumps({"member": name, "headers": headers}).encode(), extra)
        else:
            self.reply(name.encode(), extra)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(name.encode())

    def reply(self, body, extra=()):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HttpServer(Quiet, http.server.ThreadingHTTPServer):
    server_bind = socketserver.TCPServer.server_bind


class Line(socketserver.StreamRequestHandler):
    timeout = 10

    def handle(self):
        self.wfile.write(name.encode() + b"|" + self.rfile.readline())


class TcpServer(Quiet, socketserver.ThreadingTCPServer):
    pass


class Datagram(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        if data == b"whoami":  # the member, and who sent it (an amphora's port)
            data = self.client_address[0].encode()
        sock.sendto(name.encode() + b"|" + data, self.client_address)


class UdpServer(Quiet, socketserver.UDPServer):
    pass


for spec in specs:
    where = (address, spec["port"])
    if spec["kind"] in ("http", "https"):
        server = HttpServer(where, Http)
        if spec["kind"] == "https":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(spec["cert"])
            server.socket = context.wrap_socket(server.socket, server_side=True,
                                                do_handshake_on_connect=False)
    elif spec["kind"] == "tcp":
        server = TcpServer(where, Line)
    elif spec["kind"] == "udp":
        server = UdpServer(where, Datagram)
    else:
        sys.exit(f"unknown service kind {spec['kind']}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


class TopologyError(RuntimeError):
    """The topology cannot be built here (subnets taken, a member did not start)."""


# -- small helpers ----------------------------------------------------------------------


def new_id() -> str:
    return str(uuid.uuid4())


def wait_for(predicate: Callable[[], object], what: str,
             timeout: float = SETTLE_TIMEOUT, poll: float = 0.1) -> float:
    """Poll ``predicate`` every ``poll`` s until it is true; the seconds it took. Fails
    after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(poll)
    return time.monotonic() - started


def assert_round_robin(answers: Sequence[str], names: Sequence[str]) -> None:
    """Every member answers equally often, in a fixed rotation."""
    assert sorted(set(answers)) == sorted(names), answers
    period = len(names)
    assert all(a == answers[i % period] for i, a in enumerate(answers)), answers
    for name in names:
        assert answers.count(name) == len(answers) // period, answers


def member_name(server_name: str) -> str:
    """The member an HAProxy server name (a member id from :meth:`Topology.pool`) is."""
    return server_name.split("-", 1)[0]


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def subnets_in_use(cidrs: Iterable[str]) -> list[str]:
    """Those of ``cidrs`` that overlap a route the host has already."""
    wanted = [ipaddress.ip_network(c) for c in cidrs]
    routed = [ipaddress.ip_network(r["dst"], strict=False)
              for r in json.loads(netns.run("ip", "-json", "route", "show").stdout)
              if r["dst"] != "default"]
    return [str(w) for w in wanted if any(w.overlaps(r) for r in routed if r.version == 4)]


@dataclasses.dataclass(frozen=True)
class Reply:
    """One HTTP answer; ``certificate`` is the server's when the request went over TLS."""

    status: int
    headers: Message
    body: bytes
    certificate: x509.Certificate | None = None

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    def cookie(self, name: str) -> str | None:
        """The value this answer sets for cookie ``name``, None when it sets none."""
        for header in self.headers.get_all("Set-Cookie") or []:
            key, _, rest = header.partition("=")
            if key.strip() == name:
                return rest.split(";", 1)[0]
        return None


def connect(address: str, port: int, *, source: str | None = None, source_port: int = 0,
            timeout: float = HTTP_TIMEOUT) -> socket.socket:
    """A TCP connection to ``address``:``port`` from ``source`` (None: the route's) and
    ``source_port`` (0: any free one). A fixed source port is bound with SO_REUSEADDR and
    the connection is reset when closed (SO_LINGER 0): no TIME_WAIT is left on either end
    to keep the next connection from the same port from being made."""
    if not source_port:
        return socket.create_connection((address, port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.settimeout(timeout)
        sock.bind((source or "", source_port))
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def http_request(address: str, port: int, path: str = "/", *, method: str = "GET",
                 headers: Mapping[str, str] | None = None, body: bytes | None = None,
                 source: str | None = None, source_port: int = 0,
                 tls: ssl.SSLContext | None = None, server_name: str | None = None,
                 timeout: float = HTTP_TIMEOUT) -> Reply:
    """One request on a fresh connection (``Connection: close``), from ``source`` and
    ``source_port`` when given (see :func:`connect`); over TLS with ``tls``, sending
    ``server_name`` as SNI (None: no SNI)."""
    sock = connect(address, port, source=source, source_port=source_port, timeout=timeout)
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        certificate = None
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_name)
            certificate = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True))
        conn.sock = sock
        conn.request(method, path, body=body,
                     headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read(), certificate)
    finally:
        conn.close()
        sock.close()


# -- member servers ------------------------------------------------------------------


def start_member_server(ns: str, name: str, address: str, specs: Sequence[dict[str, Any]],
                        log: Path) -> subprocess.Popen[bytes]:
    """:data:`MEMBER_SERVER` in namespace ``ns``, answering as ``name`` on ``address``
    with the services in ``specs``; returns once every socket is bound."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", MEMBER_SERVER, name, address,
             json.dumps(list(specs))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], MEMBER_READY_TIMEOUT)
    if not ready or proc.stdout.readline().strip() != b"ready":
        stop_member_server(proc)
        raise TopologyError(f"member {name} did not start:\n{log.read_text()[-2000:]}")
    return proc


def stop_member_server(proc: subprocess.Popen[bytes]) -> None:
    """Closing its stdin ends a member server."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -- the topology -------------------------------------------------------------------


class Topology:
    """One booted amphora wired between the host and member namespaces (module
    docstring). Made by :func:`single_amphora_topology`; the attributes are its names and
    addresses, the methods run load balancers on it and send traffic through it."""

    def __init__(self, marker: str, vip_cidr: str, member_cidr: str, *, members: int,
                 services: Sequence[Service], clients: int) -> None:
        if len(marker) != 6 or any(c not in "0123456789abcdef" for c in marker):
            raise ValueError(f"marker must be 6 lower-case hex digits, not {marker!r}")
        if not 1 <= clients <= MAX_CLIENTS:
            raise ValueError(f"1 to {MAX_CLIENTS} client addresses, not {clients}")
        self.marker = marker
        self.vip_net = ipaddress.ip_network(vip_cidr)
        self.member_net = ipaddress.ip_network(member_cidr)
        self.vip = str(self.vip_net[AMPHORA_HOST])
        self.amp_member_ip = str(self.member_net[AMPHORA_HOST])
        self.host_member_ip = str(self.member_net[1])
        #: Host addresses on the VIP subnet a client may send from; the first is the
        #: host's primary one there (the default source).
        self.clients = tuple(str(self.vip_net[1 + i]) for i in range(clients))
        #: member name -> address, m1 first
        self.members = {f"m{i}": str(self.member_net[MEMBER_HOST_BASE + i])
                        for i in range(1, members + 1)}
        self.names = list(self.members)
        self.member_ns = {name: f"amph-{marker}-{name}" for name in self.members}
        self.services = tuple(services)
        self.vip_bridge = f"amph-{marker}v"
        self.member_bridge = f"amph-{marker}m"
        self.mgmt_bridge = f"amph-{marker}g"
        self.amphora_id = marker[:4] + new_id()[4:]
        self.namespace = compute.namespace_name(self.amphora_id)
        self.plumbing = plumbing_mod.Plumbing()
        #: Signs the members' TLS certificates (Service kind https).
        self.member_ca = pki.create_ca("amphorae test member CA", digest=DIGEST)
        self.servers: dict[str, subprocess.Popen[bytes]] = {}
        self.amp: boot.BootedAmphora | None = None
        self._agent: agent_client.AgentClient | None = None
        self._max_fds: int | None = None
        # Short: HAProxy's stats socket path under it must fit in 97 characters.
        leftovers.register(f"amph-{marker}")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"amph-{marker}-"))
        leftovers.register(self.workdir)
        try:
            self.files = self.workdir / "files"  # PEM files of members and clients
            self.files.mkdir(mode=0o700)
            self.driver = compute.NetnsComputeDriver(
                state_dir=str(self.workdir / "s"), management_bridge=self.mgmt_bridge,
                management_cidr=free_cidr(), deployment=ownership.deployment_id(self.workdir))
            self.booter = boot.AmphoraBooter(self.driver, self.workdir / "ca",
                                             ready_timeout=15, cert_validity=CERT_VALIDITY)
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    # -- plumbing and members -----------------------------------------------------------

    def plug_vip(self) -> None:
        """The VIP port eth1 in the amphora (idempotent)."""
        ports.plug_port(self.plumbing, self.namespace, self.vip_bridge, "eth1",
                        plumbing_mod.mac_address(f"{self.amphora_id}/vip"),
                        f"{self.vip}/{self.vip_net.prefixlen}")

    def plug_member_port(self) -> None:
        """The amphora's port eth2 on the member network (idempotent)."""
        ports.plug_port(self.plumbing, self.namespace, self.member_bridge, "eth2",
                        plumbing_mod.mac_address(f"{self.amphora_id}/member"),
                        f"{self.amp_member_ip}/{self.member_net.prefixlen}")

    def member_cert(self, name: str) -> Path:
        """Member ``name``'s TLS certificate and key (one PEM), made on first use."""
        path = self.files / f"member-{name}.pem"
        if not path.exists():
            pair = pki.issue_server_cert(self.member_ca, f"{name}.{MEMBER_DOMAIN}",
                                         validity=CERT_VALIDITY, digest=DIGEST)
            pki.save_bundle(pair, path)
        return path

    def start_member(self, name: str, services: Sequence[Service] | None = None) -> None:
        """Start member ``name``'s server with ``services`` (default: the topology's);
        returns once every socket is bound."""
        specs = [{"kind": s.kind, "port": s.port,
                  **({"cert": str(self.member_cert(name))} if s.kind == "https" else {})}
                 for s in (self.services if services is None else services)]
        self.servers[name] = start_member_server(
            self.member_ns[name], name, self.members[name], specs,
            self.workdir / f"member-{name}.log")

    def stop_member(self, name: str) -> None:
        """Stop member ``name``'s server; no-op if stopped."""
        proc = self.servers.pop(name, None)
        if proc is not None:
            stop_member_server(proc)

    # -- the agent and HAProxy ----------------------------------------------------------

    @property
    def agent(self) -> agent_client.AgentClient:
        """The amphora's agent client (shared; every call is its own connection)."""
        if self._agent is None:
            self._agent = self.client()
        return self._agent

    def client(self) -> agent_client.AgentClient:
        """A new agent client with short retries (the agent is up already)."""
        assert self.amp is not None, "the amphora is not booted"
        return self.booter.client(self.amphora_id, self.amp.management_ip, max_retries=3,
                                  retry_interval=0.2, conn_timeout=5, read_timeout=30)

    @property
    def agent_base(self) -> Path:
        """The agent's base path (one folder per load balancer under it)."""
        return self.booter.folder(self.amphora_id) / boot.AGENT_BASE

    def paths(self, lb_id: str) -> render_haproxy.AmphoraPaths:
        """Where ``lb_id``'s files live on the amphora, as the renderer names them."""
        return render_haproxy.AmphoraPaths.for_lb(str(self.agent_base), lb_id)

    def settings(self) -> render_haproxy.HaproxySettings:
        """Renderer settings: the amphora's descriptor limit, quick hard stop."""
        if self._max_fds is None:
            self._max_fds = self.agent.info().max_fds
        return render_haproxy.HaproxySettings(fd_limit=self._max_fds,
                                              hard_stop_after=HARD_STOP_AFTER)

    def pool(self, protocol: str, lb_algorithm: str = "ROUND_ROBIN", *,
             names: Iterable[str] | None = None, port: int | None = None,
             monitor: model.HealthMonitor | None = None,
             persistence: model.SessionPersistence | None = None) -> model.Pool:
        """A pool of members ``names`` (default: all) on ``port`` (default: the port of
        the service that speaks ``protocol``). Member ids start with the member's name,
        so HAProxy's server names tell who is who (:func:`member_name`)."""
        port = POOL_SERVICE[protocol].port if port is None else port
        members = tuple(model.Member(id=f"{name}-{new_id()}"[:36], address=self.members[name],
                                     protocol_port=port)
                        for name in (self.names if names is None else names))
        return model.Pool(id=new_id(), protocol=protocol, lb_algorithm=lb_algorithm,
                          members=members, health_monitor=monitor,
                          session_persistence=persistence)

    def load_balancer(self, listeners: Iterable[model.Listener], pools: Iterable[model.Pool],
                      lb_id: str | None = None) -> model.LoadBalancer:
        """A load balancer on this topology's VIP."""
        return model.LoadBalancer(id=lb_id or new_id(), project_id=PROJECT_ID,
                                  vips=(self.vip,), listeners=tuple(listeners),
                                  pools=tuple(pools))

    def render(self, lb: model.LoadBalancer,
               settings: render_haproxy.HaproxySettings | None = None) -> str:
        """``lb``'s haproxy.cfg for this amphora."""
        return render_haproxy.render(lb, settings or self.settings(), self.paths(lb.id))

    def upload_and_start(self, lb_id: str, config: str) -> None:
        self.agent.upload_haproxy_config(lb_id, config)
        self.agent.start(lb_id)

    def reload(self, lb_id: str, config: str) -> None:
        """Install ``config`` and reload (the agent returns once new workers run)."""
        self.agent.upload_haproxy_config(lb_id, config)
        self.agent.reload(lb_id)

    @contextlib.contextmanager
    def serving(self, lb: model.LoadBalancer,
                certificates: Mapping[str, bytes] | None = None) -> Iterator[str]:
        """``lb``'s HAProxy running on the amphora: ``certificates`` (file name -> PEM)
        uploaded first (the config names them), then the rendered config uploaded and
        started; yields the config. On exit the load balancer's listeners are deleted
        (HAProxy stopped, its files gone), also after a failure."""
        try:
            for name, pem in (certificates or {}).items():
                self.agent.ensure_certificate(lb.id, name, pem)
            config = self.render(lb)
            self.upload_and_start(lb.id, config)
            yield config
        except BaseException:
            with contextlib.suppress(agent_client.AgentError):
                self.agent.delete_listeners(lb.id)
            raise
        self.agent.delete_listeners(lb.id)

    def server_stats(self, lb_id: str) -> list[dict[str, str]]:
        """HAProxy's ``show stat`` rows (one dict per proxy and server), from the stats
        socket; OSError while HAProxy does not answer there yet."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(3)
            sock.connect(self.paths(lb_id).stats_socket)
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]

    def member_stats(self, lb_id: str) -> dict[str, dict[str, str]]:
        """Member name -> its server's stats row (one backend per member assumed)."""
        return {member_name(row["svname"]): row for row in self.server_stats(lb_id)
                if member_name(row.get("svname", "")) in self.members}

    def server_states(self, lb_id: str) -> dict[str, str]:
        """Member name -> HAProxy's status of it (UP / DOWN / ...)."""
        return {name: row["status"] for name, row in self.member_stats(lb_id).items()}

    def server_states_or_none(self, lb_id: str) -> dict[str, str] | None:
        """The member states, or None while HAProxy's stats socket does not answer yet."""
        try:
            return self.server_states(lb_id)
        except OSError:
            return None

    # -- traffic ------------------------------------------------------------------------

    def request(self, path: str = "/", *, port: int = 80, **kwargs: Any) -> Reply:
        """One HTTP request to the VIP (keywords as :func:`http_request`)."""
        return http_request(self.vip, port, path, **kwargs)

    def answer(self, path: str = "/", **kwargs: Any) -> str:
        """The body of a 200 answer from the VIP: which member served the request."""
        reply = self.request(path, **kwargs)
        assert reply.status == 200, (reply.status, reply.text)
        return reply.text

    def tls_context(self, trust: pki.CertKey,
                    client_cert: pki.CertKey | None = None) -> ssl.SSLContext:
        """A client context that accepts only certificates signed by ``trust`` (any name:
        tests read the name from :attr:`Reply.certificate`) and presents
        ``client_cert`` when given."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=trust.cert_pem().decode())
        if client_cert is not None:
            path = self.files / f"client-{client_cert.cert.serial_number:x}.pem"
            pki.save_bundle(client_cert, path)
            context.load_cert_chain(str(path))
        return context

    def tcp_exchange(self, port: int, payload: bytes, *, source: str | None = None,
                     source_port: int = 0, timeout: float = HTTP_TIMEOUT) -> str:
        """Send one line to the VIP over TCP (from ``source`` and ``source_port`` when
        given, see :func:`connect`); the member that echoed it (tcp service)."""
        with connect(self.vip, port, source=source, source_port=source_port,
                     timeout=timeout) as sock:
            sock.sendall(payload + b"\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        name, _, echoed = data.partition(b"|")
        assert echoed == payload + b"\n", data
        return name.decode()

    def udp_exchange(self, port: int, payload: bytes, *, sock: socket.socket | None = None,
                     source: str | None = None, source_port: int = 0,
                     timeout: float = HTTP_TIMEOUT) -> str:
        """Send one datagram to the VIP and return the member that echoed it (udp
        service). A new socket (a new flow, from ``source`` and ``source_port`` when
        given) unless ``sock`` is given; the socket is connected, so only an answer from
        the VIP counts, and an ICMP port unreachable raises ConnectionRefusedError."""
        own = sock is None
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if sock is None else sock
        try:
            if own and (source or source_port):
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.bind((source or "", source_port))
            udp.settimeout(timeout)
            udp.connect((self.vip, port))
            udp.send(payload)
            data = udp.recv(4096)
        finally:
            if own:
                udp.close()
        name, _, echoed = data.partition(b"|")
        assert echoed == payload, data
        return name.decode()

    # -- build and tear down ------------------------------------------------------------

    def _build(self) -> None:
        hosts = ((self.vip_bridge, self.vip_net, self.clients),
                 (self.member_bridge, self.member_net, (self.host_member_ip,)))
        for bridge, net, addresses in hosts:
            self.plumbing.ensure_bridge(bridge)
            for address in addresses:  # the first one added is the primary
                self.plumbing.ensure_host_address(bridge, f"{address}/{net.prefixlen}")
        self.amp = self.booter.create(self.amphora_id)
        self.plug_vip()
        self.plug_member_port()
        for name, address in self.members.items():
            self.plumbing.ensure_netns(self.member_ns[name])
            ports.plug_port(self.plumbing, self.member_ns[name], self.member_bridge, "eth0",
                            plumbing_mod.mac_address(self.member_ns[name]),
                            f"{address}/{self.member_net.prefixlen}",
                            gateway=self.host_member_ip)
            self.start_member(name)

    def _teardown(self) -> None:
        """Remove everything of this run, then fail if anything is left."""
        for name in list(self.servers):
            self.stop_member(name)
        self.booter.delete(self.amphora_id)  # agent, HAProxy, namespace with eth1/eth2
        run_ports = [(self.namespace, "eth1"), (self.namespace, "eth2"),
                     *((ns, "eth0") for ns in self.member_ns.values())]
        for ns, ifname in run_ports:
            ports.unplug_port(self.plumbing, ns, ifname)
        ours = (f"amph-{self.marker}", compute.NAMESPACE_PREFIX + self.marker[:4])
        for ns in netns_names():  # anything else of this run, e.g. after a failed boot
            if ns.startswith(compute.NAMESPACE_PREFIX + self.marker[:4]):
                self.driver.delete(ns[len(compute.NAMESPACE_PREFIX):])
            if ns.startswith(ours):
                self.plumbing.delete_netns(ns)
        for bridge in (self.vip_bridge, self.member_bridge, self.mgmt_bridge):
            self.plumbing.delete_bridge(bridge)
        shutil.rmtree(self.workdir, ignore_errors=True)
        veths = {ports.host_veth_name(ns, ifname) for ns, ifname in run_ports}
        left = ({n for n in netns_names() if n.startswith(ours)}
                | {n for n in link_names() if self.marker in n or n in veths})
        if left or self.workdir.exists():
            raise AssertionError(f"left behind: {left or self.workdir}")


@contextlib.contextmanager
def single_amphora_topology(marker: str, vip_cidr: str, member_cidr: str, *,
                            members: int = 3, services: Sequence[Service] = (HTTP,),
                            clients: int = 1) -> Iterator[Topology]:
    """Build the topology (module docstring) and yield it; on exit, also after a failure,
    remove all of it and assert nothing is left.

    ``marker``: 6 hex digits naming everything of this run (``secrets.token_hex(3)``);
    ``vip_cidr``/``member_cidr``: two /24s (or larger) inside 198.18.0.0/15 that the host
    does not route yet; ``members``: how many member namespaces (m1, m2, ...), each
    running ``services``; ``clients``: how many host addresses on the VIP subnet
    (:attr:`Topology.clients`). Root only (the caller checks, e.g. netns.require_root).
    """
    busy = subnets_in_use([vip_cidr, member_cidr])
    if busy:  # another run with the same subnets: do not touch its bridges
        raise TopologyError(f"{', '.join(busy)} already routed on this host")
    topo = Topology(marker, vip_cidr, member_cidr, members=members, services=services,
                    clients=clients)
    try:
        topo._build()
        yield topo
    finally:
        topo._teardown()


class Probe(threading.Thread):
    """Calls ``request`` (one request on a fresh connection; raising means it failed)
    every ``interval`` until stopped, recording (completion time, success) of each."""

    def __init__(self, request: Callable[[], object], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.request = request
        self.interval = interval
        self.results: list[tuple[float, bool]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.request()
                ok = True
            except (OSError, http.client.HTTPException, AssertionError, RuntimeError):
                ok = False
            self.results.append((time.monotonic(), ok))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def successes(self) -> list[float]:
        return [t for t, ok in self.results if ok]

    def failures(self) -> int:
        return sum(1 for _, ok in self.results if not ok)

    def wait_successes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.successes())
        while len(self.successes()) < start + count:
            if time.monotonic() > deadline or not self.is_alive():
                raise TopologyError(f"fewer than {count} successful requests in {timeout} s")
            time.sleep(0.02)

    def gap(self, since: float) -> float:
        """The outage around ``since`` (e.g. a kill): from the last success before it to
        the first success after the last failure that followed it. A request sent before
        ``since`` that completes just after it does not end the outage."""
        ok = self.successes()
        before = max(t for t in ok if t <= since)
        failures = [t for t, good in self.results if not good and t > since]
        after = min(t for t in ok if t > (failures[-1] if failures else since))
        return after - before
