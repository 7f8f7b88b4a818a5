"""Configuration options, in Octavia's groups and names wherever Octavia has the option.

With no configuration file at all the embedded defaults apply: SQLite in the state
directory, noauth, the local network driver and netns amphorae.
"""

from __future__ import annotations

import os
import re
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


def _unused(why: str) -> str:
    """The help of an option Octavia has and we accept without reading it."""
    return f"Accepted for Octavia compatibility, not read here: {why}"


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
               help="API server processes (gunicorn workers of 4 threads each); 0: one per "
                    "CPU, at least 2."),
    cfg.BoolOpt("allow_pagination", default=True,
                help=_unused("list calls always take limit and marker.")),
    cfg.BoolOpt("allow_sorting", default=True,
                help=_unused("list calls always take sort_key and sort_dir.")),
    cfg.BoolOpt("allow_filtering", default=True,
                help=_unused("list calls always filter by field values.")),
    cfg.BoolOpt("allow_field_selection", default=True,
                help=_unused("list and show calls always take fields.")),
    cfg.StrOpt("pagination_max_limit", default="1000",
               help="Largest page size, or 'infinite'."),
    cfg.StrOpt("api_base_uri", help="Base URI for links in list responses."),
    cfg.BoolOpt("allow_tls_terminated_listeners", default=True,
                help="Allow TERMINATED_HTTPS listeners; false: creating one is refused."),
    cfg.BoolOpt("allow_ping_health_monitors", default=True,
                help="Allow PING health monitors; false: creating one is refused."),
    cfg.BoolOpt("allow_prometheus_listeners", default=True,
                help="Allow PROMETHEUS listeners (HAProxy's metrics exporter); false: creating "
                     "one is refused."),
    cfg.DictOpt("enabled_provider_drivers",
                default={"amphora": "The Octavia Amphora driver.",
                         "octavia": "Deprecated alias of the Octavia Amphora driver."},
                help="Provider name: description."),
    cfg.StrOpt("default_provider_driver", default="amphora",
               help="Provider of a load balancer created without one (a name in "
                    "enabled_provider_drivers)."),
    cfg.IntOpt("udp_connect_min_interval_health_monitor", default=3,
               help="Smallest delay in seconds accepted for a UDP-CONNECT health monitor; "
                    "negative: no minimum."),
    cfg.BoolOpt("healthcheck_enabled", default=False,
                help=_unused("there is no /healthcheck endpoint.")),
    cfg.StrOpt("default_listener_ciphers", default=DEFAULT_CIPHERS,
               help="OpenSSL cipher list of a TERMINATED_HTTPS listener created without "
                    "tls_ciphers."),
    cfg.StrOpt("default_pool_ciphers", default=DEFAULT_CIPHERS,
               help="OpenSSL cipher list towards members of a TLS pool created without "
                    "tls_ciphers."),
    cfg.StrOpt("tls_cipher_prohibit_list", default="",
               help="Colon-separated OpenSSL ciphers a listener's or pool's tls_ciphers may not "
                    "name; empty: none."),
    cfg.ListOpt("default_listener_tls_versions", default=["TLSv1.2", "TLSv1.3"],
                help="TLS versions of a TERMINATED_HTTPS listener created without tls_versions."),
    cfg.ListOpt("default_pool_tls_versions", default=["TLSv1.2", "TLSv1.3"],
                help="TLS versions towards members of a TLS pool created without tls_versions."),
    cfg.StrOpt("minimum_tls_version",
               choices=["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
               help="Lowest TLS version a listener's or pool's tls_versions may name; unset: "
                    "any."),
    cfg.ListOpt("default_listener_alpn_protocols", default=["h2", "http/1.1", "http/1.0"],
                help="ALPN protocols a TERMINATED_HTTPS listener created without alpn_protocols "
                     "offers."),
    cfg.ListOpt("default_pool_alpn_protocols", default=["h2", "http/1.1", "http/1.0"],
                help="ALPN protocols a TLS pool created without alpn_protocols offers to "
                     "members."),
]

