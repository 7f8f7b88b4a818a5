"""haproxy.cfg rendering: golden files per feature, HAProxy's own check (`haproxy -c`, no
warning allowed) on every configuration rendered here, the small syntax helpers, and two
runs of a real HAProxy: ACL patterns survive quoting byte for byte, and L7 policies act in
position order."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import pathlib
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from oslo_config import cfg

from amphorae.common import config
from amphorae.contract.expected_codes import parse_expected_codes
from amphorae.contract.model import (
    HealthMonitor,
    L7Policy,
    L7Rule,
    Listener,
    ListenerTLS,
    LoadBalancer,
    Member,
    Peer,
    Pool,
    PoolTLS,
    SessionPersistence,
)
from amphorae.render import haproxy
from amphorae.render import haproxy_syntax as syn
from amphorae.render.haproxy import AmphoraPaths, HaproxySettings
from tests import golden

# Golden files show the paths of an amphora; the tests render into a temporary folder.
GOLDEN_ROOT = "/var/lib/amphorae/amphora"
LB_ID = "5c1f2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c"
PROJECT = "8a2c4e6f0b1d4e3f9a7c5e1d3b2f4a6c"
VIP = "198.18.0.10"
VIP6 = "2001:db8::10"
SETTINGS = HaproxySettings()


def _id(prefix: str, n: int) -> str:
    """A readable fixed UUID: the prefix tells what it is in the golden files."""
    return f"{prefix}-0000-4000-8000-{n:012d}"


def LST(n: int) -> str:
    return _id("11111111", n)


def POOL(n: int) -> str:
    return _id("22222222", n)


def MEM(n: int) -> str:
    return _id("33333333", n)


def POL(n: int) -> str:
    return _id("44444444", n)


def RULE(n: int) -> str:
    return _id("55555555", n)


def members(*addresses: str, port: int = 80) -> tuple[Member, ...]:
    return tuple(Member(id=MEM(i), address=a, protocol_port=port)
                 for i, a in enumerate(addresses, 1))


def lb(*listeners: Listener, pools: tuple[Pool, ...] = (), **kw) -> LoadBalancer:
    return LoadBalancer(id=LB_ID, project_id=PROJECT, vips=kw.pop("vips", (VIP,)),
                        listeners=listeners, pools=pools, **kw)


HTTP_HM = HealthMonitor(id="hm-1", type="HTTP", delay=5, timeout=3, max_retries=2,
                        max_retries_down=4, http_method="GET", url_path="/healthz",
                        expected_codes="200-202,204", http_version=1.1,
                        domain_name="www.example.com")
TLS_FULL = ListenerTLS(
    crt_list_file="listener.crtlist", client_authentication="MANDATORY",
    client_ca_file="ca.pem", client_crl_file="crl.pem", ciphers=config.DEFAULT_CIPHERS)
ALL_HTTP_HEADERS = tuple((h, "true") for h in (
    "X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto",
    "X-Forwarded-IP", "X-Client-IP", "X-Real-IP"))
ALL_TLS_HEADERS = tuple((h, "True") for h in (
    "X-SSL-Client-Verify", "X-SSL-Client-Has-Cert", "X-SSL-Client-DN", "X-SSL-Client-CN",
    "X-SSL-Issuer", "X-SSL-Client-SHA1", "X-SSL-Client-Not-Before", "X-SSL-Client-Not-After"))


def _http_basic() -> LoadBalancer:
    pool = Pool(id=POOL(1), protocol="HTTP", lb_algorithm="ROUND_ROBIN", health_monitor=HTTP_HM,
                members=(
                    Member(id=MEM(1), address="198.18.4.11", protocol_port=8080, weight=3),
                    Member(id=MEM(2), address="198.18.4.12", protocol_port=8080, weight=0),
                    Member(id=MEM(3), address="198.18.4.13", protocol_port=8080, backup=True,
                           monitor_address="198.18.5.13", monitor_port=9000),
                    Member(id=MEM(4), address="2001:db8:4::14", protocol_port=8080,
                           enabled=False),
                ))
    listener = Listener(
        id=LST(1), protocol="HTTP", protocol_port=80, default_pool_id=POOL(1),
        timeout_client_data=30000, timeout_member_connect=2000, timeout_member_data=40000,
        timeout_tcp_inspect=1000,
        insert_headers=(("X-Forwarded-For", "true"), ("X-Forwarded-Port", "TRUE"),
                        ("X-Forwarded-Proto", "true"), ("X-Real-IP", "false")))
    return lb(listener, pools=(pool,))


def _tcp() -> LoadBalancer:
    pool = Pool(id=POOL(1), protocol="TCP", lb_algorithm="LEAST_CONNECTIONS",
                members=members("198.18.4.11", "198.18.4.12", port=3306),
                health_monitor=HealthMonitor(id="hm", type="TCP", delay=2, timeout=1,
                                             max_retries=3),
                session_persistence=SessionPersistence(type="SOURCE_IP"))
    proxy_pool = Pool(id=POOL(2), protocol="PROXY", lb_algorithm="ROUND_ROBIN",
                      members=members("198.18.4.21", port=3307))
    return lb(
        Listener(id=LST(1), protocol="TCP", protocol_port=3306, default_pool_id=POOL(1),
                 connection_limit=1000, allowed_cidrs=("198.18.8.0/24", "198.18.9.7")),
        Listener(id=LST(2), protocol="TCP", protocol_port=3307, default_pool_id=POOL(2),
                 connection_limit=500),
        pools=(pool, proxy_pool))


def _https_passthrough() -> LoadBalancer:
    hello = Pool(id=POOL(1), protocol="HTTPS", lb_algorithm="SOURCE_IP",
                 members=members("198.18.4.11", "198.18.4.12", port=443),
                 health_monitor=HealthMonitor(id="hm", type="TLS-HELLO", delay=10, timeout=5,
                                              max_retries=3))
    https_check = Pool(id=POOL(2), protocol="PROXYV2", lb_algorithm="ROUND_ROBIN",
                       members=members("198.18.4.21", port=443),
                       health_monitor=HealthMonitor(id="hm2", type="HTTPS", delay=10,
                                                    timeout=5, max_retries=3,
                                                    url_path="/status", expected_codes="200"))
    return lb(Listener(id=LST(1), protocol="HTTPS", protocol_port=443, default_pool_id=POOL(1)),
              Listener(id=LST(2), protocol="HTTPS", protocol_port=8443,
                       default_pool_id=POOL(2)),
              pools=(hello, https_check))


def _terminated_https() -> LoadBalancer:
    cookie_pool = Pool(id=POOL(1), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                       members=members("198.18.4.11", "198.18.4.12"),
                       session_persistence=SessionPersistence(type="HTTP_COOKIE"))
    proxy_pool = Pool(id=POOL(2), protocol="PROXYV2", lb_algorithm="ROUND_ROBIN",
                      members=members("198.18.4.21"))
    full = Listener(
        id=LST(1), protocol="TERMINATED_HTTPS", protocol_port=443, default_pool_id=POOL(1),
        tls=TLS_FULL, hsts_max_age=31536000, hsts_include_subdomains=True, hsts_preload=True,
        insert_headers=ALL_HTTP_HEADERS + ALL_TLS_HEADERS)
    optional = Listener(
        id=LST(2), protocol="TERMINATED_HTTPS", protocol_port=8443, default_pool_id=POOL(2),
        tls=ListenerTLS(crt_list_file="listener.crtlist", client_authentication="OPTIONAL",
                        client_ca_file="ca.pem", ciphers="ECDHE-ECDSA-AES256-GCM-SHA384",
                        versions=("TLSv1.3",), alpn_protocols=("http/1.1",)),
        hsts_max_age=0)
    plain = Listener(id=LST(3), protocol="TERMINATED_HTTPS", protocol_port=9443,
                     default_pool_id=POOL(1),
                     tls=ListenerTLS(crt_list_file="listener.crtlist", alpn_protocols=()))
    return lb(full, optional, plain, pools=(cookie_pool, proxy_pool))


def _prometheus() -> LoadBalancer:
    return lb(Listener(id=LST(1), protocol="PROMETHEUS", protocol_port=9100,
                       allowed_cidrs=("198.18.0.0/16",), connection_limit=100))


def _algorithms() -> LoadBalancer:
    pool = Pool(id=POOL(1), protocol="HTTP", lb_algorithm="SOURCE_IP_PORT",
                members=members("198.18.4.11", "198.18.4.12"))
    tcp_pool = Pool(id=POOL(2), protocol="TCP", lb_algorithm="SOURCE_IP_PORT",
                    members=members("198.18.4.11", "198.18.4.12", port=22))
    other = Pool(id=POOL(3), protocol="TCP", lb_algorithm="NO_SUCH_ALGORITHM",
                 members=members("198.18.4.11", port=23))
    return lb(Listener(id=LST(1), protocol="HTTP", protocol_port=80, default_pool_id=POOL(1)),
              Listener(id=LST(2), protocol="TCP", protocol_port=22, default_pool_id=POOL(2)),
              Listener(id=LST(3), protocol="TCP", protocol_port=23, default_pool_id=POOL(3)),
              pools=(pool, tcp_pool, other))


def _persistence() -> LoadBalancer:
    app = Pool(id=POOL(1), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
               members=members("198.18.4.11", "198.18.4.12"),
               session_persistence=SessionPersistence(type="APP_COOKIE",
                                                      cookie_name="JSESSIONID"))
    http_cookie = Pool(id=POOL(2), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                       members=members("198.18.4.21", "198.18.4.22"),
                       session_persistence=SessionPersistence(type="HTTP_COOKIE",
                                                              cookie_name="LB_SRV"))
    source = Pool(id=POOL(3), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                  members=members("198.18.4.31"),
                  session_persistence=SessionPersistence(type="SOURCE_IP",
                                                         persistence_timeout=600))
    tcp_cookie = Pool(id=POOL(4), protocol="TCP", lb_algorithm="ROUND_ROBIN",
                      members=members("198.18.4.41", port=25),
                      session_persistence=SessionPersistence(type="HTTP_COOKIE"))
    listeners = [Listener(id=LST(i), protocol="HTTP", protocol_port=8000 + i,
                          default_pool_id=POOL(i)) for i in (1, 2, 3)]
    listeners.append(Listener(id=LST(4), protocol="TCP", protocol_port=25,
                              default_pool_id=POOL(4)))
    return lb(*listeners, pools=(app, http_cookie, source, tcp_cookie))


def _health_monitors() -> LoadBalancer:
    def pool(n: int, hm: HealthMonitor | None) -> Pool:
        return Pool(id=POOL(n), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                    members=members(f"198.18.4.{10 + n}"), health_monitor=hm)

    base = HealthMonitor(id="hm", type="PING", delay=3, timeout=2, max_retries=1,
                         max_retries_down=1)
    pools = (
        pool(1, base),
        pool(2, dataclasses.replace(base, type="HTTPS", http_method="HEAD",
                                    url_path="/check?full=1", expected_codes="200,301-303",
                                    http_version=1.0)),
        pool(3, dataclasses.replace(base, type="HTTP", http_method="OPTIONS", url_path="/",
                                    domain_name="health.example.com")),
        pool(4, dataclasses.replace(base, type="TLS-HELLO")),
        pool(5, dataclasses.replace(base, type="HTTP", enabled=False)),
        pool(6, dataclasses.replace(base, type="UDP-CONNECT")),
    )
    listeners = [Listener(id=LST(n), protocol="HTTP", protocol_port=8000 + n,
                          default_pool_id=POOL(n)) for n in range(1, 7)]
    return lb(*listeners, pools=pools)


def _pool_tls() -> LoadBalancer:
    verified = Pool(id=POOL(1), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                    members=members("198.18.4.11", port=443), health_monitor=HTTP_HM,
                    tls=PoolTLS(client_cert_file="client.pem", ca_file="ca.pem",
                                crl_file="crl.pem", ciphers=config.DEFAULT_CIPHERS,
                                versions=("TLSv1.2", "TLSv1.3"),
                                alpn_protocols=("h2", "http/1.1")))
    unverified = Pool(id=POOL(2), protocol="TCP", lb_algorithm="ROUND_ROBIN",
                      members=members("198.18.4.21", port=443),
                      health_monitor=HealthMonitor(id="hm", type="TLS-HELLO", delay=5,
                                                   timeout=5, max_retries=3),
                      tls=PoolTLS())
    return lb(Listener(id=LST(1), protocol="HTTP", protocol_port=80, default_pool_id=POOL(1)),
              Listener(id=LST(2), protocol="TCP", protocol_port=443, default_pool_id=POOL(2)),
              pools=(verified, unverified))


NASTY = ("it's", 'a b#c $HOME "q"', "-dash", "tab\there", "bell\x07", "back\\slash", "ünï")


def _l7() -> LoadBalancer:
    pools = tuple(Pool(id=POOL(n), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                       members=members(f"198.18.4.{10 + n}"), enabled=n != 4)
                  for n in range(1, 5))

    def rule(n: int, type_: str, compare: str, value: str, **kw) -> L7Rule:
        return L7Rule(id=RULE(n), type=type_, compare_type=compare, value=value, **kw)

    policies = (
        # Listed out of order on purpose: positions decide.
        L7Policy(id=POL(3), action="REDIRECT_TO_POOL", position=3, redirect_pool_id=POOL(3),
                 rules=(rule(30, "HEADER", "CONTAINS", NASTY[1], key="X-Tenant"),
                        rule(31, "COOKIE", "STARTS_WITH", "-dash", key="session",
                             invert=True))),
        L7Policy(id=POL(1), action="REJECT", position=1,
                 rules=(rule(10, "PATH", "STARTS_WITH", "/admin"),
                        rule(11, "HOST_NAME", "ENDS_WITH", ".internal.example.com"),
                        rule(12, "PATH", "REGEX", r"^/admin/(ok|public)\b", invert=True))),
        L7Policy(id=POL(2), action="REDIRECT_TO_POOL", position=2, redirect_pool_id=POOL(2),
                 rules=(rule(20, "PATH", "EQUAL_TO", NASTY[0]),
                        rule(21, "FILE_TYPE", "EQUAL_TO", "jpg"),
                        rule(22, "FILE_TYPE", "REGEX", r"\.(png|gif)$"),
                        rule(23, "HOST_NAME", "EQUAL_TO", "www.example.com"))),
        L7Policy(id=POL(4), action="REDIRECT_TO_URL", position=4,
                 redirect_url="https://example.com/new%20page?a='b'", redirect_http_code=301,
                 rules=(rule(40, "PATH", "CONTAINS", NASTY[3]),)),
        L7Policy(id=POL(5), action="REDIRECT_PREFIX", position=5,
                 redirect_prefix="https://www.example.com", redirect_http_code=308,
                 rules=(rule(50, "HEADER", "EQUAL_TO", NASTY[4], key="X-Bell"),
                        rule(51, "PATH", "ENDS_WITH", NASTY[5]),
                        rule(52, "PATH", "EQUAL_TO", NASTY[6]))),
        L7Policy(id=POL(6), action="REDIRECT_TO_URL", position=6,
                 redirect_url="http://example.com/", rules=(rule(60, "PATH", "EQUAL_TO", "/a"),)),
        # Skipped: disabled, no enabled rule, disabled pool, control character in the URL.
        L7Policy(id=POL(7), action="REJECT", position=7, enabled=False,
                 rules=(rule(70, "PATH", "EQUAL_TO", "/b"),)),
        L7Policy(id=POL(8), action="REJECT", position=8,
                 rules=(rule(80, "PATH", "EQUAL_TO", "/c", enabled=False),)),
        L7Policy(id=POL(9), action="REDIRECT_TO_POOL", position=9, redirect_pool_id=POOL(4),
                 rules=(rule(90, "PATH", "EQUAL_TO", "/d"),)),
        L7Policy(id=POL(10), action="REDIRECT_TO_URL", position=10,
                 redirect_url="http://example.com/\r\nSet-Cookie: x",
                 rules=(rule(100, "PATH", "EQUAL_TO", "/e"),)),
        L7Policy(id=POL(11), action="REJECT", position=11,
                 rules=(rule(110, "PATH", "EQUAL_TO", "/f"),)),
    )
    tls_policies = (
        L7Policy(id=POL(20), action="REJECT", position=1,
                 rules=(rule(200, "SSL_CONN_HAS_CERT", "EQUAL_TO", "tru", invert=True),)),
        L7Policy(id=POL(21), action="REJECT", position=2,
                 rules=(rule(210, "SSL_VERIFY_RESULT", "EQUAL_TO", "0", invert=True),)),
        L7Policy(id=POL(22), action="REDIRECT_TO_POOL", position=3, redirect_pool_id=POOL(2),
                 rules=(rule(220, "SSL_DN_FIELD", "EQUAL_TO", "admins", key="OU"),
                        rule(221, "SSL_DN_FIELD", "REGEX", "^ops-[0-9]+$", key="CN"))),
    )
    return lb(
        Listener(id=LST(1), protocol="HTTP", protocol_port=80, default_pool_id=POOL(1),
                 l7policies=policies),
        Listener(id=LST(2), protocol="TERMINATED_HTTPS", protocol_port=443,
                 default_pool_id=POOL(1), tls=TLS_FULL, l7policies=tls_policies),
        pools=pools)


def _active_standby() -> LoadBalancer:
    source = Pool(id=POOL(1), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                  members=members("198.18.4.11", "198.18.4.12"),
                  session_persistence=SessionPersistence(type="SOURCE_IP"))
    app = Pool(id=POOL(2), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
               members=members("198.18.4.21"),
               session_persistence=SessionPersistence(type="APP_COOKIE", cookie_name="sid"))
    return lb(Listener(id=LST(1), protocol="HTTP", protocol_port=80, default_pool_id=POOL(1)),
              Listener(id=LST(2), protocol="HTTP", protocol_port=81, default_pool_id=POOL(2)),
              pools=(source, app), topology="ACTIVE_STANDBY",
              peers=(Peer("kX3Zc2Y1bVh0dGVzdA", "198.18.0.5"),
                     Peer("x9eHl6YWJjZGVmZ2g", "198.18.0.6")))


def _skipped() -> LoadBalancer:
    pools = (
        Pool(id=POOL(1), protocol="UDP", lb_algorithm="ROUND_ROBIN",
             members=members("198.18.4.11", port=53)),
        Pool(id=POOL(2), protocol="HTTP", lb_algorithm="ROUND_ROBIN", enabled=False,
             members=members("198.18.4.21")),
        Pool(id=POOL(3), protocol="HTTP", lb_algorithm="ROUND_ROBIN"),  # no members
    )
    return lb(
        Listener(id=LST(1), protocol="UDP", protocol_port=53, default_pool_id=POOL(1)),
        Listener(id=LST(2), protocol="SCTP", protocol_port=5000),
        Listener(id=LST(3), protocol="HTTP", protocol_port=80, default_pool_id=POOL(3),
                 enabled=False),
        Listener(id=LST(4), protocol="HTTP", protocol_port=81, default_pool_id=POOL(2)),
        Listener(id=LST(5), protocol="HTTP", protocol_port=82),
        Listener(id=LST(6), protocol="HTTP", protocol_port=83, default_pool_id=POOL(3)),
        pools=pools)


def _dual_stack() -> LoadBalancer:
    pool = Pool(id=POOL(1), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                members=members("2001:db8:4::11", "198.18.4.12"),
                health_monitor=HealthMonitor(id="hm", type="HTTP", delay=5, timeout=5,
                                             max_retries=3))
    return lb(Listener(id=LST(1), protocol="HTTP", protocol_port=80, default_pool_id=POOL(1),
                       allowed_cidrs=("198.18.0.0/15", "2001:db8::/32", "198.18.0.1/24")),
              pools=(pool,), vips=(VIP, VIP6))


CUSTOM_SETTINGS = HaproxySettings(
    stick_table_size="50k", user_log_format="{{ project_id }} {{ lb_id }} %ci:%cp %r %ST %Tt",
    default_connection_limit=2000, max_connections=3000, hard_stop_after=None,
    tls_session_cache_size=5000, nbthread=2, user="nobody", group="nogroup",
    user_log_facility=3, administrative_log_facility=4)

# name -> (load balancer, settings, AmphoraPaths.for_lb keyword arguments)
CASES: dict[str, tuple[LoadBalancer, HaproxySettings, dict]] = {
    "http_basic.cfg": (_http_basic(), SETTINGS, {}),
    "tcp.cfg": (_tcp(), SETTINGS, {}),
    "https_passthrough.cfg": (_https_passthrough(), SETTINGS, {}),
    "terminated_https.cfg": (_terminated_https(), SETTINGS, {}),
    "prometheus.cfg": (_prometheus(), SETTINGS, {"prometheus_port": 9101}),
    "algorithms.cfg": (_algorithms(), SETTINGS, {}),
    "persistence.cfg": (_persistence(), SETTINGS, {}),
    "health_monitors.cfg": (_health_monitors(), SETTINGS, {}),
    "pool_tls.cfg": (_pool_tls(), SETTINGS, {}),
    "l7policies.cfg": (_l7(), SETTINGS, {}),
    "active_standby.cfg": (_active_standby(), SETTINGS, {}),
    "admin_down.cfg": (dataclasses.replace(_l7(), enabled=False), SETTINGS, {}),
    "skipped_objects.cfg": (_skipped(), SETTINGS, {}),
    "dual_stack.cfg": (_dual_stack(), SETTINGS, {}),
    "custom_settings.cfg": (
        dataclasses.replace(_terminated_https(), project_id="it's 100% ours"),
        CUSTOM_SETTINGS, {}),
    "no_logging.cfg": (_tcp(), dataclasses.replace(SETTINGS, connection_logging=False), {}),
    "no_log_socket.cfg": (_tcp(), SETTINGS, {"log_socket": None}),
}


# --- fixtures: a folder with certificates, and HAProxy's config check ----------------


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_certificates(cert_dir: pathlib.Path) -> None:
    """A CA, its CRL, and CA-signed certificates (EC keys: generating them is quick)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amphorae test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (cert_dir / "ca.pem").write_bytes(_pem_cert(ca))
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_name)
           .last_update(now).next_update(now + datetime.timedelta(days=30))
           .sign(ca_key, hashes.SHA256()))
    (cert_dir / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    for serial, (file_name, host) in enumerate(
            [("default.pem", "www.example.com"), ("sni.pem", "sni.example.com"),
             ("client.pem", "amphora client")], 2):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        (cert_dir / file_name).write_bytes(_pem_cert(cert) + _pem_key(key))
    # Default certificate first, then the SNI ones (what the agent writes for a listener).
    (cert_dir / "listener.crtlist").write_text(
        f"{cert_dir / 'default.pem'}\n{cert_dir / 'sni.pem'} sni.example.com\n")


@pytest.fixture(scope="module")
def root() -> Iterator[pathlib.Path]:
    """An amphora state folder with certificates and a server-state file, removed after."""
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed: these tests check every rendered "
                    "configuration with `haproxy -c` (apt-get install haproxy)")
    path = pathlib.Path(tempfile.mkdtemp(prefix="amphorae-haproxy-"))
    try:
        paths = AmphoraPaths.for_lb(str(path), LB_ID)
        cert_dir = pathlib.Path(paths.cert_dir)
        cert_dir.mkdir(parents=True)
        _write_certificates(cert_dir)
        # A state file with only its version line: HAProxy warns about a missing one.
        pathlib.Path(paths.server_state_file or "").write_text("1\n")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def amphora_paths(root: pathlib.Path, **kw) -> AmphoraPaths:
    kw.setdefault("log_socket", str(root / "log.sock"))
    return AmphoraPaths.for_lb(str(root), LB_ID, **kw)


