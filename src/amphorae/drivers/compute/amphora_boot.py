"""Boot a real amphora agent inside a netns amphora.

:class:`AmphoraBooter` ties three pieces together: the netns compute driver (namespace and
management address), the controller's local CA (the agent's server certificate and the
controller's client certificate) and the agent itself (``amphorae agent``, started in the
namespace through the driver's ``start_agent``: forked from a warm zygote). An amphora is
booted once its agent answers ``/info`` over mutual TLS on ``https://<management ip>:9443``.

Files in the amphora's state directory (next to the driver's own):

- ``server.pem``: the agent's certificate and key (0600), CN = amphora id, IP name = the
  management address;
- ``client_ca.pem``: the CA a controller's client certificate must chain to;
- ``agent.conf``: the agent's configuration (0600);
- ``lb/``: the agent's ``base_path`` (per load balancer HAProxy files);
- ``agent.log`` / ``agent.pid``: written by the driver's ``start_agent``.

Deleting is the driver's delete: it kills every process in the namespace (the agent and
any HAProxy it started) and removes the state directory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import ssl
import sys
import time
from pathlib import Path

from oslo_config import cfg

from amphorae.common import pki
from amphorae.drivers import agent_client
from amphorae.drivers.compute import agent_config, base, netns
from amphorae.drivers.compute.agent_config import (  # noqa: F401 - their old home
    CONTROLLER_CERT,
    HeartbeatTarget,
    ca_dir,
    heartbeat_target,
)

AGENT_NAME = "agent"  # the driver's process name: agent.pid, agent.log
SERVER_CERT = "server.pem"
CLIENT_CA = "client_ca.pem"
AGENT_CONF = "agent.conf"
AGENT_BASE = "lb"
DEFAULT_READY_TIMEOUT = 30.0
POLL_INTERVAL = 0.01  # between attempts while the agent starts: it is up in ~0.2 s


class AmphoraBootError(RuntimeError):
    """The agent did not come up; the amphora has been deleted again."""


@dataclasses.dataclass(frozen=True)
class BootedAmphora:
    amphora_id: str
    compute_id: str  # the namespace
    management_ip: str
    cert_expiration: dt.datetime  # naive UTC, like the database columns
    agent_pid: int
    boot_seconds: float  # from the create() call to /info answering


def agent_command() -> list[str]:
    """The venv's ``amphorae`` entry point (next to the running interpreter)."""
    return [os.path.join(os.path.dirname(sys.executable), "amphorae"), AGENT_NAME]


