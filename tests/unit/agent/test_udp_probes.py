"""The agent's health probes for UDP pools against servers on loopback (and, for PING,
inside a throwaway namespace): each must pass for a live service and fail for a dead one
within its timeout."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from amphorae.agent import udp_probes as probes
from amphorae.agent.udp_probes import Target
from amphorae.contract import model
from tests import netns

LOOPBACK = "127.0.0.1"


def monitor(kind: str, **fields: object) -> model.HealthMonitor:
    return model.HealthMonitor(id="hm", type=kind, delay=1, timeout=1, max_retries=1,
                               **fields)  # type: ignore[arg-type]


def free_port(kind: int) -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(kind: int, handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback socket of ``kind`` whose traffic ``handle`` serves in a thread until
    the block ends; yields its port."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind((LOOPBACK, 0))
    if kind == socket.SOCK_STREAM:
        sock.listen(8)
    sock.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                handle(sock)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def timed(probe: probes.Probe, target: Target, hm: model.HealthMonitor) -> tuple[bool, float]:
    started = time.monotonic()
    return probe(target, hm), time.monotonic() - started


# -- UDP-CONNECT --------------------------------------------------------------------------


def echo(sock: socket.socket) -> None:
    data, peer = sock.recvfrom(2048)
    sock.sendto(data, peer)


def test_udp_connect_answer_passes_at_once() -> None:
    with serving(socket.SOCK_DGRAM, echo) as port:
        ok, took = timed(probes.udp_connect, Target(LOOPBACK, port), monitor("UDP-CONNECT"))
    assert ok and took < 0.5


def test_udp_connect_silence_passes_after_the_timeout() -> None:
    received: list[bytes] = []
    with serving(socket.SOCK_DGRAM, lambda s: received.append(s.recv(2048))) as port:
        ok, took = timed(probes.udp_connect, Target(LOOPBACK, port), monitor("UDP-CONNECT"))
    assert ok and took >= 0.9
    assert received == [probes.UDP_PAYLOAD]


def test_udp_connect_port_unreachable_fails() -> None:
    port = free_port(socket.SOCK_DGRAM)
    ok, took = timed(probes.udp_connect, Target(LOOPBACK, port), monitor("UDP-CONNECT"))
    assert not ok and took < 0.5


# -- TCP ----------------------------------------------------------------------------------


def accept_and_close(sock: socket.socket) -> None:
    conn, _ = sock.accept()
    conn.close()


def test_tcp() -> None:
    with serving(socket.SOCK_STREAM, accept_and_close) as port:
        assert probes.tcp(Target(LOOPBACK, port), monitor("TCP"))
    assert not probes.tcp(Target(LOOPBACK, free_port(socket.SOCK_STREAM)), monitor("TCP"))


# -- HTTP ---------------------------------------------------------------------------------


class HttpStub:
    """Answers every request with ``status`` and remembers the request head."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.heads: list[bytes] = []

    def __call__(self, sock: socket.socket) -> None:
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(2)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            self.heads.append(head)
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % self.status)


@pytest.mark.parametrize("status,codes,ok", [
    (200, None, True), (204, "200-204", True), (202, "200,202", True),
    (500, None, False), (301, "200-204", False)])
def test_http_expected_codes(status: int, codes: str | None, ok: bool) -> None:
    stub = HttpStub(status)
    with serving(socket.SOCK_STREAM, stub) as port:
        assert probes.http(Target(LOOPBACK, port), monitor("HTTP", expected_codes=codes)) is ok
    assert len(stub.heads) == 1


def test_http_request_line_and_host() -> None:
    stub = HttpStub(200)
    hm = monitor("HTTP", http_method="HEAD", url_path="/health?x=1", http_version=1.1,
                 domain_name="svc.test")
    with serving(socket.SOCK_STREAM, stub) as port:
        assert probes.http(Target(LOOPBACK, port), hm)
        assert probes.http(Target(LOOPBACK, port), monitor("HTTP"))
    lines = [head.split(b"\r\n") for head in stub.heads]
    assert lines[0][0] == b"HEAD /health?x=1 HTTP/1.1" and b"Host: svc.test" in lines[0]
    assert lines[1][0] == b"GET / HTTP/1.0" and f"Host: {LOOPBACK}".encode() in lines[1]
    assert probes.http_request(Target("2001:db8::1", 80), monitor("HTTP")).split(
        b"\r\n")[1] == b"Host: [2001:db8::1]"


def test_http_silent_or_closed_fails_within_the_timeout() -> None:
    held: list[socket.socket] = []

    def accept_and_hold(sock: socket.socket) -> None:
        held.append(sock.accept()[0])

    with serving(socket.SOCK_STREAM, accept_and_hold) as port:
        ok, took = timed(probes.http, Target(LOOPBACK, port), monitor("HTTP"))
    for conn in held:
        conn.close()
    assert not ok and 0.9 <= took < 2
    with serving(socket.SOCK_STREAM, accept_and_close) as port:
        assert not probes.http(Target(LOOPBACK, port), monitor("HTTP"))
    assert not probes.http(Target(LOOPBACK, free_port(socket.SOCK_STREAM)), monitor("HTTP"))


@pytest.mark.parametrize("line,code", [
    (b"HTTP/1.1 200 OK", 200), (b"HTTP/1.0 404", 404), (b"SSH-2.0-x", None), (b"", None),
    (b"HTTP/1.1 abc", None)])
def test_status_code(line: bytes, code: int | None) -> None:
    assert probes.status_code(line) == code


# -- PING ---------------------------------------------------------------------------------

PING_IN_NAMESPACE = """
import sys
from amphorae.agent import udp_probes
from amphorae.contract import model
hm = model.HealthMonitor(id="hm", type="PING", delay=1, timeout=1, max_retries=1)
print(udp_probes.ping(udp_probes.Target(sys.argv[1], 0), hm))
"""


def ping_in(ns: str, address: str) -> bool:
    out = netns.run(sys.executable, "-c", PING_IN_NAMESPACE, address, ns=ns).stdout
    return out.strip() == "True"


def test_ping_needs_an_echo_reply() -> None:
    netns.require_root()
    with netns.namespace("ping") as ns:
        assert ping_in(ns, LOOPBACK)
        assert ping_in(ns, "::1")
        netns.run("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1", ns=ns)
        assert not ping_in(ns, LOOPBACK)  # no reply: fails after the timeout


def test_echo_request_checksum_and_reply_matching() -> None:
    packet = probes.echo_request(8, 0x1234, 7)
    assert probes._checksum(packet) == 0  # a valid checksum sums to zero
    reply = bytes([0, 0]) + packet[2:]
    assert probes.is_echo_reply(reply, 0, 0x1234, 7)
    assert not probes.is_echo_reply(reply, 0, 0x1234, 8)
    assert not probes.is_echo_reply(packet, 0, 0x1234, 7)  # the request itself