def haproxy_check(root: pathlib.Path, text: str, lb_: LoadBalancer) -> None:
    """`haproxy -c` must accept the file without a single warning."""
    cfg_file = root / "amphorae-check.cfg"
    cfg_file.write_text(text)
    cmd = ["haproxy", "-c", "-f", str(cfg_file)]
    if lb_.peers:
        cmd += ["-L", lb_.peers[0].name]  # the agent names the local peer the same way
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[WARNING]" not in output and "[ALERT]" not in output, output


def render_checked(root: pathlib.Path, lb_: LoadBalancer,
                   settings: HaproxySettings = SETTINGS, **paths_kw) -> str:
    text = haproxy.render(lb_, settings, amphora_paths(root, **paths_kw))
    haproxy_check(root, text, lb_)
    return text


# --- golden files --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, root: pathlib.Path) -> None:
    lb_, settings, paths_kw = CASES[name]
    text = render_checked(root, lb_, settings, **paths_kw)
    golden.check("haproxy", name, text.replace(str(root), GOLDEN_ROOT))


def test_render_is_deterministic(root: pathlib.Path) -> None:
    lb_, settings, kw = CASES["l7policies.cfg"]
    paths = amphora_paths(root, **kw)
    assert haproxy.render(lb_, settings, paths) == haproxy.render(lb_, settings, paths)


