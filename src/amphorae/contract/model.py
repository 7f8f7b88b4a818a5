"""The render model: what the renderers need to know about a load balancer, as plain
immutable values, independent of the database and of the API.

The controller builds it from the database; tests build it directly; the agent gets the
UDP part of it (contract.udp_config). Only enabled,
non-deleted objects should be put in; renderers still honour ``enabled`` flags where
HAProxy has a way to express them (a disabled member is rendered ``disabled``).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class HealthMonitor:
    id: str
    type: str  # HTTP, HTTPS, PING, TCP, TLS-HELLO, UDP-CONNECT
    delay: int  # seconds
    timeout: int  # seconds
    max_retries: int  # rise
    max_retries_down: int = 3  # fall
    http_method: str | None = None
    url_path: str | None = None
    expected_codes: str | None = None
    http_version: float | None = None
    domain_name: str | None = None
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Member:
    id: str
    address: str
    protocol_port: int
    weight: int = 1
    backup: bool = False
    enabled: bool = True
    monitor_address: str | None = None
    monitor_port: int | None = None


@dataclasses.dataclass(frozen=True)
class SessionPersistence:
    type: str  # SOURCE_IP, HTTP_COOKIE, APP_COOKIE
    cookie_name: str | None = None
    persistence_timeout: int | None = None
    persistence_granularity: str | None = None


@dataclasses.dataclass(frozen=True)
class PoolTLS:
    """Re-encryption to members; file names are relative to the certificate folder."""

    client_cert_file: str | None = None  # PEM with certificate and key
    ca_file: str | None = None
    crl_file: str | None = None
    ciphers: str | None = None
    versions: tuple[str, ...] = ()
    alpn_protocols: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Pool:
    id: str
    protocol: str  # HTTP, HTTPS, TCP, PROXY, PROXYV2, UDP
    lb_algorithm: str
    members: tuple[Member, ...] = ()
    health_monitor: HealthMonitor | None = None
    session_persistence: SessionPersistence | None = None
    tls: PoolTLS | None = None  # set when tls_enabled
    enabled: bool = True
    # Beyond Octavia (pool tags, contract.pool_tags), in seconds; None: the default.
    drain_timeout: int | None = None  # a removed or disabled member keeps its connections
    slow_start: int | None = None  # a member that comes back ramps its weight up


@dataclasses.dataclass(frozen=True)
class L7Rule:
    id: str
    type: str
    compare_type: str
    value: str
    key: str | None = None
    invert: bool = False
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class L7Policy:
    id: str
    action: str  # REJECT, REDIRECT_TO_URL, REDIRECT_TO_POOL, REDIRECT_PREFIX
    position: int
    rules: tuple[L7Rule, ...] = ()
    redirect_pool_id: str | None = None
    redirect_url: str | None = None
    redirect_prefix: str | None = None
    redirect_http_code: int | None = None
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class ListenerTLS:
    """TLS termination; file names are relative to the certificate folder.

    ``crt_list_file`` lists the default certificate first, then the SNI ones.
    """

    crt_list_file: str
    client_authentication: str = "NONE"  # NONE, OPTIONAL, MANDATORY
    client_ca_file: str | None = None
    client_crl_file: str | None = None
    ciphers: str | None = None
    versions: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    alpn_protocols: tuple[str, ...] = ("h2", "http/1.1", "http/1.0")


@dataclasses.dataclass(frozen=True)
class Listener:
    id: str
    protocol: str  # HTTP, HTTPS, TCP, TERMINATED_HTTPS, UDP, PROMETHEUS
    protocol_port: int
    default_pool_id: str | None = None
    connection_limit: int = -1
    timeout_client_data: int = 50000
    timeout_member_connect: int = 5000
    timeout_member_data: int = 50000
    timeout_tcp_inspect: int = 0
    insert_headers: tuple[tuple[str, str], ...] = ()
    allowed_cidrs: tuple[str, ...] = ()
    l7policies: tuple[L7Policy, ...] = ()
    tls: ListenerTLS | None = None
    hsts_max_age: int | None = None
    hsts_include_subdomains: bool = False
    hsts_preload: bool = False
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Peer:
    """An amphora of an ACTIVE_STANDBY pair, for HAProxy's peers section."""

    name: str
    address: str


@dataclasses.dataclass(frozen=True)
class LoadBalancer:
    id: str
    project_id: str
    vips: tuple[str, ...]  # the primary VIP first, then additional VIPs
    listeners: tuple[Listener, ...] = ()
    pools: tuple[Pool, ...] = ()
    topology: str = "SINGLE"
    peers: tuple[Peer, ...] = ()
    enabled: bool = True

    def pool(self, pool_id: str | None) -> Pool | None:
        return next((p for p in self.pools if p.id == pool_id), None)