database_opts = [
    cfg.StrOpt("connection", secret=True,
               help="SQLAlchemy URL; default: SQLite file amphorae.sqlite in state_path."),
    cfg.IntOpt("max_pool_size", default=10,
               help="Connections each process keeps open to a PostgreSQL or MariaDB server."),
    cfg.IntOpt("max_overflow", default=20,
               help="Connections opened beyond max_pool_size while all pooled ones are busy."),
    cfg.IntOpt("pool_timeout", default=30,
               help="Seconds to wait for a free pooled connection before the call fails."),
    cfg.IntOpt("sqlite_busy_timeout", default=30000,
               help="Milliseconds a SQLite writer waits for the lock."),
]

health_manager_opts = [
    cfg.StrOpt("bind_ip", default="",
               help="Address the heartbeat receiver listens on; empty: the management "
                    "gateway when amphorae are namespaces on this host, else 127.0.0.1."),
    cfg.PortOpt("bind_port", default=5555,
                help="UDP port the heartbeat receiver listens on (and agents send to, unless "
                     "controller_ip_port_list names others)."),
    cfg.StrOpt("heartbeat_key", secret=True, mutable=True,
               help="Key of the heartbeat HMAC; generated into state_path when unset."),
    cfg.IntOpt("heartbeat_interval", default=1, mutable=True,
               help="Seconds between heartbeats (Octavia: 10; 1 suits namespaces on one host)."),
    cfg.IntOpt("heartbeat_timeout", default=5,
               help="Seconds without a heartbeat before failover (Octavia: 60)."),
    cfg.FloatOpt("health_check_interval", default=1.0, min=0.1,
                 help="Seconds between two checks for amphorae whose heartbeat is older "
                      "than heartbeat_timeout, or whose instance the compute driver sees "
                      "broken (how soon a dead ACTIVE_ACTIVE amphora leaves the "
                      "distributor). Octavia's is an integer (default 3)."),
    cfg.IntOpt("failover_threshold", help="Stale amphorae at once that stop all failovers."),
    cfg.IntOpt("failover_threads", default=10,
               help=_unused("failovers are reconcile jobs, run by the controller workers.")),
    cfg.ListOpt("controller_ip_port_list", default=[], mutable=True,
                help="ip:port list the agents send heartbeats to, in turn; empty: "
                     "bind_ip:bind_port."),
]