# --- behaviour the golden files show, stated once more as facts ----------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_admin_down_renders_global_and_defaults_only(root: pathlib.Path) -> None:
    text = render_checked(root, dataclasses.replace(_active_standby(), enabled=False))
    headers = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert headers == ["global", "defaults"]


def test_names_are_what_the_heartbeat_parses(root: pathlib.Path) -> None:
    lines = _lines(render_checked(root, _l7()))
    assert f"frontend {LST(1)}" in lines
    assert f"backend {POOL(1)}:{LST(1)}" in lines
    assert f"backend {POOL(3)}:{LST(1)}" in lines
    assert f"backend {POOL(4)}:{LST(1)}" not in lines  # disabled pool
    assert any(line.startswith(f"server {MEM(1)} ") for line in lines)


def _section_of(text: str, header: str) -> list[str]:
    """The body lines of one section of a rendered file."""
    lines = text.splitlines()
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(" ")),
               len(lines))
    return [line.strip() for line in lines[start:end]]


def test_udp_and_disabled_objects_are_left_out(root: pathlib.Path) -> None:
    text = render_checked(root, _skipped())
    for n in (1, 2, 3):  # UDP, SCTP, disabled
        assert LST(n) not in text
    assert POOL(2) not in text  # disabled pool: no backend, no default_backend
    assert not any(line.startswith("default_backend")
                   for line in _section_of(text, f"frontend {LST(4)}"))
    assert f"default_backend {POOL(3)}:{LST(6)}" in _section_of(text, f"frontend {LST(6)}")
    assert not any(line.startswith("server") for line in
                   _section_of(text, f"backend {POOL(3)}:{LST(6)}"))


