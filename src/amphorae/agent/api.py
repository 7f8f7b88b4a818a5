"""The agent's REST API under ``/1.0`` (reference §4.2): load balancer configs, HAProxy
start/stop/reload, certificates, and what the controller asks about the amphora.

Every error is JSON ``{"message", "details"}``; no traceback leaves the process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import resource
import socket
from pathlib import Path
from typing import Any

from amphorae.agent import dataplane_api, interfaces, udp_health, wsgi
from amphorae.agent import haproxy as hap
from amphorae.agent import keepalived as ka
from amphorae.agent import nftables as nft
from amphorae.agent.responses import body, send_text, stored
from amphorae.agent.wsgi import AgentError, Request, Response

LOG = logging.getLogger(__name__)

API_VERSION = "1.0"
MAX_BODY = 16 * 1024 * 1024
ACTIONS = ("start", "stop", "reload")
_CERT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,250}\.pem$")


def _lb_id(sup: hap.Supervisor, lb_id: str) -> hap.LbFiles:
    try:
        return sup.files(lb_id)
    except ValueError:
        raise AgentError(400, "Invalid request",
                         f"invalid load balancer id: {lb_id}") from None


def _not_found(lb_id: str) -> AgentError:
    return AgentError(404, "Loadbalancer Not Found",
                      f"No loadbalancer with UUID: {lb_id}")


def max_fds() -> int:
    """The hard descriptor limit HAProxy will inherit; the controller caps maxconn by it."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return -1 if hard == resource.RLIM_INFINITY else hard


def parse_frontends(config: str) -> list[dict[str, str]]:
    """Listeners of one haproxy.cfg: each ``frontend`` with its mode; a frontend that
    terminates TLS (a ``crt-list``) is TERMINATED_HTTPS."""
    found: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for raw in config.splitlines():
        line = raw.strip()
        if not raw[:1].isspace() and line:
            words = line.split()
            current = None
            if words[0] == "frontend" and len(words) > 1 and not words[1].startswith(
                    "prometheus-exporter-internal"):
                current = {"status": "ACTIVE", "uuid": words[1], "type": "TCP"}
                found.append(current)
        elif current is not None and line:
            words = line.split()
            if words[0] == "mode" and len(words) > 1:
                if current["type"] != "TERMINATED_HTTPS":
                    current["type"] = words[1].upper()
            elif words[0] == "bind" and "crt-list" in words:
                current["type"] = "TERMINATED_HTTPS"
    return found


# -- resources -------------------------------------------------------------------------


class Root:
    def on_get(self, req: Request, resp: Response) -> None:
        resp.media = {"api_version": API_VERSION}


class Info:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def on_get(self, req: Request, resp: Response) -> None:
        resp.media = self.agent.info()


class Details:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def on_get(self, req: Request, resp: Response) -> None:
        resp.media = self.agent.details()


class Listeners:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def on_get(self, req: Request, resp: Response) -> None:
        resp.media = self.agent.listeners()


class HaproxyUpload:
    def __init__(self, sup: hap.Supervisor) -> None:
        self.sup = sup

    def on_put(self, req: Request, resp: Response, amphora_id: str, lb_id: str) -> None:
        _lb_id(self.sup, lb_id)
        data = body(req)
        try:
            self.sup.install_config(lb_id, data)
        except hap.InvalidConfig as exc:
            raise AgentError(400, exc.message, exc.details) from None
        resp.status = 202
        stored(resp, data)


class HaproxyConfig:
    def __init__(self, sup: hap.Supervisor) -> None:
        self.sup = sup

    def on_get(self, req: Request, resp: Response, lb_id: str) -> None:
        files = _lb_id(self.sup, lb_id)
        try:
            data = files.config.read_bytes()
        except FileNotFoundError:
            raise _not_found(lb_id) from None
        send_text(resp, data, self.sup.running_config(lb_id))


class Action:
    def __init__(self, sup: hap.Supervisor) -> None:
        self.sup = sup

    def on_put(self, req: Request, resp: Response, lb_id: str, action: str) -> None:
        files = _lb_id(self.sup, lb_id)
        if action not in ACTIONS:
            raise AgentError(400, "Invalid Request",
                             f"Unknown action: {action}")
        if action != "stop" and not files.config.is_file():
            raise _not_found(lb_id)
        try:
            outcome = getattr(self.sup, action)(lb_id)
        except hap.HaproxyError as exc:
            raise AgentError(500, exc.message, exc.details) from None
        resp.status = 202
        resp.media = {"message": "OK", "details": f"haproxy of {lb_id}: {outcome}"}


class DeleteListeners:
    def __init__(self, sup: hap.Supervisor) -> None:
        self.sup = sup

    def on_delete(self, req: Request, resp: Response, lb_id: str) -> None:
        _lb_id(self.sup, lb_id)
        self.sup.delete(lb_id)
        resp.media = {"message": "OK"}