def _write_private(path: Path, data: bytes) -> None:
    """Write with mode 0600 from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the file may have existed with other bits
        handle.write(data)


class AmphoraBooter(base.ComputeDriver):
    """The ``compute_netns_driver``: amphorae as namespaces on this host, each with its
    agent running and answering before :meth:`build` returns."""

    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts) -> AmphoraBooter:
        host = netns.NetnsComputeDriver(conf)
        return cls(host, ca_dir(conf), cert_validity=conf.certificates.cert_validity_time,
                   heartbeat=heartbeat_target(conf, str(host.gateway)))

    def __init__(self, driver: netns.NetnsComputeDriver, ca_dir: str | os.PathLike[str], *,
                 port: int = agent_client.DEFAULT_PORT,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT,
                 haproxy_cmd: str | None = None,
                 cert_validity: int | None = None,
                 heartbeat: HeartbeatTarget | None = None) -> None:
        self.driver = driver
        self.port = port
        self.ready_timeout = ready_timeout
        self.haproxy_cmd = haproxy_cmd or shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.heartbeat = heartbeat
        self.cert_validity = cert_validity
        self.controller_ca = agent_config.ControllerCA(ca_dir, cert_validity)
        self.ca_dir = self.controller_ca.ca_dir
        self.ca_file = self.controller_ca.ca_file
        self.client_cert = self.controller_ca.client_cert

    @property
    def ca(self) -> pki.CertKey:
        """The CA and the controller's client certificate, made on first use."""
        return self.controller_ca.ca

    def folder(self, amphora_id: str) -> Path:
        return self.driver.state_dir / netns.short_id(amphora_id)

    def client(self, amphora_id: str, management_ip: str,
               **kwargs: object) -> agent_client.AgentClient:
        """An agent client for the amphora, with the controller's certificate."""
        return self.controller_ca.client(amphora_id, management_ip, self.port, **kwargs)

    # -- create / delete ---------------------------------------------------------------

    def create(self, amphora_id: str, timeout: float | None = None) -> BootedAmphora:
        """Namespace, certificate, config, agent; returns once the agent answers /info.
        On any failure the amphora is deleted again and the error raised."""
        started = time.perf_counter()
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        amp = self.driver.create(amphora_id)
        try:
            assert amp.management_ip is not None  # create() always reserves one
            folder = self.folder(amphora_id)
            pid = self.driver.pid(amphora_id, AGENT_NAME)
            if pid is None:
                expiration = self._install(amphora_id, amp.management_ip, folder)
                pid = self.driver.start_agent(amphora_id, agent_command(),
                                              str(folder / AGENT_CONF), name=AGENT_NAME)
            else:  # already booted (a repeated call): keep the agent and its certificate
                expiration = pki.cert_expiration(pki.load(folder / SERVER_CERT).cert)
            self._wait_ready(amphora_id, amp.management_ip, pid, deadline)
        except BaseException as exc:
            log = self._log_tail(amphora_id)
            self.driver.delete(amphora_id)
            if isinstance(exc, (agent_client.AgentError, TimeoutError, OSError)):
                raise AmphoraBootError(f"amphora {amphora_id}: agent not ready: {exc}"
                                       + (f"\nagent log:\n{log}" if log else "")) from exc
            raise
        return BootedAmphora(amphora_id, amp.namespace, amp.management_ip, expiration, pid,
                             time.perf_counter() - started)

    def build(self, amphora_id: str, server_group_id: str | None = None) -> base.Instance:
        amp = self.create(amphora_id)
        return base.Instance(amphora_id, amp.compute_id, base.ACTIVE, amp.management_ip,
                             amp.cert_expiration, amp.boot_seconds)

    def delete(self, amphora_id: str) -> None:
        self.driver.delete(amphora_id)

    def status(self, amphora_id: str) -> str:
        """ACTIVE: the namespace is complete and its agent process runs (no network round
        trip: whether the agent answers is the health manager's business)."""
        return self._with_agent(amphora_id, self.driver.status(amphora_id))

    def _with_agent(self, amphora_id: str, found: str) -> str:
        """A complete namespace whose agent died is broken: the health manager fails it
        over within a check interval instead of waiting out the heartbeat timeout."""
        if found == base.ACTIVE and not self.driver.running(amphora_id, AGENT_NAME):
            return base.ERROR
        return found

    def controller_address(self) -> str:
        return str(self.driver.gateway)  # the host's end of the management bridge

    def release_host(self) -> None:
        self.driver.remove_bridge()

    def list_instances(self) -> list[base.Instance]:
        """Only amphorae whose state file (in this driver's directory) names this
        deployment are ours: the netns driver lists others' without an id."""
        return [base.Instance(amp.amphora_id, amp.namespace,
                              self._with_agent(amp.amphora_id, amp.status), amp.management_ip)
                for amp in self.driver.list_amphorae() if amp.amphora_id]

    def _install(self, amphora_id: str, management_ip: str, folder: Path) -> dt.datetime:
        """Server certificate, client CA and agent config into the amphora's folder."""
        layout = agent_config.AgentLayout(
            server_cert=str(folder / SERVER_CERT), client_ca=str(folder / CLIENT_CA),
            base_path=str(folder / AGENT_BASE), haproxy_cmd=self.haproxy_cmd,
            bind_host=management_ip, bind_port=self.port)
        files = self.controller_ca.agent_files(amphora_id, layout, self.heartbeat,
                                               management_ip)
        for path, data in files.by_path(layout, str(folder / AGENT_CONF)).items():
            _write_private(Path(path), data)
        return files.cert_expiration

    def _wait_ready(self, amphora_id: str, management_ip: str, pid: int,
                    deadline: float) -> agent_client.AgentInfo:
        """Poll /info until it answers, the agent dies or the deadline passes. TLS
        failures (wrong certificate on either side) are raised at once."""
        client = self.client(amphora_id, management_ip, max_retries=0,
                             retry_interval=POLL_INTERVAL)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer on {management_ip}:{self.port} in time")
            client.conn_timeout = client.read_timeout = max(min(left, 2.0), 0.05)
            try:
                return client.info()
            except agent_client.AgentUnavailable as exc:
                if isinstance(exc.__cause__, ssl.SSLError):
                    raise  # a certificate or TLS alert: waiting will not help
            if not _alive(pid):
                raise agent_client.AgentUnavailable(f"agent process {pid} exited")
            time.sleep(POLL_INTERVAL)

    def _log_tail(self, amphora_id: str, lines: int = 20) -> str:
        try:
            text = (self.folder(amphora_id) / f"{AGENT_NAME}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    """Running and not a zombie (our child until the driver reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