def test_maxconn_sums_listeners_and_is_capped(root: pathlib.Path) -> None:
    text = render_checked(root, _tcp())
    assert "    maxconn 1500\n" in text  # 1000 + 500
    assert "    fullconn 1000\n" in text
    capped = dataclasses.replace(SETTINGS, max_connections=1200)
    assert "    maxconn 1200\n" in render_checked(root, _tcp(), capped)
    no_listeners = render_checked(root, lb())
    assert f"    maxconn {SETTINGS.default_connection_limit}\n" in no_listeners


FD_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def test_maxconn_fits_the_descriptor_limit(root: pathlib.Path) -> None:
    settings = dataclasses.replace(SETTINGS, fd_limit=20000)
    text = render_checked(root, _tcp(), settings)
    assert "    maxconn 1500\n" in text  # fits: unchanged
    text = render_checked(root, _http_basic(), settings)
    # 2.5 descriptors per connection after a reserve for listeners, checks and files
    assert "    maxconn 7918\n" in text
    assert "    maxconn 50000\n" in text  # the listener keeps its own limit


def test_drain_timeout_and_slow_start(root: pathlib.Path) -> None:
    """Pool tags: the drain timeout is a comment line the agent reads (HAProxy has no
    keyword for it), slow start is HAProxy's ``slowstart`` on every server."""
    def http_lb(pool: Pool) -> LoadBalancer:
        return lb(Listener(id=LST(1), protocol="HTTP", protocol_port=80,
                           default_pool_id=POOL(1)), pools=(pool,))

    pool = Pool(id=POOL(1), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                members=members("198.18.4.11", "198.18.4.12"), health_monitor=HTTP_HM,
                drain_timeout=30, slow_start=10)
    text = render_checked(root, http_lb(pool))
    assert "    # amphorae drain-timeout 30s\n" in text
    assert text.count(" weight 1 slowstart 10s check ") == 2
    plain = render_checked(root, http_lb(dataclasses.replace(
        pool, drain_timeout=None, slow_start=0)))
    assert "drain-timeout" not in plain and "slowstart" not in plain


