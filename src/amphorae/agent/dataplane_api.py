"""Agent endpoints for keepalived (VRRP) and the nftables rules of UDP listeners
(reference §4.2 for the VRRP ones; ``/nftables`` is ours: no IPVS on this kernel).

    PUT    /1.0/vrrp/upload        raw keepalived.conf: checked (keepalived -t), swapped in
    PUT    /1.0/vrrp/check_script  raw check script (render.keepalived.render_check_script)
    GET    /1.0/vrrp/upload        the installed keepalived.conf
    PUT    /1.0/vrrp/{action}      start (reload when running) | stop | reload
    PUT    /1.0/nftables           raw nft script (contract.nftables): checked, then applied
    GET    /1.0/nftables           the last applied script
    DELETE /1.0/nftables           removes the table
    PUT    /1.0/udp                UDP listeners as JSON (contract.udp_config): the agent health
                                   checks their members and renders the rules itself
    GET    /1.0/udp                the document in force
    GET    /1.0/udp/status         the UDP pools' member statuses (as in the heartbeat)
    DELETE /1.0/udp                stops the checks, removes the table

The rules have one owner at a time: a raw script (PUT /nftables) ends the health checks
of a document, and a document replaces the raw script.

Errors are AgentErrors, answered in the agent's ``{"message", "details"}`` shape.
"""

from __future__ import annotations

from amphorae.agent import keepalived as ka
from amphorae.agent import nftables as nft
from amphorae.agent import udp_health, wsgi
from amphorae.agent.responses import body, send_text, stored
from amphorae.agent.wsgi import AgentError, Request, Response

ACTIONS = ("start", "stop", "reload")
_PAST = {"start": "started", "stop": "stopped", "reload": "reloaded"}


def _no_config() -> AgentError:
    return AgentError(404, "VRRP Config Not Found",
                      "no keepalived configuration has been uploaded")


class VrrpUpload:
    def __init__(self, vrrp: ka.Keepalived) -> None:
        self.vrrp = vrrp

    def on_put(self, req: Request, resp: Response) -> None:
        data = body(req)
        try:
            self.vrrp.install_config(data)
        except ka.InvalidConfig as exc:
            raise AgentError(400, exc.message, exc.details) from None
        stored(resp, data)

    def on_get(self, req: Request, resp: Response) -> None:
        try:
            data = self.vrrp.files.config.read_bytes()
        except FileNotFoundError:
            raise _no_config() from None
        send_text(resp, data, self.vrrp.running_config())


class VrrpCheckScript:
    def __init__(self, vrrp: ka.Keepalived) -> None:
        self.vrrp = vrrp

    def on_put(self, req: Request, resp: Response) -> None:
        data = body(req)
        if not data.startswith(b"#!"):
            raise AgentError(400, "Invalid request",
                             "the check script must start with a #! line")
        self.vrrp.install_check_script(data)
        stored(resp, data)


class VrrpAction:
    def __init__(self, vrrp: ka.Keepalived) -> None:
        self.vrrp = vrrp

    def on_put(self, req: Request, resp: Response, action: str) -> None:
        if action not in ACTIONS:
            raise AgentError(400, "Invalid Request", f"Unknown action: {action}")
        if action != "stop" and not self.vrrp.has_config():
            raise _no_config()
        try:
            outcome = getattr(self.vrrp, action)()
        except ka.KeepalivedError as exc:
            raise AgentError(500, exc.message, exc.details) from None
        resp.status = 202
        resp.media = {"message": "OK", "details": f"keepalived {_PAST[action]}: {outcome}"}


def _delete_rules(udp: udp_health.UdpHealth, resp: Response) -> None:
    try:
        udp.delete()
    except nft.NftError as exc:
        raise AgentError(500, "Cannot remove nftables rules", exc.details) from None
    resp.media = {"message": "OK"}


class Nftables:
    def __init__(self, udp: udp_health.UdpHealth) -> None:
        self.udp = udp

    def on_put(self, req: Request, resp: Response) -> None:
        data = body(req)
        try:
            self.udp.apply_script(data)
        except nft.NftError as exc:
            raise AgentError(400, exc.message, exc.details) from None
        stored(resp, data)

    def on_get(self, req: Request, resp: Response) -> None:
        data = self.udp.rules.applied()
        if data is None:
            raise AgentError(404, "Rules Not Found", "no nftables rules applied")
        send_text(resp, data)

    def on_delete(self, req: Request, resp: Response) -> None:
        _delete_rules(self.udp, resp)


class Udp:
    def __init__(self, udp: udp_health.UdpHealth) -> None:
        self.udp = udp

    def on_put(self, req: Request, resp: Response) -> None:
        data = body(req)
        try:
            self.udp.configure(data)
        except udp_health.UdpConfigError as exc:
            raise AgentError(400, "Invalid request", str(exc)) from None
        except nft.NftError as exc:
            raise AgentError(400, exc.message, exc.details) from None
        stored(resp, data)

    def on_get(self, req: Request, resp: Response) -> None:
        data = self.udp.document()
        if data is None:
            raise AgentError(404, "UDP Config Not Found",
                             "no UDP listener configuration has been uploaded")
        send_text(resp, data)
        resp.content_type = wsgi.JSON

    def on_delete(self, req: Request, resp: Response) -> None:
        _delete_rules(self.udp, resp)


class UdpStatus:
    def __init__(self, udp: udp_health.UdpHealth) -> None:
        self.udp = udp

    def on_get(self, req: Request, resp: Response) -> None:
        resp.media = {"pools": self.udp.pool_statuses()}


def add_routes(app: wsgi.App, prefix: str, vrrp: ka.Keepalived,
               udp: udp_health.UdpHealth) -> None:
    app.add_route(f"{prefix}/vrrp/upload", VrrpUpload(vrrp))
    app.add_route(f"{prefix}/vrrp/check_script", VrrpCheckScript(vrrp))
    app.add_route(f"{prefix}/vrrp/{{action}}", VrrpAction(vrrp))
    app.add_route(f"{prefix}/nftables", Nftables(udp))
    app.add_route(f"{prefix}/udp", Udp(udp))
    app.add_route(f"{prefix}/udp/status", UdpStatus(udp))
