"""/v2/lbaas/pools: create, show, list, update and delete.

``build`` holds the semantic validation and is shared with the single-call graph create
(api/v2/graph.py), where the load balancer and the listener may not be flushed yet.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

import falcon
from pydantic import AfterValidator, Field, StrictBool
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from amphorae.api import body, certificates, listing, policy
from amphorae.api import types as t
from amphorae.api.context import RequestContext
from amphorae.api.v2 import common, validators
from amphorae.api.v2 import listeners as lst
from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.contract import pool_tags
from amphorae.db import engine as db
from amphorae.db import models as m

RESOURCE = "pool"
NAME = "Pool"
REF_FIELDS = ("tls_container_ref", "ca_tls_container_ref", "crl_container_ref")

_COOKIE_NAME = re.compile(r"^[^\s,;\\]+$")
# Octavia's further restriction: no separators or controls (RFC 6265 token characters).
_BAD_COOKIE_CHARS = re.compile(r"[\x00-\x20\x22\x28-\x29\x2c\x2f\x3a-\x40\x5b-\x5d\x7b\x7d\x7f]")


def _cookie_name(value: str) -> str:
    if not _COOKIE_NAME.match(value):
        raise ValueError("Value should match the pattern ^[^\\s,;\\\\]+$")
    return value


def _ipv4_mask(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError("Value should be an IPv4 address (mask) format") from None


PoolProtocol = Annotated[t.enum(*c.POOL_PROTOCOLS), AfterValidator(validators.not_sctp)]
Algorithm = t.enum(*c.LB_ALGORITHMS)
SPType = t.enum(*c.SESSION_PERSISTENCE_TYPES)
CookieName = Annotated[t.StrictStr, Field(max_length=255), AfterValidator(_cookie_name)]
PersistenceTimeout = validators.Int32
Granularity = Annotated[t.StrictStr, Field(max_length=64), AfterValidator(_ipv4_mask)]


class SessionPersistenceIn(t.Schema):
    type: SPType
    cookie_name: CookieName | None = None
    persistence_timeout: PersistenceTimeout | None = None
    persistence_granularity: Granularity | None = None


class SessionPersistenceUpdate(SessionPersistenceIn):
    # On update a persistence without a type keeps the pool's current type.
    type: SPType | None = None  # type: ignore[assignment]


class _Fields(t.Schema):
    name: t.Name | None = None
    description: t.Description | None = None
    admin_state_up: t.AdminState = True
    tags: t.Tags | None = None
    tls_enabled: StrictBool | None = None
    tls_container_ref: t.ContainerRef | None = None
    ca_tls_container_ref: t.ContainerRef | None = None
    crl_container_ref: t.ContainerRef | None = None
    tls_ciphers: validators.Ciphers | None = None
    tls_versions: list[t.TLSVersion] | None = None
    alpn_protocols: list[t.ALPN] | None = None


class Create(_Fields):
    # One of the two is required on POST /pools (checked by the controller); graph pools
    # have neither.
    loadbalancer_id: t.UUID | None = None
    listener_id: t.UUID | None = None
    protocol: PoolProtocol
    lb_algorithm: Algorithm
    session_persistence: SessionPersistenceIn | None = None
    # Accepted for compatibility; a pool always belongs to its load balancer's project.
    project_id: t.ProjectId | None = None
    tenant_id: t.ProjectId | None = None


class Update(_Fields):
    lb_algorithm: Algorithm | None = None
    session_persistence: SessionPersistenceUpdate | None = None


_HM_ID = (select(m.HealthMonitor.id).where(m.HealthMonitor.pool_id == m.Pool.id)
          .correlate(m.Pool).scalar_subquery())

COLLECTION = listing.Collection(
    model=m.Pool, key="pools", links_key="pools_links",
    columns={
        "id": m.Pool.id, "name": m.Pool.name, "description": m.Pool.description,
        "project_id": m.Pool.project_id,
        "provisioning_status": m.Pool.provisioning_status,
        "operating_status": m.Pool.operating_status,
        "admin_state_up": m.Pool.enabled, "enabled": m.Pool.enabled,
        "protocol": m.Pool.protocol, "lb_algorithm": m.Pool.lb_algorithm,
        "loadbalancer_id": m.Pool.load_balancer_id,
        "load_balancer_id": m.Pool.load_balancer_id,
        "healthmonitor_id": _HM_ID,
        "tls_enabled": m.Pool.tls_enabled, "tls_ciphers": m.Pool.tls_ciphers,
        "tls_container_ref": m.Pool.tls_certificate_id,
        "tls_certificate_id": m.Pool.tls_certificate_id,
        "ca_tls_container_ref": m.Pool.ca_tls_certificate_id,
        "ca_tls_certificate_id": m.Pool.ca_tls_certificate_id,
        "crl_container_ref": m.Pool.crl_container_id,
        "crl_container_id": m.Pool.crl_container_id,
        "created_at": m.Pool.created_at, "updated_at": m.Pool.updated_at,
    },
    extra_params=frozenset({"project_id"}),
)

# Child ids only, without pulling the children's own eager relationships.
LOAD_OPTIONS = (
    selectinload(m.Pool.members).load_only(m.Member.id).lazyload("*"),
    selectinload(m.Pool.health_monitor).load_only(m.HealthMonitor.id).lazyload("*"),
    selectinload(m.Pool.listeners_as_default).load_only(m.Listener.id).lazyload("*"),
    selectinload(m.Pool.l7policies_redirecting)
    .load_only(m.L7Policy.id, m.L7Policy.listener_id, m.L7Policy.enabled).lazyload("*"),
    selectinload(m.Pool.l7policies_redirecting).selectinload(m.L7Policy.rules)
    .load_only(m.L7Rule.id).lazyload("*"),
)


def listener_ids(pool: m.Pool) -> list[str]:
    """Listeners sending traffic to the pool: by default or through an enabled L7 policy
    that has at least one rule."""
    ids = [x.id for x in pool.listeners_as_default]
    ids += [p.listener_id for p in pool.l7policies_redirecting if p.enabled and p.rules]
    return list(dict.fromkeys(ids))


def _sp_view(sp: m.SessionPersistence | None) -> dict[str, Any] | None:
    if sp is None:
        return None
    return {"type": sp.type, "cookie_name": sp.cookie_name,
            "persistence_timeout": sp.persistence_timeout,
            "persistence_granularity": sp.persistence_granularity}


def view(pool: m.Pool) -> dict[str, Any]:
    out = common.base_view(pool)
    out.update(
        protocol=pool.protocol,
        lb_algorithm=pool.lb_algorithm,
        session_persistence=_sp_view(pool.session_persistence),
        loadbalancers=[{"id": pool.load_balancer_id}],
        listeners=[{"id": x} for x in listener_ids(pool)],
        members=common.ids(pool.members),
        tls_container_ref=pool.tls_certificate_id,
        ca_tls_container_ref=pool.ca_tls_certificate_id,
        crl_container_ref=pool.crl_container_id,
        tls_enabled=bool(pool.tls_enabled),
        tls_ciphers=pool.tls_ciphers,
        tls_versions=pool.tls_versions,
        alpn_protocols=pool.alpn_protocols,
    )
    # Octavia leaves the key out altogether while the pool has no health monitor.
    if pool.health_monitor is not None:
        out["healthmonitor_id"] = pool.health_monitor.id
    return out


# --- validation -----------------------------------------------------------------------


def _check_session_persistence(protocol: str, sp: dict[str, Any] | None) -> None:
    if not sp:
        return
    sp_type = sp.get("type")
    if protocol in c.LVS_PROTOCOLS:
        if sp_type in ("HTTP_COOKIE", "APP_COOKIE"):
            raise errors.ValidationError(
                detail=f"Session persistence of type {sp_type} is not supported for "
                       f"{protocol} protocol pools.")
        if sp.get("cookie_name"):
            raise errors.ValidationError(
                detail=f"Cookie names are not supported for {protocol} pools.")
    elif sp.get("persistence_timeout") is not None or sp.get("persistence_granularity"):
        raise errors.ValidationError(
            detail="persistence_timeout and persistence_granularity is only for UDP "
                   "protocol pools.")
    if sp_type is None:
        raise errors.InvalidInput(field="session_persistence.type", value="None",
                                  reason="Mandatory field missing.")
    cookie = sp.get("cookie_name")
    if cookie:
        if sp_type != "APP_COOKIE":
            raise errors.ValidationError(
                detail='Field "cookie_name" can only be specified with session persistence '
                       'of type "APP_COOKIE".')
        if _BAD_COOKIE_CHARS.search(cookie):
            raise errors.ValidationError(detail='Supplied "cookie_name" is invalid.')
    if sp_type == "APP_COOKIE" and not cookie:
        raise errors.ValidationError(
            detail='Field "cookie_name" must be specified when using the "APP_COOKIE" '
                   'session persistence type.')


def _check_tags(tags: list[str] | None) -> None:
    """The ``amphorae:`` tags carry draining and slow start (contract.pool_tags)."""
    try:
        pool_tags.parse(tags)
    except pool_tags.BadTag as exc:
        raise errors.InvalidInput(field="tags", value=exc.tag, reason=exc.reason) from None


def _apply_tls_defaults(pool: m.Pool) -> None:
    if not pool.tls_enabled:
        return
    api = config.CONF.api_settings
    if not pool.tls_ciphers:
        pool.tls_ciphers = api.default_pool_ciphers
    if not pool.tls_versions:
        pool.tls_versions = list(api.default_pool_tls_versions)
    if not pool.alpn_protocols:
        pool.alpn_protocols = list(api.default_pool_alpn_protocols)


def _check_listener(listener: m.Listener, protocol: str) -> None:
    # What is wrong with the pool itself (a 400) before the listener being taken (409).
    validators.check_pool_protocol(listener.protocol, protocol)
    if listener.default_pool_id or listener.default_pool is not None:
        raise errors.Conflict("This listener already has a default pool")


def build(session: Session, ctx: RequestContext | None, lb: m.LoadBalancer, data: Create,
          listener: m.Listener | None = None) -> m.Pool:
    """Validate ``data`` and add a new PENDING_CREATE pool of ``lb`` to the session; with
    ``listener`` (flushed or not) the pool becomes that listener's default pool.

    Does not lock the load balancer, check quotas or enqueue a job.
    """
    sp = data.session_persistence.model_dump() if data.session_persistence else None
    _check_session_persistence(data.protocol, sp)
    _check_tags(data.tags)
    if data.crl_container_ref and not data.ca_tls_container_ref:
        raise errors.ValidationError(
            detail="A CA certificate reference is required to specify a revocation list.")
    certificates.check({field: getattr(data, field) for field in REF_FIELDS}, ctx)
    validators.check_tls_params(data.tls_ciphers, data.tls_versions, data.alpn_protocols,
                                data.model_fields_set)
    if listener is not None:
        _check_listener(listener, data.protocol)
    with session.no_autoflush:
        pool = m.Pool(
            id=m.new_id(), project_id=lb.project_id, name=data.name,
            description=data.description, enabled=data.admin_state_up,
            protocol=data.protocol, lb_algorithm=data.lb_algorithm,
            tls_enabled=bool(data.tls_enabled), tls_certificate_id=data.tls_container_ref,
            ca_tls_certificate_id=data.ca_tls_container_ref,
            crl_container_id=data.crl_container_ref, tls_ciphers=data.tls_ciphers,
            tls_versions=data.tls_versions, alpn_protocols=data.alpn_protocols,
            provisioning_status=c.PENDING_CREATE, operating_status=c.OFFLINE,
        )
        pool.tags = data.tags
        if sp is not None:
            pool.session_persistence = m.SessionPersistence(pool_id=pool.id, **sp)
        _apply_tls_defaults(pool)
        pool.load_balancer_id = lb.id
        pool.load_balancer = lb
        session.add(pool)
        if listener is not None:
            listener.default_pool = pool
    return pool


# --- update ---------------------------------------------------------------------------


def _merged_sp(pool: m.Pool, given: dict[str, Any]) -> dict[str, Any] | None:
    """The persistence the pool will have: a given object is merged into the current one
    (keeping its type when none is sent); a type change drops a cookie name not re-sent."""
    current = _sp_view(pool.session_persistence) or {}
    sent = given or {}
    merged = {**current, **sent}
    if merged.get("type") is None:
        merged["type"] = current.get("type")
    if "cookie_name" not in sent and merged.get("type") != "APP_COOKIE":
        merged["cookie_name"] = None
    return merged


def _apply_update(pool: m.Pool, data: Update, ctx: RequestContext) -> None:
    given = data.given()
    if "lb_algorithm" in given and data.lb_algorithm is None:
        raise errors.InvalidInput(field="lb_algorithm", value="None",
                                  reason="Mandatory field missing.")
    sp: dict[str, Any] | None = None
    if "session_persistence" in given and data.session_persistence is not None:
        sp = _merged_sp(pool, data.session_persistence.model_dump(exclude_unset=True))
        _check_session_persistence(pool.protocol, sp)
    validators.check_tls_params(data.tls_ciphers, data.tls_versions, data.alpn_protocols, given)
    had_ca = bool(pool.ca_tls_certificate_id)
    simple = {
        "name": ("name", None), "description": ("description", None),
        "admin_state_up": ("enabled", None), "lb_algorithm": ("lb_algorithm", None),
        "tls_enabled": ("tls_enabled", False),
        "tls_container_ref": ("tls_certificate_id", None),
        "ca_tls_container_ref": ("ca_tls_certificate_id", None),
        "crl_container_ref": ("crl_container_id", None),
        "tls_ciphers": ("tls_ciphers", None), "tls_versions": ("tls_versions", None),
        "alpn_protocols": ("alpn_protocols", None),
    }
    for field, (column, default) in simple.items():
        if field in given:
            setattr(pool, column, default if given[field] is None else given[field])
    if "tags" in given:
        _check_tags(data.tags)
        pool.tags = data.tags
    if pool.crl_container_id and not pool.ca_tls_certificate_id:
        if had_ca and "ca_tls_container_ref" in given:
            raise errors.ValidationError(
                detail="A CA reference cannot be removed when a certificate revocation list "
                       "is present.")
        raise errors.ValidationError(
            detail="A CA reference is required to specify a certificate revocation list.")
    certificates.check({field: given.get(field) for field in REF_FIELDS}, ctx)
    if "session_persistence" in given:
        if sp is None:
            pool.session_persistence = None
        elif pool.session_persistence is None:
            pool.session_persistence = m.SessionPersistence(pool_id=pool.id, **sp)
        else:
            for key, value in sp.items():
                setattr(pool.session_persistence, key, value)
    _apply_tls_defaults(pool)


# --- controllers ----------------------------------------------------------------------


def load(session: Session, pool_id: str) -> m.Pool:
    pool = session.scalars(select(m.Pool).where(m.Pool.id == pool_id)
                           .options(*LOAD_OPTIONS)).first()
    if pool is None:
        raise errors.NotFound(resource=NAME, id=pool_id)
    return pool


def load_authorized(req: falcon.Request, session: Session, pool_id: str,
                    action: str) -> m.Pool:
    return common.authorized(req, RESOURCE, action, load(session, pool_id))


def _affected_listeners(session: Session, pool: m.Pool) -> list[m.Listener]:
    ids = listener_ids(pool)
    if not ids:
        return []
    return list(session.scalars(select(m.Listener).where(m.Listener.id.in_(ids))
                                .options(*lst.LOAD_OPTIONS)))


def _create(session: Session, req: falcon.Request, data: Create) -> m.Pool:
    ctx = common.context(req)
    listener = None
    lb_id = data.loadbalancer_id
    if data.listener_id:
        listener = session.get(m.Listener, data.listener_id)
        if listener is None:
            raise errors.NotFound(resource=lst.NAME, id=data.listener_id)
        if lb_id and listener.load_balancer_id != lb_id:
            raise errors.ValidationError(
                detail=f"Listener {listener.id} is not on load balancer {lb_id}.")
        lb_id = listener.load_balancer_id
    if not lb_id:
        raise errors.ValidationError(
            detail="Must provide at least one of: loadbalancer_id, listener_id")
    project = common.lb_project(session, lb_id)
    policy.authorize(ctx, RESOURCE, "post", project)
    lb = common.lock_load_balancer(session, lb_id)
    if listener is not None:
        common.mark_pending_update(listener)
    pool = build(session, ctx, lb, data, listener)
    common.check_quota(session, lb.project_id or "", {"pool": 1})
    common.enqueue(session, lb.id)
    return pool


class Pools:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        common.serve_project_list(req, resp, RESOURCE, COLLECTION, m.Pool.project_id, view,
                                  select(m.Pool).options(*LOAD_OPTIONS))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body.parse(req, RESOURCE, Create)
        with db.transaction() as session:
            pool = _create(session, req, data)
            session.flush()
            session.expire(pool, ["listeners_as_default"])
            out = view(pool)
        common.send(resp, {RESOURCE: out}, 201)


class Pool:
    def on_get(self, req: falcon.Request, resp: falcon.Response, pool_id: str) -> None:
        with db.session() as session:
            pool = load_authorized(req, session, pool_id, "get_one")
            common.send_one(resp, req, RESOURCE, view(pool))

    def on_put(self, req: falcon.Request, resp: falcon.Response, pool_id: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        with db.transaction() as session:
            pool = load_authorized(req, session, pool_id, "put")
            lb = common.lock_load_balancer(session, pool.load_balancer_id)
            with session.no_autoflush:
                _apply_update(pool, data, common.context(req))
            common.mark_pending_update(*_affected_listeners(session, pool))
            out = common.finish_update(session, pool, view, lb.id)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, pool_id: str) -> None:
        with db.transaction() as session:
            pool = load_authorized(req, session, pool_id, "delete")
            if pool.l7policies_redirecting:
                policy = min(pool.l7policies_redirecting, key=lambda p: p.id)
                raise errors.Conflict(f"Pool {pool.id} is in use by L7 policy {policy.id}")
            common.lock_load_balancer(session, pool.load_balancer_id)
            common.mark_pending_update(*_affected_listeners(session, pool))
            common.finish_delete(session, pool, pool.load_balancer_id)
        resp.status = 204


ROUTES = [
    ("/pools", Pools()),
    ("/pools/{pool_id}", Pool()),
]