def test_memory_bounds_and_reload_friendliness(root: pathlib.Path) -> None:
    text = render_checked(root, _terminated_https())
    assert "    hard-stop-after 60s\n" in text
    assert f"    tune.ssl.cachesize {SETTINGS.tls_session_cache_size}\n" in text
    assert "expose-fd listeners" in text and "level admin" in text
    assert "daemon" not in text
    assert "tune.ssl.cachesize" not in render_checked(root, _tcp())


def test_reload_answers_idle_http_connections_before_closing(root: pathlib.Path) -> None:
    """HTTP frontends: a reload marks the next answer on an idle keep-alive connection
    "Connection: close" instead of closing under the client. TCP frontends have no such
    option (haproxy -c warns, which render_checked refuses)."""
    http = _section_of(render_checked(root, _http_basic()), f"frontend {LST(1)}")
    assert "option idle-close-on-response" in http
    assert "idle-close-on-response" not in render_checked(root, _tcp())


def test_l7_policies_keep_position_order(root: pathlib.Path) -> None:
    lines = _section_of(render_checked(root, _l7()), f"frontend {LST(1)}")
    actions = [line for line in lines
               if line.startswith(("http-request deny", "http-request redirect",
                                   "http-request set-var", "use_backend"))]
    assert [a.split(" if ")[0] for a in actions] == [
        "http-request deny",  # position 1
        "http-request set-var(txn.l7policy) int(2)",
        "http-request set-var(txn.l7policy) int(3)",
        "http-request redirect code 301 location \"https://example.com/new%%20page?a=\\'b\\'\"",
        "http-request redirect code 308 prefix https://www.example.com",
        "http-request redirect location http://example.com/",
        "http-request deny",  # position 11; 7-10 are skipped
        f"use_backend {POOL(2)}:{LST(1)}",
        f"use_backend {POOL(3)}:{LST(1)}",
    ]
    # Nothing after the first pool switch may run once a switch matched.
    guard = "!{ var(txn.l7policy) -m found }"
    assert guard not in actions[0] and guard not in actions[1]
    assert all(guard in a for a in actions[2:7])