class Certificate:
    def __init__(self, sup: hap.Supervisor) -> None:
        self.sup = sup

    def _path(self, lb_id: str, filename: str) -> Path:
        files = _lb_id(self.sup, lb_id)
        if not _CERT_NAME.match(filename) or ".." in filename:
            raise AgentError(400, "Invalid request",
                             f"certificate file name must be a plain *.pem name: {filename}")
        return files.cert_dir / filename

    def on_put(self, req: Request, resp: Response, lb_id: str, filename: str) -> None:
        path = self._path(lb_id, filename)
        data = body(req)
        with self.sup.lock(lb_id):
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            hap.write_file(path, data, 0o600)
        stored(resp, data)

    def on_get(self, req: Request, resp: Response, lb_id: str, filename: str) -> None:
        path = self._path(lb_id, filename)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise AgentError(404, "Certificate Not Found",
                             f"No certificate with filename: {filename}") from None
        resp.media = {"md5sum": hashlib.md5(data).hexdigest()}

    def on_delete(self, req: Request, resp: Response, lb_id: str, filename: str) -> None:
        self._path(lb_id, filename).unlink(missing_ok=True)
        resp.media = {"message": "OK"}


# -- the application -------------------------------------------------------------------


class Agent:
    """What the API reports about the amphora."""

    def __init__(self, sup: hap.Supervisor) -> None:
        self.sup = sup
        self._haproxy_version: str | None = None

    def haproxy_version(self) -> str:
        if self._haproxy_version is None:
            self._haproxy_version = self.sup.version()
        return self._haproxy_version

    def info(self) -> dict[str, Any]:
        return {"hostname": socket.gethostname(), "haproxy_version": self.haproxy_version(),
                "api_version": API_VERSION, "max_fds": max_fds()}

    def listeners(self) -> list[dict[str, str]]:
        found = []
        for lb_id in self.sup.load_balancers():
            try:
                text = self.sup.files(lb_id).config.read_text(errors="replace")
            except FileNotFoundError:
                continue  # deleted meanwhile
            status = "ACTIVE" if self.sup.running(lb_id) else "STOPPED"
            for listener in parse_frontends(text):
                found.append({**listener, "status": status})
        return found

    def details(self) -> dict[str, Any]:
        lbs = self.sup.load_balancers()
        disk = os.statvfs(self.sup.base)
        return {
            **self.info(),
            "active": True,
            "haproxy_count": sum(1 for lb_id in lbs if self.sup.running(lb_id)),
            "cpu_count": os.cpu_count() or 0,
            "load": list(os.getloadavg()),
            "memory": _meminfo(),
            "disk": {"used": (disk.f_blocks - disk.f_bfree) * disk.f_frsize,
                     "available": disk.f_bavail * disk.f_frsize},
            "listeners": sorted({item["uuid"] for item in self.listeners()}),
            "load_balancers": lbs,
            "topology": "SINGLE",
            "packages": {},
        }


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in kB, under Octavia's names."""
    names = {"MemTotal": "total", "MemFree": "free", "Buffers": "buffers",
             "Cached": "cached", "Shmem": "shared", "Slab": "slab"}
    values: dict[str, int] = {}
    swap_total = swap_free = 0
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return values
    for line in lines:
        key, _, rest = line.partition(":")
        number = int(rest.split()[0]) if rest.split() else 0
        if key in names:
            values[names[key]] = number
        elif key == "SwapTotal":
            swap_total = number
        elif key == "SwapFree":
            swap_free = number
    values["swap_used"] = swap_total - swap_free
    return values


def create_app(sup: hap.Supervisor, vrrp: ka.Keepalived | None = None,
               rules: nft.Nftables | None = None,
               udp: udp_health.UdpHealth | None = None) -> wsgi.App:
    """The agent's API; ``udp`` (the UDP member health checks) owns ``rules``."""
    agent = Agent(sup)
    app = wsgi.App(MAX_BODY)
    prefix = f"/{API_VERSION}"
    app.add_route("/", Root())
    app.add_route(f"{prefix}/info", Info(agent))
    app.add_route(f"{prefix}/details", Details(agent))
    app.add_route(f"{prefix}/listeners", Listeners(agent))
    lb = f"{prefix}/loadbalancer"
    app.add_route(f"{lb}/{{amphora_id}}/{{lb_id}}/haproxy", HaproxyUpload(sup))
    app.add_route(f"{lb}/{{lb_id}}/haproxy", HaproxyConfig(sup))
    app.add_route(f"{lb}/{{lb_id}}/certificates/{{filename}}", Certificate(sup))
    app.add_route(f"{lb}/{{lb_id}}/{{action}}", Action(sup))
    app.add_route(f"{prefix}/listeners/{{lb_id}}", DeleteListeners(sup))
    interfaces.add_routes(app, prefix)
    # keepalived and nftables share the agent's base path.
    if udp is None:
        udp = udp_health.UdpHealth(rules or nft.Nftables(sup.base), sup.base)
    dataplane_api.add_routes(app, prefix, vrrp or ka.Keepalived(sup.base), udp)
    return app