controller_worker_opts = [
    cfg.IntOpt("workers", default=1,
               help=_unused("run more `amphorae worker` processes instead (reconcile_threads "
                            "sets each one's concurrency).")),
    cfg.StrOpt("loadbalancer_topology", default="SINGLE", choices=["SINGLE", "ACTIVE_STANDBY"],
               mutable=True,
               help="Topology of a load balancer whose flavor names none: SINGLE (one amphora) "
                    "or ACTIVE_STANDBY (a VRRP pair)."),
    cfg.StrOpt("amphora_driver", default="amphora_haproxy_rest_driver",
               help="How amphorae are configured: amphora_haproxy_rest_driver (the agent's REST "
                    "API; needs compute_netns_driver) or amphora_noop_driver."),
    cfg.StrOpt("compute_driver", default="compute_netns_driver",
               help="Where amphorae run: compute_netns_driver (network namespaces on this host; "
                    "needs root), compute_nova_driver (Nova servers booted from the Glance "
                    "image tagged amp_image_tag) or compute_noop_driver (nowhere)."),
    cfg.StrOpt("network_driver", default="network_local_driver",
               help="Where VIP and member addresses come from: network_local_driver "
                    "([local_network] subnets, bridges on this host) or network_noop_driver "
                    "(made up)."),
    cfg.StrOpt("amp_image_tag", default="",
               help="compute_nova_driver: Glance tag of the amphora image; the newest "
                    "active image with it is booted."),
    cfg.StrOpt("amp_image_owner_id", default="",
               help="compute_nova_driver: only images of this project qualify (empty: "
                    "any owner)."),
    cfg.StrOpt("amp_flavor_id", default="",
               help="compute_nova_driver: Nova flavor id of amphorae."),
    cfg.ListOpt("amp_boot_network_list", default=[],
                help="compute_nova_driver: networks amphorae boot on; the first is the "
                     "management network (lb_network_ip). Empty: Nova allocates one."),
    cfg.StrOpt("amp_ssh_key_name", default="",
               help="compute_nova_driver: Nova key pair put into amphorae (empty: none)."),
    cfg.ListOpt("amp_secgroup_list", default=[],
                help="compute_nova_driver: security groups of amphorae's boot ports."),
    cfg.BoolOpt("user_data_config_drive", default=False,
                help="compute_nova_driver: deliver the agent's files as cloud-init user "
                     "data (write_files) instead of personality files on the config "
                     "drive."),
    cfg.IntOpt("amp_active_retries", default=30, min=1,
               help="Checks of a booting amphora (amp_active_wait_sec apart) before the "
                    "load balancer goes to ERROR; the reconcile is requeued in between, "
                    "holding no thread."),
    cfg.IntOpt("amp_active_wait_sec", default=10, min=1,
               help="Seconds between two checks of a booting amphora."),
    cfg.ListOpt("statistics_drivers", default=["stats_db"],
                help=_unused("listener statistics always go to the database.")),
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
    cfg.StrOpt("base_path", default="/var/lib/octavia",
               help=_unused("the controller does not use it (the agent's is [amphora_agent] "
                            "base_path).")),
    cfg.StrOpt("base_cert_dir", default="/var/lib/octavia/certs",
               help=_unused("each amphora's certificates are kept in its state directory.")),
    cfg.StrOpt("haproxy_cmd", default="/usr/sbin/haproxy",
               help=_unused("the controller does not use it (the agent's is [amphora_agent] "
                            "haproxy_cmd).")),
    cfg.BoolOpt("connection_logging", default=True,
                help="Log every client connection through the amphora's syslog; false: HAProxy "
                     "logs no traffic."),
    cfg.IntOpt("connection_max_retries", default=120,
               help="Attempts to reach an agent that does not answer yet (a booting amphora) "
                    "before giving up."),
    cfg.IntOpt("connection_retry_interval", default=5,
               help="Seconds between two of those attempts."),
    cfg.IntOpt("active_connection_max_retries", default=15,
               help="Attempts to reach the agent of an amphora in service (configuration pushes) "
                    "before giving up."),
    cfg.IntOpt("active_connection_retry_interval", default=2,
               help="Seconds between two of those attempts."),
    cfg.IntOpt("build_rate_limit", default=-1,
               help=_unused("amphorae are built without a rate limit.")),
    cfg.StrOpt("haproxy_stick_size", default="10k",
               help="Entries of the stick table of a pool with SOURCE_IP or APP_COOKIE session "
                    "persistence (HAProxy size, e.g. 10k)."),
    cfg.HostAddressOpt("bind_host", default="::",
                       help=_unused("the controller does not use it (agents listen on "
                                    "[amphora_agent] bind_host).")),
    cfg.PortOpt("bind_port", default=9443,
                help=_unused("the controller does not use it (agents listen on [amphora_agent] "
                             "bind_port).")),
    cfg.IntOpt("rest_request_conn_timeout", default=10,
               help="Seconds to open a connection to an agent."),
    cfg.IntOpt("rest_request_read_timeout", default=60,
               help="Seconds to wait for an agent's answer."),
    cfg.IntOpt("timeout_client_data", default=50000,
               help="Milliseconds a client connection may stay idle, for a listener created "
                    "without timeout_client_data."),
    cfg.IntOpt("timeout_member_connect", default=5000,
               help="Milliseconds to connect to a member, for a listener created without "
                    "timeout_member_connect."),
    cfg.IntOpt("timeout_member_data", default=50000,
               help="Milliseconds a member connection may stay idle, for a listener created "
                    "without timeout_member_data."),
    cfg.IntOpt("timeout_tcp_inspect", default=0,
               help="Milliseconds to wait for content to inspect, for a listener created without "
                    "timeout_tcp_inspect."),
    cfg.IntOpt("default_connection_limit", default=50000,
               help="Connections at most of a listener whose connection_limit is -1 (unlimited), "
                    "as HAProxy maxconn."),
    cfg.StrOpt("client_cert",
               help=_unused("the controller's client certificate comes from its own local CA.")),
    cfg.StrOpt("server_ca",
               help=_unused("agents' certificates are checked against the controller's local CA.")),
]