def test_peers_only_for_active_standby_and_active_active(root: pathlib.Path) -> None:
    name = LB_ID.replace("-", "") + "_peers"
    for topology in ("ACTIVE_STANDBY", "ACTIVE_ACTIVE"):
        text = render_checked(root, dataclasses.replace(_active_standby(), topology=topology))
        assert f"peers {name}\n    peer kX3Zc2Y1bVh0dGVzdA 198.18.0.5:1025\n" in text
        assert f"stick-table type ipv6 size 10k peers {name}" in text
    single = dataclasses.replace(_active_standby(), topology="SINGLE")
    assert "peers" not in render_checked(root, single)


@pytest.mark.parametrize("change", [
    {"id": "lb 1"},
    {"vips": ("not-an-ip",)},
    {"listeners": (Listener(id="l#1", protocol="HTTP", protocol_port=80),)},
    {"listeners": (Listener(id="l:1", protocol="HTTP", protocol_port=80,
                            default_pool_id=POOL(1)),)},
    {"listeners": (Listener(id=LST(1), protocol="HTTP", protocol_port=0),)},
    {"listeners": (Listener(id=LST(1), protocol="TERMINATED_HTTPS", protocol_port=443),)},
    {"listeners": (Listener(id=LST(1), protocol="HTTP", protocol_port=80,
                            allowed_cidrs=("10.0.0.0/33",)),)},
    {"topology": "ACTIVE_STANDBY", "peers": (Peer("a b", "198.18.0.5"),)},
])
def test_refuses_what_would_not_parse(change: dict) -> None:
    with pytest.raises(ValueError):
        haproxy.render(dataclasses.replace(_http_basic(), **change), SETTINGS,
                       AmphoraPaths.for_lb(GOLDEN_ROOT, LB_ID))


