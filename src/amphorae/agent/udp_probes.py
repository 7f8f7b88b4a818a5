"""One health check of one member, as the agent runs them for UDP pools: each probe
returns True (the check passed) or False, within about ``timeout`` seconds, and never
raises for what the network does.

- UDP-CONNECT, as Octavia's ``udp_check.sh`` (``nc -uz``): send a datagram on a connected
  socket; the member fails only if an ICMP error comes back (port unreachable shows as
  ECONNREFUSED). An answer passes at once; silence until the timeout passes too, since
  a UDP service need not answer a stray datagram.
- TCP: the connection is accepted.
- HTTP: a request (``http_method``, default GET, on ``url_path``, default ``/``; HTTP
  ``http_version``, default 1.0, with Host ``domain_name`` when set) gets a status line
  whose code is in ``expected_codes`` (default 200).
- PING: an ICMP (v6) echo request on a raw socket gets its reply; the agent runs as root
  in its namespace (there is no ``ping`` binary on an amphora of this project).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Callable

from amphorae.contract import model
from amphorae.contract.expected_codes import parse_expected_codes

UDP_PAYLOAD = b"X"  # what nc -uz sends
MAX_STATUS_LINE = 4096
USER_AGENT = "amphorae-health-check"


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a member is checked: its monitor address and port when set."""

    address: str
    port: int

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.address)  # ValueError for anything but an IP address

    @classmethod
    def of(cls, member: model.Member) -> Target:
        return cls(member.monitor_address or member.address,
                   member.monitor_port or member.protocol_port)

    @property
    def family(self) -> socket.AddressFamily:
        version = ipaddress.ip_address(self.address).version
        return socket.AF_INET6 if version == 6 else socket.AF_INET


Probe = Callable[[Target, model.HealthMonitor], bool]


def udp_connect(target: Target, monitor: model.HealthMonitor) -> bool:
    with socket.socket(target.family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(monitor.timeout)
        try:
            sock.connect((target.address, target.port))
            sock.send(UDP_PAYLOAD)
            sock.recv(2048)
        except TimeoutError:
            return True  # no ICMP error within the timeout
        except OSError:
            return False  # refused (port unreachable), host or network unreachable
    return True


def tcp(target: Target, monitor: model.HealthMonitor) -> bool:
    try:
        socket.create_connection((target.address, target.port), timeout=monitor.timeout
                                 ).close()
    except OSError:
        return False
    return True


def http(target: Target, monitor: model.HealthMonitor) -> bool:
    deadline = time.monotonic() + monitor.timeout
    try:
        with socket.create_connection((target.address, target.port),
                                      timeout=monitor.timeout) as sock:
            sock.sendall(http_request(target, monitor))
            line = _read_line(sock, deadline)
    except OSError:
        return False
    return status_code(line) in parse_expected_codes(monitor.expected_codes)


def http_request(target: Target, monitor: model.HealthMonitor) -> bytes:
    version = f"{float(monitor.http_version or 1.0):.1f}"
    host = monitor.domain_name or (f"[{target.address}]" if target.family == socket.AF_INET6
                                   else target.address)
    lines = [f"{monitor.http_method or 'GET'} {monitor.url_path or '/'} HTTP/{version}",
             f"Host: {host}", f"User-Agent: {USER_AGENT}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def status_code(line: bytes) -> int | None:
    """The code of an HTTP status line (``HTTP/1.1 200 OK``), None if it is none."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < MAX_STATUS_LINE:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(MAX_STATUS_LINE)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


# -- PING ------------------------------------------------------------------------------

_ICMP_ECHO = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}  # request, reply


def ping(target: Target, monitor: model.HealthMonitor) -> bool:
    family = target.family
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    ident, seq = os.getpid() & 0xFFFF, int.from_bytes(os.urandom(2), "big")
    request_type, reply_type = _ICMP_ECHO[family]
    deadline = time.monotonic() + monitor.timeout
    try:
        with socket.socket(family, socket.SOCK_RAW, proto) as sock:
            sock.sendto(echo_request(request_type, ident, seq), (target.address, 0))
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                packet, source = sock.recvfrom(65535)
                if family == socket.AF_INET:  # raw IPv4 sockets deliver the IP header
                    packet = packet[(packet[0] & 0x0F) * 4:]
                if (ipaddress.ip_address(source[0]) == ipaddress.ip_address(target.address)
                        and is_echo_reply(packet, reply_type, ident, seq)):
                    return True
    except OSError:
        return False
    return False


def echo_request(icmp_type: int, ident: int, seq: int) -> bytes:
    """An echo request; for ICMPv6 the kernel fills in the checksum."""
    payload = b"amphorae"
    header = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq)
    checksum = _checksum(header + payload) if icmp_type == 8 else 0
    return struct.pack("!BBHHH", icmp_type, 0, checksum, ident, seq) + payload


def is_echo_reply(packet: bytes, reply_type: int, ident: int, seq: int) -> bool:
    if len(packet) < 8:
        return False
    icmp_type, code, _, got_ident, got_seq = struct.unpack("!BBHHH", packet[:8])
    return (icmp_type, code, got_ident, got_seq) == (reply_type, 0, ident, seq)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


PROBES: dict[str, Probe] = {"UDP-CONNECT": udp_connect, "TCP": tcp, "HTTP": http,
                            "PING": ping}