keepalived_vrrp_opts = [
    cfg.FloatOpt("vrrp_advert_int", default=0.2, min=0.01, max=255,
                 help="Seconds between two VRRP adverts of an ACTIVE_STANDBY pair's "
                      "MASTER. Octavia's default is 1 (whole seconds, VRRPv2); a fraction "
                      "is rendered as VRRPv3: 0.2 bounds a takeover at about half a "
                      "second."),
    cfg.IntOpt("vrrp_down_timer_adverts", default=2, min=2, max=100,
               help="Adverts a BACKUP misses before taking over (VRRP's own rule is 3 "
                    "plus a skew: 3.65 s at 1 s adverts; 2 bounds it at 2 s)."),
    cfg.IntOpt("vrrp_check_interval", default=5,
               help="Seconds between two runs of keepalived's check that HAProxy serves."),
    cfg.IntOpt("vrrp_fail_count", default=2,
               help="Failed checks in a row before an amphora gives the VIP up."),
    cfg.IntOpt("vrrp_success_count", default=2,
               help="Passed checks in a row before it may take the VIP again."),
    cfg.IntOpt("vrrp_garp_refresh_interval", default=5,
               help="Seconds between two rounds of gratuitous ARPs the MASTER sends for the VIP."),
    cfg.IntOpt("vrrp_garp_refresh_count", default=2,
               help="Gratuitous ARPs in each round."),
]

house_keeping_opts = [
    cfg.IntOpt("cleanup_interval", default=30,
               help="Seconds between two housekeeping rounds (stuck PENDING_* load balancers, "
                    "orphan amphorae, purge of DELETED rows)."),
    cfg.IntOpt("amphora_expiry_age", default=604800,
               help="Seconds a DELETED amphora row is kept before it is purged."),
    cfg.IntOpt("load_balancer_expiry_age", default=604800,
               help="Seconds a DELETED load balancer row is kept before it is purged."),
    cfg.IntOpt("cert_interval", default=3600,
               help=_unused("agent certificates are not rotated yet.")),
    cfg.IntOpt("cert_expiry_buffer", default=1209600,
               help=_unused("agent certificates are not rotated yet.")),
    cfg.IntOpt("event_expiry_age", default=1209600, min=0,
               help="Seconds an event (GET /v2/octavia/events) is kept before "
                    "housekeeping purges it (default 14 days; 0 purges every event at "
                    "each sweep)."),
]

networking_opts = [
    cfg.BoolOpt("allow_vip_network_id", default=True,
                help="Accept vip_network_id when creating a load balancer; false: refused."),
    cfg.BoolOpt("allow_vip_subnet_id", default=True,
                help="Accept vip_subnet_id when creating a load balancer; false: refused."),
    cfg.BoolOpt("allow_vip_port_id", default=True,
                help="Accept vip_port_id when creating a load balancer; false: refused."),
    cfg.BoolOpt("allow_invisible_resource_usage", default=False,
                help="False: the VIP's network, subnet and port are looked up with the "
                     "requesting user's token, so a user can only use what Neutron shows "
                     "them (400 naming the field otherwise); True: looked up as the "
                     "service user, who sees every project's. Neutron driver only."),
    cfg.ListOpt("valid_vip_networks",
                help="Ids of the networks a VIP may be on; unset: any."),
    cfg.ListOpt("denylist_vip_networks", default=[],
                help="Ids of networks a VIP may not be on."),
    cfg.ListOpt("reserved_ips", default=["169.254.169.254"],
                help="Addresses no member may have (by default the metadata service's)."),
    cfg.IntOpt("max_retries", default=15,
               help="Neutron network driver: how many times a call that waits on another "
                    "(deleting a security group a port still uses) is retried."),
    cfg.IntOpt("retry_interval", default=1,
               help="Neutron network driver: seconds between those retries."),
    cfg.IntOpt("port_detach_timeout", default=300,
               help="Neutron network driver: seconds to wait for Nova to detach a port "
                    "from an amphora before the port is deleted anyway."),
]

