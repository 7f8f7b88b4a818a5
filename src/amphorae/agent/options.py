"""The agent's ``[amphora_agent]`` options, registered by the agent itself: the
controller never reads them, so they stay out of ``amphorae.common.config``."""

from __future__ import annotations

from oslo_config import cfg

GROUP = "amphora_agent"

agent_opts = [
    cfg.StrOpt("amphora_id", help="Id of this amphora (the CN of its server certificate)."),
    cfg.HostAddressOpt("bind_host", default="::", help="Address the agent API listens on."),
    cfg.PortOpt("bind_port", default=9443, help="Port the agent API listens on."),
    cfg.StrOpt("agent_server_cert", default="/etc/octavia/certs/server.pem",
               help="PEM file holding the agent's certificate and its key."),
    cfg.StrOpt("agent_server_ca", default="/etc/octavia/certs/client_ca.pem",
               help="CA a controller's client certificate must be signed by."),
    cfg.StrOpt("base_path", default="/var/lib/octavia",
               help="State directory: one folder per load balancer (config, pid, "
                    "sockets, certificates)."),
    cfg.StrOpt("haproxy_cmd", default="/usr/sbin/haproxy", help="The HAProxy binary."),
    cfg.IntOpt("agent_request_read_timeout", default=180,
               help="Seconds a connection may stay silent before the agent drops it."),
    cfg.IntOpt("haproxy_stop_timeout", default=10,
               help="Seconds a soft stop may take before HAProxy is terminated."),
    cfg.IntOpt("haproxy_start_timeout", default=10,
               help="Seconds to wait for HAProxy's first worker (or a reloaded one)."),
    cfg.IntOpt("user_log_facility", default=0, min=0, max=7,
               help="Syslog facility local<N> of HAProxy's traffic logs."),
    cfg.IntOpt("administrative_log_facility", default=1, min=0, max=7,
               help="Syslog facility local<N> of HAProxy's own events, at level notice."),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(agent_opts, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(GROUP, agent_opts)]
