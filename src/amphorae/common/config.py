"""Configuration options, in Octavia's groups and names wherever Octavia has the option.

With no configuration file at all the embedded defaults apply: SQLite in the state
directory, noauth, the local network driver and netns amphorae.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

from oslo_config import cfg

CONF = cfg.CONF

DEFAULT_CIPHERS = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
DEFAULT_STATE_DIR = "/var/lib/amphorae"

default_opts = [
    cfg.StrOpt("state_path", default=DEFAULT_STATE_DIR,
               help="Directory for the embedded database, certificates and runtime files "
                    "($AMPHORAE_STATE_PATH overrides the default)."),
    cfg.BoolOpt("debug", default=False, help="Log at DEBUG level."),
    cfg.StrOpt("log_format", default="text", choices=["text", "json"],
               help="How log lines on standard error look: text (time, process, level, "
                    "logger: message) or json (one object per line with time, level, "
                    "logger, message, request_id and the line's other fields, for log "
                    "shippers)."),
]

api_opts = [
    cfg.HostAddressOpt("bind_host", default="127.0.0.1", help="Address the API listens on."),
    cfg.PortOpt("bind_port", default=9876, help="Port the API listens on."),
    cfg.StrOpt("auth_strategy", default="noauth", choices=["noauth", "keystone", "testing"],
               help="noauth takes the project from the X-Project-Id header; keystone "
                    "checks tokens with keystonemiddleware."),
    cfg.StrOpt("noauth_default_project_id", default="default",
               help="Project used under noauth when a request carries no X-Project-Id "
                    "header (e.g. `openstack --os-auth-type none`)."),
    cfg.IntOpt("api_workers", default=0,
               help="API server worker threads (0: one per CPU, at least 4)."),
    cfg.BoolOpt("allow_pagination", default=True),
    cfg.BoolOpt("allow_sorting", default=True),
    cfg.BoolOpt("allow_filtering", default=True),
    cfg.BoolOpt("allow_field_selection", default=True),
    cfg.StrOpt("pagination_max_limit", default="1000",
               help="Largest page size, or 'infinite'."),
    cfg.StrOpt("api_base_uri", help="Base URI for links in list responses."),
    cfg.BoolOpt("allow_tls_terminated_listeners", default=True),
    cfg.BoolOpt("allow_ping_health_monitors", default=True),
    cfg.BoolOpt("allow_prometheus_listeners", default=True),
    cfg.DictOpt("enabled_provider_drivers",
                default={"amphora": "The Octavia Amphora driver.",
                         "octavia": "Deprecated alias of the Octavia Amphora driver."},
                help="Provider name: description."),
    cfg.StrOpt("default_provider_driver", default="amphora"),
    cfg.IntOpt("udp_connect_min_interval_health_monitor", default=3),
    cfg.BoolOpt("healthcheck_enabled", default=False),
    cfg.StrOpt("default_listener_ciphers", default=DEFAULT_CIPHERS),
    cfg.StrOpt("default_pool_ciphers", default=DEFAULT_CIPHERS),
    cfg.StrOpt("tls_cipher_prohibit_list", default=""),
    cfg.ListOpt("default_listener_tls_versions", default=["TLSv1.2", "TLSv1.3"]),
    cfg.ListOpt("default_pool_tls_versions", default=["TLSv1.2", "TLSv1.3"]),
    cfg.StrOpt("minimum_tls_version",
               choices=["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]),
    cfg.ListOpt("default_listener_alpn_protocols", default=["h2", "http/1.1", "http/1.0"]),
    cfg.ListOpt("default_pool_alpn_protocols", default=["h2", "http/1.1", "http/1.0"]),
]

database_opts = [
    cfg.StrOpt("connection", secret=True,
               help="SQLAlchemy URL; default: SQLite file amphorae.sqlite in state_path."),
    cfg.IntOpt("max_pool_size", default=10),
    cfg.IntOpt("max_overflow", default=20),
    cfg.IntOpt("pool_timeout", default=30),
    cfg.IntOpt("sqlite_busy_timeout", default=30000,
               help="Milliseconds a SQLite writer waits for the lock."),
]

health_manager_opts = [
    cfg.StrOpt("bind_ip", default="",
               help="Address the heartbeat receiver listens on; empty: the management "
                    "gateway when amphorae are namespaces on this host, else 127.0.0.1."),
    cfg.PortOpt("bind_port", default=5555),
    cfg.StrOpt("heartbeat_key", secret=True, mutable=True,
               help="Key of the heartbeat HMAC; generated into state_path when unset."),
    cfg.IntOpt("heartbeat_interval", default=1, mutable=True,
               help="Seconds between heartbeats (Octavia: 10; 1 suits namespaces on one host)."),
    cfg.IntOpt("heartbeat_timeout", default=5,
               help="Seconds without a heartbeat before failover (Octavia: 60)."),
    cfg.IntOpt("health_check_interval", default=1),
    cfg.IntOpt("failover_threshold", help="Stale amphorae at once that stop all failovers."),
    cfg.IntOpt("failover_threads", default=10),
    cfg.ListOpt("controller_ip_port_list", default=[], mutable=True),
]

controller_worker_opts = [
    cfg.IntOpt("workers", default=1),
    cfg.StrOpt("loadbalancer_topology", default="SINGLE", choices=["SINGLE", "ACTIVE_STANDBY"],
               mutable=True),
    cfg.StrOpt("amphora_driver", default="amphora_haproxy_rest_driver"),
    cfg.StrOpt("compute_driver", default="compute_netns_driver"),
    cfg.StrOpt("network_driver", default="network_local_driver"),
    cfg.StrOpt("amp_image_tag", default=""),
    cfg.StrOpt("amp_flavor_id", default=""),
    cfg.ListOpt("statistics_drivers", default=["stats_db"]),
    cfg.IntOpt("job_lease_seconds", default=10,
               help="How long a worker holds a job before another may take it over."),
    cfg.IntOpt("reconcile_threads", default=8, min=1,
               help="Load balancers one worker process reconciles at the same time."),
    cfg.FloatOpt("drift_check_interval", default=60.0, min=0,
                 help="Seconds between two checks that every ACTIVE load balancer's "
                      "amphorae run what the database says (their running configs' "
                      "ETags); one that drifted is reconciled. 0 turns the check off."),
]

haproxy_amphora_opts = [
    cfg.StrOpt("base_path", default="/var/lib/octavia"),
    cfg.StrOpt("base_cert_dir", default="/var/lib/octavia/certs"),
    cfg.StrOpt("haproxy_cmd", default="/usr/sbin/haproxy"),
    cfg.BoolOpt("connection_logging", default=True),
    cfg.IntOpt("connection_max_retries", default=120),
    cfg.IntOpt("connection_retry_interval", default=5),
    cfg.IntOpt("active_connection_max_retries", default=15),
    cfg.IntOpt("active_connection_retry_interval", default=2),
    cfg.IntOpt("build_rate_limit", default=-1),
    cfg.StrOpt("haproxy_stick_size", default="10k"),
    cfg.HostAddressOpt("bind_host", default="::"),
    cfg.PortOpt("bind_port", default=9443),
    cfg.IntOpt("rest_request_conn_timeout", default=10),
    cfg.IntOpt("rest_request_read_timeout", default=60),
    cfg.IntOpt("timeout_client_data", default=50000),
    cfg.IntOpt("timeout_member_connect", default=5000),
    cfg.IntOpt("timeout_member_data", default=50000),
    cfg.IntOpt("timeout_tcp_inspect", default=0),
    cfg.IntOpt("default_connection_limit", default=50000),
    cfg.StrOpt("client_cert"),
    cfg.StrOpt("server_ca"),
]

keepalived_vrrp_opts = [
    cfg.IntOpt("vrrp_advert_int", default=1),
    cfg.IntOpt("vrrp_down_timer_adverts", default=2, min=2, max=100,
               help="Adverts a BACKUP misses before taking over (VRRP's own rule is 3 "
                    "plus a skew: 3.65 s at 1 s adverts; 2 bounds it at 2 s)."),
    cfg.IntOpt("vrrp_check_interval", default=5),
    cfg.IntOpt("vrrp_fail_count", default=2),
    cfg.IntOpt("vrrp_success_count", default=2),
    cfg.IntOpt("vrrp_garp_refresh_interval", default=5),
    cfg.IntOpt("vrrp_garp_refresh_count", default=2),
]

house_keeping_opts = [
    cfg.IntOpt("cleanup_interval", default=30),
    cfg.IntOpt("amphora_expiry_age", default=604800),
    cfg.IntOpt("load_balancer_expiry_age", default=604800),
    cfg.IntOpt("cert_interval", default=3600),
    cfg.IntOpt("cert_expiry_buffer", default=1209600),
    cfg.IntOpt("event_expiry_age", default=1209600, min=0,
               help="Seconds an event (GET /v2/octavia/events) is kept before "
                    "housekeeping purges it (default 14 days; 0 purges every event at "
                    "each sweep)."),
]

networking_opts = [
    cfg.BoolOpt("allow_vip_network_id", default=True),
    cfg.BoolOpt("allow_vip_subnet_id", default=True),
    cfg.BoolOpt("allow_vip_port_id", default=True),
    cfg.ListOpt("valid_vip_networks"),
    cfg.ListOpt("denylist_vip_networks", default=[]),
    cfg.ListOpt("reserved_ips", default=["169.254.169.254"]),
]

local_network_opts = [
    cfg.ListOpt("subnets", default=["public=198.18.0.0/20"],
                help="Networks of the local network driver, one subnet each, as "
                     "name=CIDR; ids are derived from the name, so they stay stable."),
]

quota_opts = [
    cfg.IntOpt(f"default_{name}_quota", default=-1, min=-1, max=2000000000)
    for name in ("load_balancer", "listener", "member", "pool", "health_monitor",
                 "l7policy", "l7rule")
]

certificates_opts = [
    cfg.StrOpt("cert_manager", default="local_cert_manager"),
    cfg.StrOpt("storage_path", default="",
               help="Directory of the local certificate manager (<ref>.crt, .key, .int, "
                    ".pass); default: <state_path>/certificates."),
    cfg.StrOpt("cert_generator", default="local_cert_generator"),
    cfg.IntOpt("cert_validity_time", default=2592000),
    cfg.StrOpt("signing_digest", default="sha256"),
]

GROUPS: dict[str | None, list[cfg.Opt]] = {
    None: default_opts,
    "api_settings": api_opts,
    "database": database_opts,
    "health_manager": health_manager_opts,
    "controller_worker": controller_worker_opts,
    "haproxy_amphora": haproxy_amphora_opts,
    "keepalived_vrrp": keepalived_vrrp_opts,
    "house_keeping": house_keeping_opts,
    "networking": networking_opts,
    "local_network": local_network_opts,
    "quotas": quota_opts,
    "certificates": certificates_opts,
}


def register(conf: cfg.ConfigOpts = CONF) -> None:
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """The entry point oslo-config-generator reads."""
    return [(group or "DEFAULT", opts) for group, opts in GROUPS.items()]


def load(args: list[str] | None = None, conf: cfg.ConfigOpts = CONF) -> cfg.ConfigOpts:
    """Parse the command line (with --config-file) into ``conf``."""
    conf(args or [], project="amphorae", default_config_files=[])
    return conf


def database_url(conf: cfg.ConfigOpts = CONF) -> str:
    if conf.database.connection:
        return conf.database.connection
    return "sqlite:///" + os.path.join(state_path(conf), "amphorae.sqlite")


def heartbeat_key(conf: cfg.ConfigOpts = CONF) -> str:
    """``[health_manager] heartbeat_key``, else one generated once into the state path
    (shared by the worker, which gives it to agents, and the health manager)."""
    if conf.health_manager.heartbeat_key:
        return str(conf.health_manager.heartbeat_key)
    return read_or_create(os.path.join(state_path(conf), "heartbeat.key"),
                          lambda: secrets.token_hex(32))


def read_or_create(path: str, make: Callable[[], str]) -> str:
    """The value stored in ``path``; the first caller stores ``make()`` there. Every
    process sharing the state path reads the same value."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        # Written aside, then linked into place: whoever links first wins, and no reader
        # ever sees a half-written file.
        tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    with open(path) as handle:
        return handle.read().strip()


def state_path(conf: cfg.ConfigOpts = CONF) -> str:
    if conf.state_path == DEFAULT_STATE_DIR:
        return os.environ.get("AMPHORAE_STATE_PATH", DEFAULT_STATE_DIR)
    return str(conf.state_path)


register()


def heartbeat_endpoints(conf: cfg.ConfigOpts, default_host: str
                        ) -> tuple[tuple[str, int], list[str]]:
    """Where heartbeats go: (the address the health manager binds, the ``ip:port`` list
    given to agents). ``[health_manager]`` decides; unset, both are ``default_host``,
    the address the compute driver's amphorae reach the controller at."""
    hm = conf.health_manager
    host = hm.bind_ip or default_host
    listed = list(hm.controller_ip_port_list)
    if not listed:
        shown = f"[{host}]" if ":" in host else host
        listed = [f"{shown}:{hm.bind_port}"]
    return (host, hm.bind_port), listed