local_network_opts = [
    cfg.ListOpt("subnets", default=["public=198.18.0.0/20"],
                help="Networks of the local network driver, one subnet each, as "
                     "name=CIDR; ids are derived from the name, so they stay stable."),
    cfg.StrOpt("distribution_cidr", default="198.19.32.0/19",
               help="The network between ACTIVE_ACTIVE load balancers' distributors and "
                    "their amphorae (one bridge on this host): each distributor and each "
                    "amphora of such a load balancer gets an address from it."),
]

quota_opts = [
    cfg.IntOpt(f"default_{name}_quota", default=-1, min=-1, max=2000000000,
               help=f"{name.replace('_', ' ').capitalize()}s a project without a quota of "
                    "its own may have; -1: unlimited.")
    for name in ("load_balancer", "listener", "member", "pool", "health_monitor",
                 "l7policy", "l7rule")
]

certificates_opts = [
    cfg.StrOpt("cert_manager", default="local_cert_manager",
               help="Where TLS certificates are read from: local_cert_manager (files in "
                    "storage_path), barbican_cert_manager (Barbican, as the requesting "
                    "user in the API and as the [service_auth] user in the worker) or "
                    "noop_cert_manager (any reference is one made-up certificate)."),
    cfg.StrOpt("barbican_auth", default="barbican_acl_auth", choices=["barbican_acl_auth"],
               help="How the worker may read the users' Barbican secrets: "
                    "barbican_acl_auth (the API adds the service user to each "
                    "reference's read ACL)."),
    cfg.StrOpt("service_name",
               help="Barbican's service name in the Keystone catalog; unset: "
                    "[barbican] service_name."),
    cfg.StrOpt("endpoint",
               help="Barbican's URL instead of the catalog's; unset: [barbican] "
                    "endpoint_override."),
    cfg.StrOpt("region_name",
               help="Region of Barbican's catalog entry; unset: [barbican] region_name."),
    cfg.StrOpt("endpoint_type", default="publicURL",
               help="Interface of Barbican's catalog entry: publicURL, internalURL or "
                    "adminURL (or public, internal, admin)."),
    cfg.StrOpt("storage_path", default="",
               help="Directory of the local certificate manager (<ref>.crt, .key, .int, "
                    ".pass); default: <state_path>/certificates."),
    cfg.StrOpt("cert_generator", default="local_cert_generator",
               help=_unused("certificates are signed by the local CA in state_path.")),
    cfg.IntOpt("cert_validity_time", default=2592000,
               help="Seconds a certificate signed by the local CA (agents', the controller's) "
                    "stays valid."),
    cfg.StrOpt("signing_digest", default="sha256",
               help="Digest of the certificates the local CA signs, e.g. sha256."),
]

metrics_opts = [
    cfg.BoolOpt("enabled", default=True,
                help="Serve the Prometheus metrics at /metrics on the API port."),
    cfg.BoolOpt("auth_required", default=False,
                help="With auth_strategy = keystone, /metrics needs a token allowed "
                     "os_load-balancer_api:amphora:get_all (admins by default). False: "
                     "/metrics is public, like version discovery (the figures name no "
                     "project and no object)."),
    cfg.HostAddressOpt("bind_host", default="127.0.0.1",
                       help="Address of the metrics endpoint of a service run on its own "
                            "(amphorae worker, health, housekeeping)."),
    cfg.PortOpt("bind_port", default=0,
                help="Port of that endpoint; 0: none. The API and everything under "
                     "`amphorae up` are served at the API's /metrics instead. Give each "
                     "service on one host its own port."),
]

