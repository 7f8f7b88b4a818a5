"""/v2/lbaas/healthmonitors: create, show, list, update and delete a pool's monitor."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import falcon
from sqlalchemy.orm import Session

from amphorae.api import body, listing, policy
from amphorae.api import types as t
from amphorae.api.context import RequestContext
from amphorae.api.v2 import common
from amphorae.api.v2.members import load_pool, lock_pool_tree
from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.db import engine as db
from amphorae.db import models as m

RESOURCE = "healthmonitor"
NAME = "Health Monitor"

UDP_CONNECT = "UDP-CONNECT"
HTTP_FIELDS = ("http_method", "url_path", "expected_codes")
HTTP_DEFAULTS = {"http_method": "GET", "url_path": "/", "expected_codes": "200"}
DEFAULT_MAX_RETRIES_DOWN = 3
HTTP_VERSIONS = (1.0, 1.1)
MAX_INT = 2147483647

_EXPECTED_CODES = re.compile(r"[0-9]{3}([ \t]*,[ \t]*[0-9]{3})*|[0-9]{3}-[0-9]{3}")
# Octavia's DOMAIN_NAME_REGEX: dot-separated labels of letters, digits, '-' and '_'.
_DOMAIN_NAME = re.compile(
    r"^(?=.{1,253}\.?$)(?:(?!-|[^.]+_)[A-Za-z0-9-_]{1,63}(?<!-)(?:\.|$))+$")
# Characters a URI may carry (RFC 3986); whitespace and quotes would break the config.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


def _expected_codes(value: str) -> str:
    if not _EXPECTED_CODES.fullmatch(value):
        raise ValueError("Value should be a status code (NNN), a comma separated list of "
                         "them (NNN,NNN) or a range (NNN-NNN)")
    return value


def _url_path(value: str) -> str:
    parts = urllib.parse.urlsplit(value) if _URI_CHARS.fullmatch(value) else None
    if (parts is None or parts.scheme or parts.netloc or not parts.path.startswith("/")):
        raise ValueError(f"Not a valid URLPath: {value}")
    return value


def _domain_name(value: str) -> str:
    if not _DOMAIN_NAME.match(value) or "\n" in value:
        raise ValueError("Value should be a valid domain name")
    return value


def _http_version(value: Any) -> float:
    # A JSON number, 1.0 or 1.1 (1 counts as 1.0).
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            float(value) not in HTTP_VERSIONS:
        raise ValueError("Value should be one of: 1.0, 1.1")
    return float(value)


Delay = t.Annotated[t.IntLike, t.Field(ge=0, le=MAX_INT)]
Retries = t.Annotated[t.IntLike, t.Field(ge=c.MIN_HM_RETRIES, le=c.MAX_HM_RETRIES)]
HttpMethod = t.enum(*c.HM_HTTP_METHODS)
UrlPath = t.Annotated[t.StrictStr, t.Field(min_length=1, max_length=2048),
                      t.AfterValidator(_url_path)]
ExpectedCodes = t.Annotated[t.StrictStr, t.Field(max_length=64),
                            t.AfterValidator(_expected_codes)]
HttpVersion = t.Annotated[Any, t.AfterValidator(_http_version)]
DomainName = t.Annotated[t.StrictStr, t.Field(min_length=1, max_length=255),
                         t.AfterValidator(_domain_name)]


class _Options(t.Schema):
    """The fields a monitor takes alike on create and on update.

    It is the first base of SingleCreate and Update: pydantic puts the fields of the last
    base first, so these stay last, and the first bad field a 400 names stays the same.
    """

    http_method: HttpMethod | None = None
    url_path: UrlPath | None = None
    expected_codes: ExpectedCodes | None = None
    admin_state_up: t.AdminState = True
    tags: t.Tags | None = None
    http_version: HttpVersion | None = None
    domain_name: DomainName | None = None


class _CreateChecks(t.Schema):
    name: t.Name | None = None
    type: t.enum(*c.HM_TYPES)
    delay: Delay
    timeout: Delay
    max_retries: Retries
    max_retries_down: Retries | None = DEFAULT_MAX_RETRIES_DOWN


class _UpdateChecks(t.Schema):
    name: t.Name | None = None
    delay: Delay | None = None
    timeout: Delay | None = None
    max_retries: Retries | None = None
    max_retries_down: Retries | None = None


class SingleCreate(_Options, _CreateChecks):
    """A monitor as the fully populated load balancer create nests it in a pool."""


class Create(SingleCreate):
    pool_id: t.UUID
    # Accepted for compatibility; a monitor always belongs to its load balancer's project.
    project_id: t.ProjectId | None = None
    tenant_id: t.ProjectId | None = None


class Update(_Options, _UpdateChecks):
    pass


HM = m.HealthMonitor
COLLECTION = listing.Collection(
    model=HM, key="healthmonitors", links_key="healthmonitors_links",
    columns={
        "id": HM.id, "name": HM.name, "project_id": HM.project_id, "pool_id": HM.pool_id,
        "type": HM.type, "delay": HM.delay, "timeout": HM.timeout,
        "max_retries": HM.rise_threshold, "max_retries_down": HM.fall_threshold,
        "http_method": HM.http_method, "url_path": HM.url_path,
        "expected_codes": HM.expected_codes, "http_version": HM.http_version,
        "domain_name": HM.domain_name, "admin_state_up": HM.enabled,
        "provisioning_status": HM.provisioning_status,
        "operating_status": HM.operating_status,
        "created_at": HM.created_at, "updated_at": HM.updated_at,
    },
    extra_params=frozenset({"project_id"}),
)


def view(hm: m.HealthMonitor) -> dict[str, Any]:
    base = common.base_view(hm)
    return {
        "id": hm.id, "name": base["name"], "type": hm.type, "delay": hm.delay,
        "timeout": hm.timeout, "max_retries": hm.rise_threshold,
        "max_retries_down": hm.fall_threshold, "http_method": hm.http_method,
        "url_path": hm.url_path, "expected_codes": hm.expected_codes,
        "admin_state_up": hm.enabled, "project_id": hm.project_id,
        "pools": [{"id": hm.pool_id or hm.pool.id}],
        "provisioning_status": hm.provisioning_status,
        "operating_status": hm.operating_status,
        "created_at": base["created_at"], "updated_at": base["updated_at"],
        "tags": hm.tags,
        "http_version": hm.http_version, "domain_name": hm.domain_name,
        "tenant_id": hm.project_id,
    }


# --- validation -----------------------------------------------------------------------


def check_type(pool_protocol: str, hm_type: str, delay: int | None) -> None:
    """Octavia's rules binding the monitor type to the pool protocol (reference 2.2)."""
    api = config.CONF.api_settings
    if hm_type == "PING" and not api.allow_ping_health_monitors:
        raise errors.DisabledOption(option="type", value="PING")
    if pool_protocol in c.LVS_PROTOCOLS:
        allowed = c.HM_TYPES_FOR_POOL[pool_protocol]
        if hm_type not in allowed:
            raise errors.ValidationError(
                detail=f"The associated pool protocol is {pool_protocol}, so only a "
                       f"{'/'.join(allowed)} health monitor is supported.")
        _check_udp_delay(hm_type, delay)
    elif hm_type in (UDP_CONNECT, c.SCTP):
        raise errors.ValidationError(
            detail=f"The {hm_type} type is only supported for pools of type "
                   f"{'/'.join(c.LVS_PROTOCOLS)}.")


