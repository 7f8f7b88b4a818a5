"""Real traffic through the listener features of one booted netns amphora (root).

Each test builds a load balancer from the render model, renders it (render/haproxy.py or
contract/nftables.py), runs it on the amphora through the agent client and sends traffic
to the VIP; the members (tests/dataplane.py) answer with their names, so every check is
about who served what. Topology (tests/dataplane.py; only these subnets)::

    host 198.18.232.1-.3 --[VIP bridge]-- eth1 198.18.232.10 (amphora, VIP)
    host 198.18.233.1 --[member bridge]-- eth2 198.18.233.10 (amphora)
                                       +-- m1..m3 198.18.233.21..23: HTTP 8080,
                                           HTTPS 8443, TCP line echo 9100, UDP echo 5300

Under pytest-xdist the tests may be spread over two workers, each with a topology of
its own: the second worker's is on 198.18.234.0/24 and 198.18.235.0/24.
Every test removes its load balancer when it ends; the module fixture removes the rest.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import os
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from amphorae.agent import haproxy as agent_haproxy
from amphorae.common import pki
from amphorae.contract import model
from amphorae.contract import nftables as render_nftables
from amphorae.contract.layout import LbFiles
from tests import dataplane, netns
from tests.dataplane import assert_round_robin, common_name, new_id, wait_for

RUN = secrets.token_hex(3)
# (VIP subnet, member subnet) per xdist worker; "gw0" also without xdist.
SUBNETS = {"gw0": ("198.18.232.0/24", "198.18.233.0/24"),
           "gw1": ("198.18.234.0/24", "198.18.235.0/24")}
SERVICES = (dataplane.HTTP, dataplane.HTTPS, dataplane.TCP, dataplane.UDP)
TLS_ERRORS = (ssl.SSLError, ConnectionError, http.client.HTTPException)
RELOADS = 20
# Fixed client source ports below the kernel's ephemeral range (32768 and up), so that no
# other connection of the host holds one; each is used REPEATS times.
SOURCE_PORTS = range(20000, 20600, 30)
REPEATS = 3
UDP_FLOW_TIMEOUT = 1  # seconds conntrack keeps an idle UDP flow on the amphora here


@pytest.fixture(scope="module")
def topo() -> Iterator[dataplane.Topology]:
    netns.require_root()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if worker not in SUBNETS:
        pytest.fail(f"no subnets for xdist worker {worker}: run with at most -n {len(SUBNETS)}")
    vip_cidr, member_cidr = SUBNETS[worker]
    with dataplane.single_amphora_topology(RUN, vip_cidr, member_cidr, members=3,
                                           services=SERVICES, clients=3) as topo:
        yield topo


def listener(protocol: str, port: int, pool: model.Pool | None = None,
             **fields: object) -> model.Listener:
    return model.Listener(id=new_id(), protocol=protocol, protocol_port=port,
                          default_pool_id=pool.id if pool else None, **fields)


def http_lb(topo: dataplane.Topology, pool: model.Pool) -> model.LoadBalancer:
    """One HTTP listener on port 80 in front of ``pool``."""
    return topo.load_balancer([listener("HTTP", 80, pool)], [pool])


# -- session persistence --------------------------------------------------------------


def test_source_ip_persistence_keeps_each_client_on_its_member(topo) -> None:
    pool = topo.pool("HTTP", persistence=model.SessionPersistence("SOURCE_IP"))
    with topo.serving(http_lb(topo, pool)):
        # Round robin places the three clients' first requests on three members ...
        first = {client: topo.answer(source=client) for client in topo.clients}
        assert sorted(first.values()) == topo.names
        # ... and the stick table keeps each client there. Two requests per client and
        # round, so that plain rotation would move every client on.
        for _ in range(3):
            for client in topo.clients:
                assert [topo.answer(source=client) for _ in range(2)] == [first[client]] * 2


def test_http_cookie_persistence(topo) -> None:
    pool = topo.pool("HTTP", persistence=model.SessionPersistence("HTTP_COOKIE",
                                                                  cookie_name="AMPSRV"))
    with topo.serving(http_lb(topo, pool)):
        first = topo.request()
        cookie = first.cookie("AMPSRV")
        assert first.status == 200 and cookie is not None, first.headers
        assert dataplane.member_name(cookie) == first.text  # the cookie is its member id
        # A client that returns the cookie stays (and is not told again: indirect) ...
        for _ in range(6):
            again = topo.request(headers={"Cookie": f"AMPSRV={cookie}"})
            assert (again.status, again.text, again.cookie("AMPSRV")) == (
                200, first.text, None)
        # ... a client without it is balanced round robin.
        assert_round_robin([topo.answer() for _ in range(9)], topo.names)


def test_app_cookie_persistence(topo) -> None:
    pool = topo.pool("HTTP", persistence=model.SessionPersistence("APP_COOKIE",
                                                                  cookie_name="JSESSIONID"))
    with topo.serving(http_lb(topo, pool)):
        # Three logins, spread round robin; each member opens its own session.
        sessions = {}
        for _ in topo.names:
            login = topo.request("/login?set-cookie=JSESSIONID")
            session = login.cookie("JSESSIONID")
            assert login.status == 200 and session is not None, login.headers
            sessions[session] = login.text
        assert sorted(sessions.values()) == topo.names
        # HAProxy learnt each session id from the answer: requests carrying it stick
        # (two per session and round, so that plain rotation would not match).
        for _ in range(3):
            for session, member in sessions.items():
                cookie = {"Cookie": f"JSESSIONID={session}"}
                assert [topo.answer(headers=cookie) for _ in range(2)] == [member] * 2
        assert_round_robin([topo.answer() for _ in range(6)], topo.names)


# -- L7 policies ------------------------------------------------------------------------


def rule(rule_type: str, compare: str, value: str) -> model.L7Rule:
    return model.L7Rule(id=new_id(), type=rule_type, compare_type=compare, value=value)


def test_l7_policies_route_redirect_and_reject(topo) -> None:
    default, api, static = (topo.pool("HTTP", names=[name]) for name in topo.names)
    policies = (
        model.L7Policy(id=new_id(), action="REJECT", position=1,
                       rules=(rule("PATH", "STARTS_WITH", "/admin"),)),
        model.L7Policy(id=new_id(), action="REDIRECT_TO_URL", position=2,
                       redirect_url="https://www.lb.test/new", redirect_http_code=301,
                       rules=(rule("PATH", "STARTS_WITH", "/old"),)),
        model.L7Policy(id=new_id(), action="REDIRECT_TO_POOL", position=3,
                       redirect_pool_id=api.id,
                       rules=(rule("HOST_NAME", "EQUAL_TO", "api.lb.test"),)),
        model.L7Policy(id=new_id(), action="REDIRECT_TO_POOL", position=4,
                       redirect_pool_id=static.id,
                       rules=(rule("PATH", "STARTS_WITH", "/static/"),)),
    )
    http = listener("HTTP", 80, default, l7policies=policies)
    api_host = {"Host": "api.lb.test"}
    with topo.serving(topo.load_balancer([http], [default, api, static])):
        assert topo.answer("/", headers={"Host": "www.lb.test"}) == "m1"  # no rule matches
        assert topo.answer("/", headers=api_host) == "m2"  # by host name
        assert topo.answer("/static/app.js") == "m3"  # by path
        # Position order: the host rule (3) wins over the path rule (4).
        assert topo.answer("/static/app.js", headers=api_host) == "m2"
        rejected = topo.request("/admin/users", headers=api_host)
        assert rejected.status == 403, rejected.status
        moved = topo.request("/old/page")
        assert (moved.status, moved.headers["Location"]) == (301, "https://www.lb.test/new")


# -- algorithms ---------------------------------------------------------------------------


class HeldRequest:
    """A POST through the VIP whose one-byte body is held back: HAProxy has passed the
    headers on, so the member that got it keeps a connection open until release()."""

    def __init__(self, topo: dataplane.Topology) -> None:
        self.sock = socket.create_connection((topo.vip, 80), timeout=dataplane.HTTP_TIMEOUT)
        self.sock.sendall(b"POST /hold HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 1\r\n"
                          b"Connection: close\r\n\r\n")

    def release(self) -> str:
        """Send the body; the member that held the connection."""
        try:
            self.sock.sendall(b"x")
            resp = http.client.HTTPResponse(self.sock)
            resp.begin()
            assert resp.status == 200, resp.status
            return resp.read().decode()
        finally:
            self.sock.close()


def busy_connections(topo: dataplane.Topology, lb_id: str) -> int:
    return sum(int(row["scur"] or 0) for row in topo.member_stats(lb_id).values())


def test_least_connections_sends_new_requests_to_the_idle_member(topo) -> None:
    pool = topo.pool("HTTP", "LEAST_CONNECTIONS")
    lb = http_lb(topo, pool)
    with topo.serving(lb):
        holds = []
        try:
            for count in (1, 2):  # one at a time: each is placed knowing the last
                holds.append(HeldRequest(topo))
                wait_for(lambda n=count: busy_connections(topo, lb.id) == n,
                         f"{count} held connection(s) on the members")
            # Round robin would rotate; leastconn sends all to the one idle member. Each
            # request waits until HAProxy has let go of the one before: a member still
            # counting it would tie with the holders.
            quick = []
            for _ in range(8):
                wait_for(lambda: busy_connections(topo, lb.id) == 2, "only the holds busy")
                quick.append(topo.answer())
        finally:
            holders = [hold.release() for hold in holds]
        assert len(set(holders)) == 2, holders
        (idle,) = set(topo.names) - set(holders)
        assert quick == [idle] * 8, (holders, quick)
        # All idle again: the load is spread over every member.
        assert sorted({topo.answer() for _ in range(6)}) == topo.names


def assert_hashed_by_source_port(served: dict[int, list[str]], names: list[str]) -> None:
    """``served``: source port -> the members that answered its connections. Each port
    kept one member, and the ports (all from one client address) reached every member."""
    assert all(len(set(members)) == 1 for members in served.values()), served
    spread = collections.Counter(members[0] for members in served.values())
    assert sorted(spread) == sorted(names), spread


@pytest.mark.parametrize("protocol", ["HTTP", "TCP"])
def test_source_ip_port_keeps_each_client_port_on_its_member(topo, protocol: str) -> None:
    pool = topo.pool(protocol, "SOURCE_IP_PORT")
    port = 80 if protocol == "HTTP" else 9000
    client = topo.clients[0]

    def exchange(source_port: int) -> str:
        if protocol == "HTTP":
            return topo.answer(source=client, source_port=source_port)
        return topo.tcp_exchange(port, b"hello", source=client, source_port=source_port)

    with topo.serving(topo.load_balancer([listener(protocol, port, pool)], [pool])):
        # A port's connections in a row: round robin would move each to the next member.
        served = {p: [exchange(p) for _ in range(REPEATS)] for p in SOURCE_PORTS}
    assert_hashed_by_source_port(served, topo.names)


# -- TCP, HTTPS passthrough, TLS termination ----------------------------------------------


def test_tcp_listener_round_robin(topo) -> None:
    pool = topo.pool("TCP")
    with topo.serving(topo.load_balancer([listener("TCP", 9000, pool)], [pool])):
        answers = [topo.tcp_exchange(9000, f"hello {i}".encode()) for i in range(9)]
        assert_round_robin(answers, topo.names)


def test_https_passthrough_reaches_the_members_tls(topo) -> None:
    monitor = model.HealthMonitor(id=new_id(), type="TLS-HELLO", delay=1, timeout=1,
                                  max_retries=1)
    pool = topo.pool("HTTPS", monitor=monitor)
    lb = topo.load_balancer([listener("HTTPS", 443, pool)], [pool])
    trust_members = topo.tls_context(topo.member_ca)
    with topo.serving(lb):
        # HAProxy's TLS hello checks complete a handshake with every member.
        wait_for(lambda: {row["check_status"] for row in topo.member_stats(lb.id).values()}
                 == {"L6OK"}, "TLS-HELLO checks passed on all members")
        replies = [topo.request("/", port=443, tls=trust_members, server_name="lb.test")
                   for _ in range(6)]
        # TLS ends at the member: the certificate the client checked is the answering
        # member's own, signed by the member CA (the client trusts nothing else).
        for reply in replies:
            assert reply.status == 200
            assert reply.certificate is not None
            assert common_name(reply.certificate) == f"{reply.text}.{dataplane.MEMBER_DOMAIN}"
        assert_round_robin([reply.text for reply in replies], topo.names)


@dataclasses.dataclass(frozen=True)
class ListenerCerts:
    ca: pki.CertKey  # signs the listener's certificates
    default: pki.CertKey  # www.lb.test, first in the crt-list
    sni: pki.CertKey  # api.lb.test
    client_ca: pki.CertKey  # client certificates must chain to it (MANDATORY)
    client: pki.CertKey
    stranger: pki.CertKey  # a client certificate from another CA

    @classmethod
    def make(cls) -> ListenerCerts:
        def server(ca: pki.CertKey, name: str) -> pki.CertKey:
            return pki.issue_server_cert(ca, name, validity=dataplane.CERT_VALIDITY,
                                         digest=dataplane.DIGEST)

        def client(ca: pki.CertKey, name: str) -> pki.CertKey:
            return pki.issue_client_cert(ca, name, validity=dataplane.CERT_VALIDITY,
                                         digest=dataplane.DIGEST)

        ca, client_ca, other_ca = (pki.create_ca(f"amphorae test {what} CA",
                                                 digest=dataplane.DIGEST)
                                   for what in ("listener", "client", "other"))
        return cls(ca, server(ca, "www.lb.test"), server(ca, "api.lb.test"), client_ca,
                   client(client_ca, "amphorae-test-client"), client(other_ca, "stranger"))

    def files(self, paths) -> dict[str, bytes]:
        """What the agent stores for the listener; the crt-list names the default
        certificate first (HAProxy's default), SNI names come from the certificates."""
        crt_list = f"{paths.cert('default.pem')}\n{paths.cert('sni.pem')}\n"
        return {"default.pem": self.default.bundle_pem(), "sni.pem": self.sni.bundle_pem(),
                "client-ca.pem": self.client_ca.cert_pem(), "crt-list.pem": crt_list.encode()}


def test_tls_termination_sni_and_client_certificates(topo) -> None:
    certs = ListenerCerts.make()
    pool = topo.pool("HTTP")
    proto = (("X-Forwarded-Proto", "true"),)
    ssl_headers = (*proto, ("X-SSL-Client-Verify", "true"), ("X-SSL-Client-Has-Cert", "true"),
                   ("X-SSL-Client-CN", "true"))
    terminated = listener("TERMINATED_HTTPS", 443, pool, insert_headers=proto,
                          tls=model.ListenerTLS(crt_list_file="crt-list.pem"))
    mutual = listener("TERMINATED_HTTPS", 8443, pool, insert_headers=ssl_headers,
                      tls=model.ListenerTLS(crt_list_file="crt-list.pem",
                                            client_authentication="MANDATORY",
                                            client_ca_file="client-ca.pem"))
    lb = topo.load_balancer([terminated, mutual], [pool])
    files = certs.files(topo.paths(lb.id))
    trust = topo.tls_context(certs.ca)
    with topo.serving(lb, certificates=files):
        # The agent holds the uploaded bytes: ensuring them again uploads nothing.
        assert not any(topo.agent.ensure_certificate(lb.id, name, pem)
                       for name, pem in files.items())
        # The certificate follows the SNI name; no name or an unknown one: the default.
        for server_name, expected in (("api.lb.test", "api.lb.test"),
                                      ("www.lb.test", "www.lb.test"),
                                      ("other.lb.test", "www.lb.test"), (None, "www.lb.test")):
            reply = topo.request("/headers", port=443, tls=trust, server_name=server_name)
            assert reply.status == 200 and reply.certificate is not None
            assert common_name(reply.certificate) == expected, server_name
            assert reply.json()["headers"]["x-forwarded-proto"] == "https"

        # MANDATORY: no client certificate, or one from another CA, gets no answer.
        for client_cert in (None, certs.stranger):
            with pytest.raises(TLS_ERRORS):
                topo.request("/headers", port=8443, server_name="www.lb.test",
                             tls=topo.tls_context(certs.ca, client_cert))
        reply = topo.request("/headers", port=8443, server_name="api.lb.test",
                             tls=topo.tls_context(certs.ca, certs.client))
        assert reply.status == 200 and common_name(reply.certificate) == "api.lb.test"
        seen = reply.json()["headers"]
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-ssl-client-verify"] == "0"  # verified
        assert seen["x-ssl-client-has-cert"] == "1"
        assert seen["x-ssl-client-cn"].strip('"') == "amphorae-test-client"


# -- Prometheus, UDP --------------------------------------------------------------------


def test_prometheus_listener_exports_haproxy_metrics(topo) -> None:
    pool = topo.pool("HTTP")
    http = listener("HTTP", 80, pool)
    lb = topo.load_balancer([http, listener("PROMETHEUS", 8404)], [pool])
    with topo.serving(lb):
        for _ in range(5):
            topo.answer()
        metrics = topo.request("/metrics", port=8404)
        assert metrics.status == 200
        assert metrics.headers["Content-Type"].startswith("text/plain")
        assert re.search(r"^haproxy_process_uptime_seconds \d+", metrics.text, re.M)
        # The HTTP listener's frontend counted exactly the five requests above.
        counter = f'haproxy_frontend_http_requests_total{{proxy="{http.id}"}} '
        served = re.search(f"^{re.escape(counter)}(\\d+)$", metrics.text, re.M)
        assert served and int(served.group(1)) == 5, metrics.text[:2000]
        assert topo.request("/", port=8404).status == 404  # only /metrics is served


def test_udp_listener_through_nftables(topo) -> None:
    pool = topo.pool("UDP")
    lb = topo.load_balancer([listener("UDP", 53, pool)], [pool])
    script = render_nftables.render(lb)
    agent = topo.agent
    agent.upload_nftables(script)
    try:
        assert agent.get_nftables() == script
        # Every datagram from a new socket is a new flow: DNAT rotates over the members.
        answers = [topo.udp_exchange(53, f"ping {i}".encode()) for i in range(9)]
        assert_round_robin(answers, topo.names)
        # Later datagrams of one flow follow its first (conntrack).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flow:
            same = {topo.udp_exchange(53, f"again {i}".encode(), sock=flow) for i in range(5)}
        assert len(same) == 1, same
    finally:
        agent.delete_nftables()
    assert agent.get_nftables() is None
    # Without the rules nothing on the amphora takes the port: ICMP port unreachable.
    with pytest.raises(ConnectionRefusedError):
        topo.udp_exchange(53, b"nobody")


@contextlib.contextmanager
def short_udp_flows(topo: dataplane.Topology) -> Iterator[None]:
    """Conntrack on the amphora forgets an idle UDP flow after UDP_FLOW_TIMEOUT (not 30 s)."""
    key = "net.netfilter.nf_conntrack_udp_timeout"
    before = netns.run("sysctl", "-n", key, ns=topo.namespace).stdout.strip()
    netns.run("sysctl", "-qw", f"{key}={UDP_FLOW_TIMEOUT}", ns=topo.namespace)
    try:
        yield
    finally:
        netns.run("sysctl", "-qw", f"{key}={before}", ns=topo.namespace)


def test_udp_source_ip_port_keeps_each_client_port_on_its_member(topo) -> None:
    hashed, rotated = topo.pool("UDP", "SOURCE_IP_PORT"), topo.pool("UDP")
    lb = topo.load_balancer([listener("UDP", 53, hashed), listener("UDP", 54, rotated)],
                            [hashed, rotated])
    served: dict[int, dict[int, list[str]]] = {53: {}, 54: {}}
    topo.agent.upload_nftables(render_nftables.render(lb))
    try:
        with short_udp_flows(topo):
            for _ in range(REPEATS):
                for source_port in SOURCE_PORTS:
                    for port, by_port in served.items():
                        by_port.setdefault(source_port, []).append(topo.udp_exchange(
                            port, b"ping", source=topo.clients[0], source_port=source_port))
                # Conntrack forgets every flow: the next round is decided anew ...
                time.sleep(UDP_FLOW_TIMEOUT + 0.5)
    finally:
        topo.agent.delete_nftables()
    # ... as the round-robin listener shows: its ports did not keep their members.
    assert any(len(set(members)) > 1 for members in served[54].values()), served[54]
    assert_hashed_by_source_port(served[53], topo.names)


# -- reloads under load -------------------------------------------------------------------


class Load:
    """Client threads sending GETs through the VIP, each on a fresh connection, until
    stopped; every completion and every failure is recorded."""

    def __init__(self, topo: dataplane.Topology, threads: int = 2) -> None:
        self.topo = topo
        self.done: list[float] = []  # monotonic time of each 200 answer
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(client,), daemon=True)
                        for client in topo.clients[:threads]]

    def _run(self, client: str) -> None:
        while not self.stopping.is_set():
            try:
                reply = self.topo.request(source=client)
            except Exception as exc:
                self.failures.append(repr(exc))
                continue
            if reply.status == 200 and reply.text in self.topo.members:
                self.done.append(time.monotonic())
            else:
                self.failures.append(f"{reply.status} {reply.text[:80]}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(dataplane.HTTP_TIMEOUT * 2)


def serving_pid(topo: dataplane.Topology, lb_id: str) -> int:
    """HAProxy's own pid: each reload starts a new process."""
    return agent_haproxy.serving_pid(LbFiles(topo.agent_base / lb_id).stats_socket)


def test_reloads_under_load_lose_no_request(topo) -> None:
    pool = topo.pool("HTTP")
    lb = http_lb(topo, pool)
    windows = []  # (start, end) of each upload + reload
    with topo.serving(lb):
        pids = [serving_pid(topo, lb.id)]
        with Load(topo) as load:
            wait_for(lambda: len(load.done) >= 10, "load flowing before the first reload")
            for i in range(RELOADS):
                # A changed config each time: m1's weight goes 2, 3, 4, 1, 2, ... and,
                # so that it is a reload (a weight alone goes through the runtime API),
                # the listener's member connect timeout too.
                weight = 1 + (i + 1) % 4
                members = (dataclasses.replace(pool.members[0], weight=weight),
                           *pool.members[1:])
                (first,) = lb.listeners
                changed = dataclasses.replace(
                    lb, pools=(dataclasses.replace(pool, members=members),),
                    listeners=(dataclasses.replace(
                        first, timeout_member_connect=first.timeout_member_connect + i + 1),))
                start = time.monotonic()
                topo.reload(lb.id, topo.render(changed))
                windows.append((start, time.monotonic()))
                pids.append(serving_pid(topo, lb.id))
                # The reload is live: the new worker runs with the new weight.
                assert topo.member_stats(lb.id)["m1"]["weight"] == str(weight)
            served = len(load.done)
            wait_for(lambda: len(load.done) >= served + 10, "load flowing after the reloads")
        assert len(set(pids)) == RELOADS + 1, pids  # a new HAProxy each time
    assert load.failures == [], load.failures[:5]
    # Requests were answered during every reload's interval (upload, check, re-exec).
    for start, end in windows:
        assert any(start <= t <= end for t in load.done), (start, end)
    reload_time = sum(end - start for start, end in windows)
    print(f"\n{RELOADS} reloads in {reload_time:.1f} s under load: {len(load.done)} "
          f"requests answered, {len(load.failures)} failed")
