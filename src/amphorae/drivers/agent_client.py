"""The controller's client of the amphora agent API (reference §4): mutual TLS, the
server certificate must name the amphora id, and retries while the amphora boots.

Only connection failures are retried (refused, reset, timed out: the agent is not up
yet). A certificate the client does not trust is never retried, and an HTTP error from
a running agent is raised at once as :class:`AgentRequestError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import logging
import ssl
from typing import Any

import tenacity

from amphorae.common import constants as c
from amphorae.common import tls

LOG = logging.getLogger(__name__)

API_VERSION = "1.0"
DEFAULT_PORT = 9443
USER_AGENT = "amphorae agent client/1.0"
# Backoff while an amphora boots: starts small so a fast agent is found at once, and
# grows up to the configured retry interval.
FIRST_WAIT = 0.05


class AgentError(Exception):
    """Base of the agent client's errors."""


class AgentUnavailable(AgentError):
    """The agent could not be reached (after the retries), or TLS with it failed (its
    certificate is not the expected one, or it refused ours)."""


class AgentRequestError(AgentError):
    """The agent answered with an error status."""

    def __init__(self, status: int, message: str, details: Any = "") -> None:
        super().__init__(f"agent returned {status}: {message}"
                         + (f" ({details})" if details else ""))
        self.status = status
        self.message = message
        self.details = details


@dataclasses.dataclass(frozen=True)
class AgentInfo:
    hostname: str
    haproxy_version: str
    api_version: str
    max_fds: int | None  # the amphora's hard RLIMIT_NOFILE, for HaproxySettings.fd_limit


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _Retry(Exception):
    """A failure worth another attempt."""