def _check_udp_delay(hm_type: str, delay: int | None) -> None:
    minimum = config.CONF.api_settings.udp_connect_min_interval_health_monitor
    if hm_type == UDP_CONNECT and delay is not None and minimum >= 0 and delay < minimum:
        raise errors.ValidationError(
            detail=f"The request delay value {delay} should be larger than {minimum} "
                   f"for {UDP_CONNECT} health monitor type.")


def _check_domain(http_version: float | None, domain_name: str | None) -> None:
    if not domain_name:
        return
    if http_version is None:
        raise errors.ValidationError(
            detail="health monitors domain_name requires http_version.")
    if http_version < 1.1:
        raise errors.InvalidOption(
            value=f"http_version {http_version}",
            option="health monitors HTTP 1.1 domain name health check")


def _refuse_http_fields(hm_type: str, fields: Any) -> None:
    for name in HTTP_FIELDS:
        if name in fields:
            raise errors.InvalidOption(value=name, option=f"health monitors of type {hm_type}")


def build(session: Session, ctx: RequestContext | None, pool: m.Pool,
          data: SingleCreate) -> m.HealthMonitor:
    """Validate a monitor for ``pool`` and add it to the session (PENDING_CREATE/OFFLINE).

    The pool's ``health_monitor`` is set at once, so members built afterwards in the same
    request start OFFLINE. No locking, quota or job here (the callers do that).
    """
    del ctx  # the callers authorize
    check_type(pool.protocol, data.type, data.delay)
    is_http = data.type in c.HM_HTTP_TYPES
    if not is_http:
        _refuse_http_fields(data.type, [f for f in HTTP_FIELDS if getattr(data, f)])
    _check_domain(data.http_version, data.domain_name)
    with session.no_autoflush:
        if pool.health_monitor is not None:
            raise errors.Conflict("This pool already has a health monitor")
        http = {f: (getattr(data, f) or HTTP_DEFAULTS[f]) if is_http else None
                for f in HTTP_FIELDS}
        hm = m.HealthMonitor(
            id=m.new_id(), project_id=pool.project_id, name=data.name, type=data.type,
            delay=data.delay, timeout=data.timeout, rise_threshold=data.max_retries,
            fall_threshold=(DEFAULT_MAX_RETRIES_DOWN if data.max_retries_down is None
                            else data.max_retries_down),
            http_version=data.http_version, domain_name=data.domain_name,
            enabled=data.admin_state_up, provisioning_status=c.PENDING_CREATE,
            operating_status=c.OFFLINE, **http,
        )
        hm.tags = data.tags
        pool.health_monitor = hm
        session.add(hm)
    return hm