@pytest.mark.parametrize("rule", [
    L7Rule(id=RULE(1), type="HEADER", compare_type="EQUAL_TO", value="x", key="X Y"),
    L7Rule(id=RULE(1), type="COOKIE", compare_type="EQUAL_TO", value="x", key="a,b"),
    L7Rule(id=RULE(1), type="SSL_DN_FIELD", compare_type="EQUAL_TO", value="x", key="CN)"),
    L7Rule(id=RULE(1), type="SSL_VERIFY_RESULT", compare_type="EQUAL_TO", value="zero"),
    L7Rule(id=RULE(1), type="PATH", compare_type="LIKE", value="x"),
    L7Rule(id=RULE(1), type="QUERY", compare_type="EQUAL_TO", value="x"),
    L7Rule(id=RULE(1), type="PATH", compare_type="EQUAL_TO", value="nul\x00"),
])
def test_refuses_unsafe_rules(rule: L7Rule) -> None:
    with pytest.raises(ValueError):
        haproxy.acl_criterion(rule)


def test_ping_needs_a_script() -> None:
    paths = dataclasses.replace(AmphoraPaths.for_lb(GOLDEN_ROOT, LB_ID), ping_script=None)
    with pytest.raises(ValueError):
        haproxy.render(_health_monitors(), SETTINGS, paths)


# --- settings and paths ----------------------------------------------------------------


def test_settings_from_config() -> None:
    conf = cfg.ConfigOpts()
    config.register(conf)
    conf.register_opts([cfg.IntOpt("hard_stop_after"), cfg.StrOpt("user_log_format")],
                       group="haproxy_amphora")
    conf.register_opts([cfg.IntOpt("user_log_facility")], group="amphora_agent")
    conf([], project="amphorae", default_config_files=[])
    conf.set_override("haproxy_stick_size", "20k", group="haproxy_amphora")
    conf.set_override("connection_logging", False, group="haproxy_amphora")
    conf.set_override("default_connection_limit", 1000, group="haproxy_amphora")
    conf.set_override("hard_stop_after", 300, group="haproxy_amphora")
    conf.set_override("user_log_format", "%ci", group="haproxy_amphora")
    conf.set_override("user_log_facility", 5, group="amphora_agent")
    settings = HaproxySettings.from_config(conf)
    assert settings == dataclasses.replace(
        HaproxySettings(), stick_table_size="20k", connection_logging=False,
        default_connection_limit=1000, hard_stop_after=300, user_log_format="%ci",
        user_log_facility=5)


def test_settings_from_config_defaults_for_unregistered_options() -> None:
    conf = cfg.ConfigOpts()
    config.register(conf)
    conf([], project="amphorae", default_config_files=[])
    assert HaproxySettings.from_config(conf) == HaproxySettings()


def test_paths_layout() -> None:
    paths = AmphoraPaths.for_lb("/state", "lb1", prometheus_port=9101)
    assert paths.stats_socket == "/state/lb1/haproxy.sock"
    assert paths.server_state_file == "/state/lb1/servers-state"
    assert paths.cert("x.pem") == "/state/lb1/certs/x.pem"
    assert paths.ping_script == "/state/ping-wrapper.sh"
    assert paths.prometheus_port == 9101


# --- syntax helpers ----------------------------------------------------------------------


def test_status_list() -> None:
    assert syn.status_list([200]) == "200"
    assert syn.status_list([204, 200, 201, 202]) == "200-202,204"
    assert syn.status_list(parse_expected_codes("200-202,204,301-303")) == \
        "200-202,204,301-303"
    with pytest.raises(ValueError):
        syn.status_list([])


@pytest.mark.parametrize(("value", "word"), [
    ("/api/v1", "/api/v1"),
    ("^/a(b|c)[0-9]+$", "'^/a(b|c)[0-9]+$'"),  # $ must not start a variable
    ("a b", "'a b'"),
    ("a#b", "'a#b'"),
    ('say "hi"', "'say \"hi\"'"),
    ("back\\slash", "'back\\slash'"),
    ("", "''"),
    ("it's", '"it\\\'s"'),
    ("tab\there", '"tab\\x09here"'),
    ("it's $x #y \\z", '"it\\\'s \\$x \\#y \\\\z"'),
])
def test_quote(value: str, word: str) -> None:
    assert syn.quote(value) == word


def test_quote_refuses_nul() -> None:
    with pytest.raises(ValueError):
        syn.quote("a\x00b")


def test_acl_pattern_ends_flags_before_a_dash() -> None:
    assert syn.acl_pattern("-i") == "-- -i"
    assert syn.acl_pattern("a-b") == "a-b"


def test_log_format_literal() -> None:
    assert syn.log_format_literal("100% a%b") == "100%% a%%b"


