"""What every amphora's agent is given when it is made, wherever it runs.

The same agent runs in a namespace on this host (compute_netns_driver) and in a Nova VM
(compute_nova_driver): both give it three files, made here by one function: its server
certificate and key (CN and DNS name = the amphora id, signed by the controller's CA),
the CA a controller's client certificate must chain to, and its configuration (where
those files are, where it keeps load balancers, where heartbeats go). Only the paths and
the listening address differ: a namespace's files sit in its state directory and its
agent binds its management address; a VM's sit where Octavia's image expects them
(``/etc/octavia/...``) and its agent binds every address (it learns its own by DHCP).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
from pathlib import Path

from oslo_config import cfg

from amphorae.common import config, filelock, pki
from amphorae.drivers import agent_client

CONTROLLER_CERT = "controller.pem"  # in the CA directory, next to ca.pem / ca.key
# The controller's certificate is re-issued when it has less than this left.
CLIENT_CERT_MIN_LEFT = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class HeartbeatTarget:
    """Where the agent sends heartbeats, with which key, how often."""

    key: str
    controllers: tuple[str, ...]  # ip:port
    interval: int


def heartbeat_target(conf: cfg.ConfigOpts, default_host: str) -> HeartbeatTarget:
    _, controllers = config.heartbeat_endpoints(conf, default_host)
    return HeartbeatTarget(key=config.heartbeat_key(conf), controllers=tuple(controllers),
                           interval=conf.health_manager.heartbeat_interval)


@dataclasses.dataclass(frozen=True)
class AgentLayout:
    """Where an agent finds its files and what it listens on."""

    server_cert: str
    client_ca: str
    base_path: str
    haproxy_cmd: str
    bind_host: str
    bind_port: int = agent_client.DEFAULT_PORT


# Octavia's amphora image: the paths its agent configuration names.
VM_LAYOUT = AgentLayout(server_cert="/etc/octavia/certs/server.pem",
                        client_ca="/etc/octavia/certs/client_ca.pem",
                        base_path="/var/lib/octavia", haproxy_cmd="/usr/sbin/haproxy",
                        bind_host="::")
VM_AGENT_CONF = "/etc/octavia/amphora-agent.conf"


def render_agent_config(amphora_id: str, layout: AgentLayout,
                        heartbeat: HeartbeatTarget | None = None) -> str:
    """The agent's configuration file."""
    text = (f"[amphora_agent]\n"
            f"amphora_id = {amphora_id}\n"
            f"bind_host = {layout.bind_host}\n"
            f"bind_port = {layout.bind_port}\n"
            f"agent_server_cert = {layout.server_cert}\n"
            f"agent_server_ca = {layout.client_ca}\n"
            f"base_path = {layout.base_path}\n"
            f"haproxy_cmd = {layout.haproxy_cmd}\n")
    if heartbeat is not None:
        text += (f"\n[health_manager]\n"
                 f"heartbeat_key = {heartbeat.key}\n"
                 f"controller_ip_port_list = {', '.join(heartbeat.controllers)}\n"
                 f"heartbeat_interval = {heartbeat.interval}\n")
    return text


@dataclasses.dataclass(frozen=True)
class AgentFiles:
    server_pem: bytes  # certificate and key: secret
    client_ca_pem: bytes
    config: str
    cert_expiration: dt.datetime  # naive UTC

    def by_path(self, layout: AgentLayout, config_path: str) -> dict[str, bytes]:
        """The three files under the paths ``layout`` (and the config's path) give."""
        return {layout.server_cert: self.server_pem, layout.client_ca: self.client_ca_pem,
                config_path: self.config.encode()}


class ControllerCA:
    """The controller's CA (``<state_path>/ca``): it signs every agent's server
    certificate and the controller's own client certificate, with which the amphora
    driver talks to agents. Made on first use: services that only list amphorae never
    touch it."""

    def __init__(self, ca_dir: str | os.PathLike[str], cert_validity: int | None = None
                 ) -> None:
        self.ca_dir = Path(ca_dir)
        self.cert_validity = cert_validity
        self.ca_file = self.ca_dir / "ca.pem"
        self.client_cert = self.ca_dir / CONTROLLER_CERT
        self._ca: pki.CertKey | None = None
        self._lock = threading.Lock()

    @property
    def ca(self) -> pki.CertKey:
        with self._lock:
            if self._ca is None:
                # Another service process may be making the same CA right now.
                with filelock.exclusive(self.ca_dir / ".lock"):
                    ca = pki.load_or_create_ca(self.ca_dir)
                    self._ensure_client_cert(ca)
                    self._ca = ca
            return self._ca

    def _ensure_client_cert(self, ca: pki.CertKey) -> None:
        """The controller's client certificate, kept while it is ours and not expiring."""
        try:
            current = pki.load(self.client_cert)
            left = pki.cert_expiration(current.cert) - dt.datetime.now(dt.UTC).replace(
                tzinfo=None)
            if current.cert.issuer == ca.cert.subject and left > CLIENT_CERT_MIN_LEFT:
                return
        except (OSError, ValueError):
            pass
        pki.save_bundle(pki.issue_client_cert(ca, validity=self.cert_validity),
                        self.client_cert)

    def agent_files(self, amphora_id: str, layout: AgentLayout,
                    heartbeat: HeartbeatTarget | None,
                    management_ip: str | None = None) -> AgentFiles:
        """A new server certificate for the agent, the client CA and its configuration.
        ``management_ip`` goes into the certificate when known (controllers check the
        DNS name, the amphora id, either way)."""
        server = pki.issue_server_cert(self.ca, amphora_id, management_ip,
                                       validity=self.cert_validity)
        return AgentFiles(server_pem=server.bundle_pem(),
                          client_ca_pem=self.ca.cert_pem(),
                          config=render_agent_config(amphora_id, layout, heartbeat),
                          cert_expiration=pki.cert_expiration(server.cert))

    def client(self, amphora_id: str, management_ip: str, port: int = agent_client.DEFAULT_PORT,
               **kwargs: object) -> agent_client.AgentClient:
        """An agent client for the amphora, with the controller's certificate."""
        self.ca  # noqa: B018 - the certificate files exist from here on
        return agent_client.AgentClient(management_ip, amphora_id, str(self.client_cert),
                                        str(self.ca_file), port=port,
                                        **kwargs)  # type: ignore[arg-type]


def ca_dir(conf: cfg.ConfigOpts = config.CONF) -> str:
    """The controller's CA directory."""
    return os.path.join(config.state_path(conf), "ca")