# --- controllers ----------------------------------------------------------------------


def _authorized(req: falcon.Request, session: Session, hm_id: str,
                action: str) -> m.HealthMonitor:
    hm = common.find(session, HM, hm_id, NAME)
    return common.authorized(req, RESOURCE, action, hm)


class HealthMonitors:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        common.serve_project_list(req, resp, RESOURCE, COLLECTION, HM.project_id, view)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body.parse(req, RESOURCE, Create)
        ctx = common.context(req)
        with db.transaction() as session:
            pool = load_pool(session, data.pool_id)
            policy.authorize(ctx, RESOURCE, "post", pool.project_id)
            # Input checks first, so bad input is a 400 whatever the load balancer's state.
            check_type(pool.protocol, data.type, data.delay)
            lock_pool_tree(session, pool)
            hm = build(session, ctx, pool, data)
            out = common.finish_create(session, hm, view, pool.load_balancer_id,
                                       pool.project_id, {"health_monitor": 1})
        common.send(resp, {RESOURCE: out}, 201)


def _apply_update(hm: m.HealthMonitor, pool: m.Pool, data: Update,
                  given: dict[str, Any]) -> None:
    for name in ("delay", "timeout", "max_retries"):
        if name in given and given[name] is None:
            raise errors.InvalidOption(value="None", option=name)
    is_http = hm.type in c.HM_HTTP_TYPES
    if not is_http:
        _refuse_http_fields(hm.type, given)
    if pool.protocol in c.LVS_PROTOCOLS and "delay" in given:
        _check_udp_delay(hm.type, data.delay)
    version = given.get("http_version", hm.http_version)
    domain = given.get("domain_name", hm.domain_name)
    _check_domain(version, domain)
    common.set_given(hm, given, {
        "name": "name", "delay": "delay", "timeout": "timeout", "max_retries": "rise_threshold",
        "admin_state_up": "enabled", "http_version": "http_version",
        "domain_name": "domain_name", "tags": "tags"})
    if "max_retries_down" in given:
        hm.fall_threshold = given["max_retries_down"] or DEFAULT_MAX_RETRIES_DOWN
    for name in HTTP_FIELDS:
        if name in given:
            setattr(hm, name, given[name] or HTTP_DEFAULTS[name])


class HealthMonitor:
    def on_get(self, req: falcon.Request, resp: falcon.Response, hm_id: str) -> None:
        with db.session() as session:
            hm = _authorized(req, session, hm_id, "get_one")
            common.send_one(resp, req, RESOURCE, view(hm))

    def on_put(self, req: falcon.Request, resp: falcon.Response, hm_id: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        given = data.given()
        with db.transaction() as session:
            hm = _authorized(req, session, hm_id, "put")
            pool = hm.pool
            _apply_update(hm, pool, data, given)
            lock_pool_tree(session, pool)
            out = common.finish_update(session, hm, view, pool.load_balancer_id)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, hm_id: str) -> None:
        with db.transaction() as session:
            hm = _authorized(req, session, hm_id, "delete")
            lock_pool_tree(session, hm.pool)
            common.finish_delete(session, hm, hm.pool.load_balancer_id)
        resp.status = 204


ROUTES = [
    ("/healthmonitors", HealthMonitors()),
    ("/healthmonitors/{hm_id}", HealthMonitor()),
]