autoscaling_opts = [
    cfg.BoolOpt("enabled", default=True,
                help="The health manager adds an amphora to an ACTIVE_ACTIVE load balancer "
                     "that runs hot and removes one from a set that runs cold, within its "
                     "flavor's amphora_count_min and amphora_count_max."),
    cfg.FloatOpt("interval", default=1.0, min=0.1,
                 help="Seconds between two looks at the load balancers' load."),
    cfg.FloatOpt("hot_load", default=0.7, min=0, max=1,
                 help="Mean busy share of a set's amphorae (HAProxy's, from their "
                      "heartbeats) above which the set runs hot."),
    cfg.FloatOpt("cold_load", default=0.3, min=0, max=1,
                 help="... and below which it runs cold (less than hot_load)."),
    cfg.FloatOpt("scale_out_after", default=3.0, min=0,
                 help="Seconds a set runs hot before an amphora is added."),
    cfg.FloatOpt("scale_in_after", default=30.0, min=0,
                 help="Seconds a set runs cold before an amphora is removed (only when "
                      "the rest would carry its load below hot_load)."),
    cfg.FloatOpt("cooldown", default=10.0, min=0,
                 help="Seconds after a change of the count before the next one."),
    cfg.FloatOpt("drain_timeout", default=60.0, min=0,
                 help="Seconds an amphora being removed from an ACTIVE_ACTIVE set may "
                      "keep its running connections; it goes once the distributor has "
                      "sent it nothing for 2 s and it reports none, or after this."),
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
    "metrics": metrics_opts,
    "autoscaling": autoscaling_opts,
}


def register(conf: cfg.ConfigOpts = CONF) -> None:
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=group)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """The entry point oslo-config-generator reads."""
    return [(group or "DEFAULT", opts) for group, opts in GROUPS.items()]


class ConfigError(Exception):
    """A configuration that cannot be used, said in one line naming the file."""


def load(args: list[str] | None = None, conf: cfg.ConfigOpts = CONF) -> cfg.ConfigOpts:
    """Parse the command line (with --config-file) into ``conf`` and read every option
    once, so that a missing file, a syntax error or a value of the wrong type is a
    :class:`ConfigError` now rather than a traceback whenever the option is first used."""
    try:
        conf(args or [], project="amphorae", default_config_files=[])
    except cfg.ConfigFilesNotFoundError as exc:
        raise ConfigError(f"{', '.join(exc.config_files)}: no such file") from None
    except cfg.ConfigFilesPermissionDeniedError as exc:
        raise ConfigError(f"{', '.join(exc.config_files)}: permission denied") from None
    except cfg.ConfigDirNotFoundError as exc:
        raise ConfigError(f"{exc.config_dir}: no such directory") from None
    except cfg.ConfigFileParseError as exc:
        # oslo says "at FILE:LINE, problem"; FILE:LINE first reads like a compiler's.
        where = re.match(r"at (\S+:\d+), (.*)", exc.msg)
        raise ConfigError(": ".join(where.groups()) if where
                          else f"{exc.config_file}: {exc.msg}") from None
    except OSError as exc:  # e.g. a directory given as --config-file
        raise ConfigError(f"{exc.filename}: {exc.strerror.lower()}") from None
    _check_values(conf)
    return conf


def _check_values(conf: cfg.ConfigOpts) -> None:
    """oslo.config converts a value when it is read: read them all."""
    for name in conf:
        try:
            group = conf[name]
            if isinstance(group, cfg.ConfigOpts.GroupAttr):
                for opt in group:
                    try:
                        group[opt]
                    except cfg.ConfigSourceValueError as exc:
                        raise ConfigError(_value_error(str(exc), f"[{name}] {opt}")) from None
        except cfg.ConfigSourceValueError as exc:
            raise ConfigError(_value_error(str(exc), f"[DEFAULT] {name}")) from None


def _value_error(message: str, option: str) -> str:
    """oslo's "Value for option X from LocationInfo(..., detail='FILE') is not valid:
    PROBLEM" as "FILE: [group] X: invalid value: PROBLEM"."""
    where = re.search(r"detail='([^']*)'", message)
    problem = message.split(" is not valid: ", 1)[-1]
    prefix = f"{where.group(1)}: " if where else ""
    return f"{prefix}{option}: invalid value: {problem}"


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