def test_tls_words() -> None:
    assert syn.tls_version_flags(["TLSv1.2", "TLSv1.3"]) == ["no-sslv3", "no-tlsv10",
                                                             "no-tlsv11"]
    assert syn.tls_version_flags(["TLSv1.3"])[-1] == "no-tlsv12"
    assert syn.cipher_words(None) == []
    assert syn.cipher_words("TLS_AES_128_GCM_SHA256:ECDHE-RSA-AES128-GCM-SHA256") == [
        "ciphers", "ECDHE-RSA-AES128-GCM-SHA256", "ciphersuites", "TLS_AES_128_GCM_SHA256"]
    assert syn.cipher_words("ECDHE-RSA-AES128-GCM-SHA256") == [
        "ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]


# --- a real HAProxy -------------------------------------------------------------------


@contextlib.contextmanager
def running_haproxy(root: pathlib.Path, text: str, stats_socket: str):
    """HAProxy in the foreground on ``text``; killed (by its own process group) after."""
    cfg_file = root / "amphorae-run.cfg"
    cfg_file.write_text(text)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(stats_socket)
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not os.path.exists(stats_socket):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"HAProxy did not start: {proc.stderr.read().decode()}")
            time.sleep(0.02)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stderr.close()


def stats_command(path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


VALUES = [*NASTY, "^/api\\.v1$", "${HOME}", "50%", "a'b'c", "{", "}", "if", "x\ny", "\x01"]


def test_acl_patterns_reach_haproxy_unchanged(root: pathlib.Path) -> None:
    sock = str(root / "acl.sock")
    acls = "".join(f"    acl v{i} path -m str {syn.acl_pattern(v)}\n"
                   for i, v in enumerate(VALUES))
    text = (f"global\n    stats socket {sock} mode 600 level admin\n"
            f"frontend f\n    bind unix@{root / 'acl-frontend.sock'}\n    mode http\n"
            f"    timeout client 1s\n{acls}")
    haproxy_check(root, text, lb())
    with running_haproxy(root, text, sock):
        for i, value in enumerate(VALUES):
            dump = stats_command(sock, f"show acl #{i}")
            # "<entry address> <pattern>\n" then an empty line
            assert dump.split(" ", 1)[1] == value + "\n\n", (value, dump)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_get(port: int, path: str, body: bool = False) -> tuple:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: www.example.com\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    location = next((line.split(": ", 1)[1] for line in lines[1:]
                     if line.lower().startswith("location:")), "")
    if body:
        return status, location, content.decode(errors="replace")
    return status, location


def test_real_haproxy_l7_order_and_metrics(root: pathlib.Path) -> None:
    """L7 policies act in position order: Octavia's file would REJECT /api/admin (its
    deny runs before any use_backend), here position 1 sends it to pool 2. A PROMETHEUS
    listener serves HAProxy's exporter."""
    port, metrics_port = _free_port(), _free_port()
    pools = tuple(Pool(id=POOL(n), protocol="HTTP", lb_algorithm="ROUND_ROBIN")
                  for n in (1, 2))

    def rule(n: int, compare: str, value: str) -> tuple[L7Rule, ...]:
        return (L7Rule(id=RULE(n), type="PATH", compare_type=compare, value=value),)

    listener = Listener(
        id=LST(1), protocol="HTTP", protocol_port=port, default_pool_id=POOL(1),
        l7policies=(
            L7Policy(id=POL(1), action="REDIRECT_TO_POOL", position=1,
                     redirect_pool_id=POOL(2), rules=rule(1, "STARTS_WITH", "/api")),
            L7Policy(id=POL(2), action="REJECT", position=2,
                     rules=rule(2, "STARTS_WITH", "/api/admin")),
            L7Policy(id=POL(3), action="REJECT", position=3, rules=rule(3, "EQUAL_TO", "/no")),
            L7Policy(id=POL(4), action="REDIRECT_TO_URL", position=4, redirect_http_code=307,
                     redirect_url="https://example.com/a%20b?c='d'",
                     rules=rule(4, "EQUAL_TO", "/old")),
        ))
    prometheus = Listener(id=LST(2), protocol="PROMETHEUS", protocol_port=metrics_port)
    lb_ = lb(listener, prometheus, pools=pools, vips=("127.0.0.1",))
    paths = amphora_paths(root, log_socket=None)
    # HAProxy refuses to start when maxconn needs more descriptors than it may open.
    settings = dataclasses.replace(SETTINGS, fd_limit=FD_LIMIT)
    text = render_checked(root, lb_, settings, log_socket=None)

    def sessions(backend: str) -> int:
        stat = stats_command(paths.stats_socket, "show stat")
        header = stat.splitlines()[0].lstrip("# ").split(",")
        for line in stat.splitlines()[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") == "BACKEND":
                return int(row["stot"])
        raise AssertionError(f"no backend {backend} in {stat}")

    with running_haproxy(root, text, paths.stats_socket):
        assert _http_get(port, "/api/admin")[0] == 503  # pool 2, no members: not a 403
        assert sessions(f"{POOL(2)}:{LST(1)}") == 1
        assert _http_get(port, "/no")[0] == 403
        assert _http_get(port, "/old") == (307, "https://example.com/a%20b?c='d'")
        assert _http_get(port, "/other")[0] == 503
        assert sessions(f"{POOL(1)}:{LST(1)}") == 1
        status, _, body = _http_get(metrics_port, "/metrics", body=True)
        assert status == 200 and "haproxy_process_max_connections" in body
        assert _http_get(metrics_port, "/other")[0] == 404
