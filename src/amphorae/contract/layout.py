"""Where an amphora keeps its files, under the agent's base path. The agent installs and
runs from these places; the controller renders configs that point at them
(``render.haproxy_settings.AmphoraPaths``, keepalived's check script).

One HAProxy per load balancer::

    <base>/<lb_id>/haproxy.cfg      the installed config (.new while validated)
    <base>/<lb_id>/haproxy.pid      the current process's pid, written by HAProxy (-p)
    <base>/<lb_id>/haproxy.sock     the stats socket the config declares
    <base>/<lb_id>/servers-state    server states kept across reloads
    <base>/<lb_id>/certs/           certificates
    <base>/<lb_id>/haproxy.log      HAProxy's own stderr

keepalived (ACTIVE_STANDBY only)::

    <base>/vrrp.d/keepalived.conf    the installed config (.new while checked, .failed
                                     when refused)
    <base>/vrrp.d/check_script.sh    the VRRP check script (render.keepalived)
    <base>/vrrp.d/keepalived.pid     parent process (-p); also vrrp.pid (-r),
                                     checkers.pid (-c), bfd.pid (-b)
    <base>/vrrp.d/keepalived.log     keepalived's console log

The ".d" keeps the folder out of the load balancers' name space (an id has no dot), so
no load balancer operation can reach it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LbFiles:
    """Where one load balancer's files live."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def new_config(self) -> Path:
        return self.root / "haproxy.cfg.new"

    @property
    def failed_config(self) -> Path:
        return self.root / "haproxy.cfg.failed"

    @property
    def running_config(self) -> Path:
        """A copy of the config the running HAProxy loaded (agent.haproxy.RunningCopy)."""
        return self.root / "haproxy.cfg.running"

    @property
    def pid_file(self) -> Path:
        return self.root / "haproxy.pid"

    @property
    def stats_socket(self) -> Path:
        return self.root / "haproxy.sock"

    @property
    def server_state(self) -> Path:
        return self.root / "servers-state"

    @property
    def drains(self) -> Path:
        """The agent's draining servers, for the next agent (agent.runtime.Drains)."""
        return self.root / "drains.json"

    @property
    def cert_dir(self) -> Path:
        return self.root / "certs"

    @property
    def log(self) -> Path:
        return self.root / "haproxy.log"


@dataclass(frozen=True)
class VrrpFiles:
    """Where the amphora's keepalived files live."""

    root: Path

    @classmethod
    def under(cls, base_path: str | os.PathLike[str]) -> VrrpFiles:
        """The layout under an agent base path (the controller renders check_script from
        it)."""
        return cls(Path(base_path) / "vrrp.d")

    @property
    def config(self) -> Path:
        return self.root / "keepalived.conf"

    @property
    def new_config(self) -> Path:
        return self.root / "keepalived.conf.new"

    @property
    def failed_config(self) -> Path:
        return self.root / "keepalived.conf.failed"

    @property
    def running_config(self) -> Path:
        return self.root / "keepalived.conf.running"

    @property
    def check_script(self) -> Path:
        return self.root / "check_script.sh"

    @property
    def pid_file(self) -> Path:
        return self.root / "keepalived.pid"

    @property
    def vrrp_pid_file(self) -> Path:
        return self.root / "vrrp.pid"

    @property
    def checkers_pid_file(self) -> Path:
        return self.root / "checkers.pid"

    @property
    def bfd_pid_file(self) -> Path:
        return self.root / "bfd.pid"

    @property
    def log(self) -> Path:
        return self.root / "keepalived.log"