class AgentClient:
    """One amphora's agent. ``client_cert`` is a PEM holding the controller's certificate
    and key; ``server_ca`` the CA the agent's certificate must chain to."""

    def __init__(self, address: str, amphora_id: str, client_cert: str, server_ca: str, *,
                 port: int = DEFAULT_PORT, max_retries: int | None = None,
                 retry_interval: float | None = None, conn_timeout: float | None = None,
                 read_timeout: float | None = None) -> None:
        conf = _haproxy_amphora()
        self.address = address
        self.port = port
        self.amphora_id = amphora_id
        self.max_retries = _pick(max_retries, conf, "connection_max_retries", 120)
        self.retry_interval = _pick(retry_interval, conf, "connection_retry_interval", 5)
        self.conn_timeout = _pick(conn_timeout, conf, "rest_request_conn_timeout", 10)
        self.read_timeout = _pick(read_timeout, conf, "rest_request_read_timeout", 60)
        self.context = tls.client_ssl_context(client_cert, None, server_ca, amphora_id)

    # -- typed calls -----------------------------------------------------------------

    def version(self, **retry: Any) -> str:
        return str(self.request("GET", "/", prefix=False, **retry).json()["api_version"])

    def info(self, **retry: Any) -> AgentInfo:
        data = self.request("GET", "info", **retry).json()
        max_fds = data.get("max_fds")
        return AgentInfo(hostname=data.get("hostname", ""),
                         haproxy_version=data.get("haproxy_version", ""),
                         api_version=data.get("api_version", ""),
                         max_fds=int(max_fds) if isinstance(max_fds, int) and max_fds > 0
                         else None)

    def details(self, **retry: Any) -> dict[str, Any]:
        return dict(self.request("GET", "details", **retry).json())

    def listeners(self, **retry: Any) -> list[dict[str, Any]]:
        return list(self.request("GET", "listeners", **retry).json())

    def upload_haproxy_config(self, lb_id: str, config: str | bytes, **retry: Any) -> str:
        """Install (after the agent's ``haproxy -c``) the config of ``lb_id``; returns the
        ETag (md5 of the body). A refused config raises AgentRequestError(400) whose
        ``details`` is HAProxy's output."""
        body = config.encode() if isinstance(config, str) else config
        resp = self.request("PUT", f"loadbalancer/{self.amphora_id}/{lb_id}/haproxy",
                            body=body, **retry)
        return resp.headers.get("etag", "").strip('"')

    def get_haproxy_config(self, lb_id: str, **retry: Any) -> str:
        return self.request("GET", f"loadbalancer/{lb_id}/haproxy", **retry).body.decode()

    def running_haproxy_md5(self, lb_id: str, **retry: Any) -> str | None:
        """MD5 of the config the running HAProxy of ``lb_id`` loaded; None when it is
        down or has no config (the installed one may be newer: uploaded, not reloaded)."""
        return self._running_md5(f"loadbalancer/{lb_id}/haproxy", **retry)

    def start(self, lb_id: str, **retry: Any) -> dict[str, Any]:
        return self._action(lb_id, "start", **retry)

    def stop(self, lb_id: str, **retry: Any) -> dict[str, Any]:
        return self._action(lb_id, "stop", **retry)

    def reload(self, lb_id: str, **retry: Any) -> dict[str, Any]:
        return self._action(lb_id, "reload", **retry)

    def delete_listeners(self, lb_id: str, **retry: Any) -> None:
        """Stop the load balancer's HAProxy and remove its files."""
        self.request("DELETE", f"listeners/{lb_id}", **retry)

    def upload_certificate(self, lb_id: str, filename: str, pem: bytes, **retry: Any) -> str:
        resp = self.request("PUT", f"loadbalancer/{lb_id}/certificates/{filename}",
                            body=pem, **retry)
        return resp.headers.get("etag", "").strip('"')

    def certificate_md5(self, lb_id: str, filename: str, **retry: Any) -> str | None:
        """The md5 of a stored certificate file, None when the agent has none."""
        resp = self._get_found(f"loadbalancer/{lb_id}/certificates/{filename}", **retry)
        return None if resp is None else str(resp.json()["md5sum"])

    def ensure_certificate(self, lb_id: str, filename: str, pem: bytes, **retry: Any) -> bool:
        """Upload unless the agent already holds the same bytes; True when uploaded."""
        if self.certificate_md5(lb_id, filename, **retry) == hashlib.md5(pem).hexdigest():
            return False
        self.upload_certificate(lb_id, filename, pem, **retry)
        return True

    def delete_certificate(self, lb_id: str, filename: str, **retry: Any) -> None:
        self.request("DELETE", f"loadbalancer/{lb_id}/certificates/{filename}", **retry)

    def upload_nftables(self, script: str | bytes, **retry: Any) -> str:
        """Apply the amphora's nftables rule set (contract.nftables: its UDP listeners)
        after the agent's ``nft -c``; returns the ETag (md5 of the body). A refused script
        raises AgentRequestError(400) whose ``details`` is nft's output; the rules in
        force stay as they were."""
        body = script.encode() if isinstance(script, str) else script
        return self.request("PUT", "nftables", body=body, **retry).headers.get(
            "etag", "").strip('"')

    def get_nftables(self, **retry: Any) -> str | None:
        """The last script the agent applied, None when it has applied none."""
        resp = self._get_found("nftables", **retry)
        return None if resp is None else resp.body.decode()

    def delete_nftables(self, **retry: Any) -> None:
        """Remove the rule set (nothing applied is fine)."""
        self.request("DELETE", "nftables", **retry)

    def upload_udp_config(self, document: str | bytes, **retry: Any) -> str:
        """Hand the agent the UDP listeners (contract.udp_config): it health checks their
        members and applies the nftables rules for the healthy ones; returns the ETag.
        A document or rules the agent refuses raise AgentRequestError(400)."""
        body = document.encode() if isinstance(document, str) else document
        return self.request("PUT", "udp", body=body, **retry).headers.get(
            "etag", "").strip('"')

    def get_udp_config(self, **retry: Any) -> str | None:
        """The UDP document in force on the agent, None when it has none."""
        resp = self._get_found("udp", **retry)
        return None if resp is None else resp.body.decode()

    def udp_status(self, **retry: Any) -> dict[str, Any]:
        """The UDP pools' statuses from the agent's checks: ``{pool id: {"status",
        "members": {member id: status}}}``, as its heartbeat carries them."""
        return dict(self.request("GET", "udp/status", **retry).json()["pools"])

    def interface_of(self, address: str, **retry: Any) -> str | None:
        """The amphora's interface that holds ``address`` now (a pair's MASTER holds
        the VIP), None when none does."""
        resp = self._get_found(f"interface/{address}", **retry)
        return None if resp is None else str(resp.json()["interface"])

    def plug_vip(self, vip: str, subnet_cidr: str, vrrp_ip: str, **retry: Any) -> str:
        """Put ``vip`` on the interface that holds ``vrrp_ip`` (Octavia's plug/vip);
        the agent's account of it."""
        body = json.dumps({"subnet_cidr": subnet_cidr, "vrrp_ip": vrrp_ip}).encode()
        return str(self.request("POST", f"plug/vip/{vip}", body=body, **retry).json()
                   .get("details", ""))

    def _get_found(self, path: str, **retry: Any) -> Response | None:
        """GET ``path``; None when the agent answers 404 (it holds nothing there)."""
        try:
            return self.request("GET", path, **retry)
        except AgentRequestError as exc:
            if exc.status == 404:
                return None
            raise

    def _action(self, lb_id: str, action: str, **retry: Any) -> dict[str, Any]:
        return dict(self.request("PUT", f"loadbalancer/{lb_id}/{action}", **retry).json())

    # -- keepalived (VRRP) of an ACTIVE_STANDBY amphora --------------------------------

    def upload_vrrp_config(self, config: str | bytes, **retry: Any) -> str:
        """Install keepalived.conf (after the agent's ``keepalived -t``); returns the
        ETag. A refused config raises AgentRequestError(400) with keepalived's output."""
        body = config.encode() if isinstance(config, str) else config
        return self.request("PUT", "vrrp/upload", body=body, **retry).headers.get(
            "etag", "").strip('"')

    def get_vrrp_config(self, **retry: Any) -> str:
        return self.request("GET", "vrrp/upload", **retry).body.decode()

    def running_vrrp_md5(self, **retry: Any) -> str | None:
        """MD5 of the config the running keepalived was started or reloaded with."""
        return self._running_md5("vrrp/upload", **retry)

    def _running_md5(self, path: str, **retry: Any) -> str | None:
        resp = self._get_found(path, **retry)
        return None if resp is None else resp.headers.get(c.RUNNING_ETAG_HEADER.lower())

    def upload_vrrp_check_script(self, script: str | bytes, **retry: Any) -> str:
        """Install the VRRP check script (render.keepalived.render_check_script)."""
        body = script.encode() if isinstance(script, str) else script
        return self.request("PUT", "vrrp/check_script", body=body, **retry).headers.get(
            "etag", "").strip('"')

    def vrrp_start(self, **retry: Any) -> dict[str, Any]:
        """Start keepalived (a running one is reloaded)."""
        return self._vrrp_action("start", **retry)

    def vrrp_reload(self, **retry: Any) -> dict[str, Any]:
        return self._vrrp_action("reload", **retry)

    def vrrp_stop(self, **retry: Any) -> dict[str, Any]:
        """Stop keepalived; it drops the VIPs it holds before it exits."""
        return self._vrrp_action("stop", **retry)

    def _vrrp_action(self, action: str, **retry: Any) -> dict[str, Any]:
        return dict(self.request("PUT", f"vrrp/{action}", **retry).json())

    # -- transport -------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: bytes | None = None,
                prefix: bool = True, max_retries: int | None = None,
                retry_interval: float | None = None) -> Response:
        """One call, retried on connection failures up to ``max_retries`` times
        (default: the client's), waiting at most ``retry_interval`` seconds between."""
        url = f"/{API_VERSION}/{path}" if prefix else path
        retries = self.max_retries if max_retries is None else max_retries
        interval = self.retry_interval if retry_interval is None else retry_interval
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=tenacity.wait_exponential(multiplier=FIRST_WAIT, min=min(FIRST_WAIT, interval),
                                           max=interval),
            retry=tenacity.retry_if_exception_type(_Retry),
            reraise=True)
        try:
            resp = retrying(self._once, method, url, body)
        except _Retry as exc:
            raise AgentUnavailable(
                f"agent of amphora {self.amphora_id} at {self.address}:{self.port} "
                f"unreachable after {retries + 1} attempts: {exc.__cause__ or exc}") from exc
        if resp.status >= 400:
            raise _request_error(resp)
        return resp

    def _once(self, method: str, url: str, body: bytes | None) -> Response:
        # A bare IPv6 address is fine: http.client brackets it in the Host header.
        conn = http.client.HTTPSConnection(self.address, self.port,
                                           context=self.context, timeout=self.conn_timeout)
        try:
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(self.read_timeout)
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/octet-stream"
            conn.request(method, url, body=body, headers=headers)
            raw = conn.getresponse()
            data = raw.read()
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
        except ssl.SSLCertVerificationError as exc:
            # Not the amphora we expect (or not ours at all): waiting will not help.
            raise AgentUnavailable(f"agent certificate of {self.address} rejected: "
                                   f"{exc.verify_message or exc}") from exc
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            raise _Retry(str(exc)) from exc
        except ssl.SSLError as exc:
            # A TLS alert from the agent (e.g. our certificate is not from its CA).
            raise AgentUnavailable(f"TLS with agent {self.address} failed: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            LOG.debug("agent %s not reachable yet: %s", self.address, exc)
            raise _Retry(str(exc)) from exc
        finally:
            conn.close()


def _request_error(resp: Response) -> AgentRequestError:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        return AgentRequestError(resp.status, str(data.get("message", "")),
                                 data.get("details", ""))
    return AgentRequestError(resp.status, resp.body.decode(errors="replace")[:500])


def _haproxy_amphora() -> Any:
    try:
        from amphorae.common.config import CONF

        return CONF.haproxy_amphora
    except Exception:  # config not loadable here: use the built-in defaults
        return None


def _pick(value: float | None, conf: Any, name: str, default: float) -> Any:
    if value is not None:
        return value
    configured = getattr(conf, name, None) if conf is not None else None
    return default if configured is None else configured
