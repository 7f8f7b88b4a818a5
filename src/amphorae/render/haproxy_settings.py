"""What the haproxy.cfg renderer needs besides the load balancer: operator settings from
the configuration, and where things live on the amphora."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from amphorae.contract.layout import LbFiles

# Octavia's [haproxy_amphora] user_log_format; the {{ }} fields are filled per LB.
DEFAULT_USER_LOG_FORMAT = (
    "{{ project_id }} {{ lb_id }} %f %ci %cp %t %{+Q}r %ST %B %U "
    "%[ssl_c_verify] %{+Q}[ssl_c_s_dn] %b %s %Tt %tsc"
)


@dataclasses.dataclass(frozen=True)
class HaproxySettings:
    """Operator choices that shape every rendered haproxy.cfg."""

    stick_table_size: str = "10k"  # entries of SOURCE_IP / APP_COOKIE stick tables
    connection_logging: bool = True
    user_log_format: str = DEFAULT_USER_LOG_FORMAT
    # maxconn of a listener whose connection_limit is -1 (unlimited).
    default_connection_limit: int = 50000
    # Ceiling of the process maxconn (Octavia: 1,000,000); HAProxy sizes its fd table and
    # RLIMIT_NOFILE from it.
    max_connections: int = 1_000_000
    # RLIMIT_NOFILE HAProxy will have on the amphora. HAProxy refuses to start when its
    # maxconn needs more descriptors than it may open (about 2.5 per connection: client,
    # server and splice pipes), so when known the process maxconn is lowered to fit.
    # A netns amphora inherits the limit of the process that starts its agent.
    fd_limit: int | None = None
    # Seconds an old worker may keep serving after a reload before it is stopped; without
    # it workers with long-lived connections linger for hours (an Octavia problem) and
    # each keeps its memory. None: no limit.
    hard_stop_after: int | None = 60
    # Entries of the TLS session cache (about 200 bytes each, shared memory allocated
    # at start), rendered when a TERMINATED_HTTPS listener exists.
    tls_session_cache_size: int = 20000
    nbthread: int | None = None  # None: HAProxy's default (one per CPU it may use)
    user: str | None = None
    group: str | None = None
    user_log_facility: int = 0  # local<N> for traffic logs
    administrative_log_facility: int = 1  # local<N> at notice for HAProxy's own events
    # Port of the peers section (Octavia always uses 1025, reference §11.13).
    peer_port: int = 1025

    @classmethod
    def from_config(cls, conf: Any) -> HaproxySettings:
        """Read ``[haproxy_amphora]`` (and the log facilities of ``[amphora_agent]``);
        options a deployment has not registered keep the defaults above."""
        ha = _group(conf, "haproxy_amphora")
        agent = _group(conf, "amphora_agent")
        d = cls()
        return cls(
            stick_table_size=str(_opt(ha, "haproxy_stick_size", d.stick_table_size)),
            connection_logging=bool(_opt(ha, "connection_logging", d.connection_logging)),
            user_log_format=_opt(ha, "user_log_format", d.user_log_format),
            default_connection_limit=int(
                _opt(ha, "default_connection_limit", d.default_connection_limit)),
            max_connections=int(_opt(ha, "max_connections", d.max_connections)),
            fd_limit=_opt(ha, "fd_limit", d.fd_limit),
            hard_stop_after=_opt(ha, "hard_stop_after", d.hard_stop_after),
            tls_session_cache_size=int(
                _opt(ha, "tls_session_cache_size", d.tls_session_cache_size)),
            nbthread=_opt(ha, "nbthread", d.nbthread),
            user=_opt(ha, "user", d.user),
            group=_opt(ha, "group", d.group),
            user_log_facility=int(_opt(agent, "user_log_facility", d.user_log_facility)),
            administrative_log_facility=int(
                _opt(agent, "administrative_log_facility", d.administrative_log_facility)),
        )


@dataclasses.dataclass(frozen=True)
class AmphoraPaths:
    """Where one load balancer's runtime files live on the amphora."""

    stats_socket: str
    cert_dir: str  # ListenerTLS / PoolTLS file names are relative to it
    server_state_file: str | None = None  # None: no server state kept across reloads
    ping_script: str | None = None  # external check for PING monitors
    log_socket: str | None = None  # syslog datagram socket; None: no logging at all
    # Loopback port of an internal Prometheus endpoint (all proxies of the LB); None: none.
    prometheus_port: int | None = None

    @classmethod
    def for_lb(cls, state_dir: str, lb_id: str, *, log_socket: str | None = None,
               prometheus_port: int | None = None) -> AmphoraPaths:
        """The agent's layout (contract.layout) under its base path ``state_dir``."""
        files = LbFiles(Path(state_dir) / lb_id)
        return cls(
            stats_socket=str(files.stats_socket),
            cert_dir=str(files.cert_dir),
            server_state_file=str(files.server_state),
            ping_script=os.path.join(state_dir, "ping-wrapper.sh"),
            log_socket=log_socket,
            prometheus_port=prometheus_port,
        )

    def cert(self, file_name: str) -> str:
        return os.path.join(self.cert_dir, file_name)


def _group(conf: Any, name: str) -> Any:
    try:
        return getattr(conf, name)
    except AttributeError:  # oslo.config's NoSuchOptError: group not registered
        return None


def _opt(group: Any, name: str, default: Any) -> Any:
    if group is None:
        return default
    try:
        value = getattr(group, name)
    except AttributeError:  # option not registered
        return default
    return default if value is None and default is not None else value
