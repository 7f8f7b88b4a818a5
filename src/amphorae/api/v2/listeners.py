"""/v2/lbaas/listeners: create, show, list, update, delete and per-listener stats.

``build`` holds the semantic validation and is shared with the single-call graph create
(api/v2/graph.py), where the load balancer and its other children are not flushed yet.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

import falcon
from pydantic import AfterValidator, Field, StrictBool
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from amphorae.api import body, certificates, listing, policy
from amphorae.api import types as t
from amphorae.api.context import RequestContext
from amphorae.api.v2 import common, stats, validators
from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.db import engine as db
from amphorae.db import models as m

RESOURCE = "listener"
NAME = "Listener"
# HAProxy's peers section: the first listener of a load balancer gets this port.
BASE_PEER_PORT = 1025

ListenerProtocol = Annotated[t.enum(*c.LISTENER_PROTOCOLS), AfterValidator(validators.not_sctp)]
# Integers as WSME reads them: octaviaclient sends connection_limit as a string.
ConnectionLimit = Annotated[t.IntLike, Field(ge=c.MIN_CONNECTION_LIMIT,
                                             le=validators.MAX_INT32)]
ClientAuth = t.enum(*c.CLIENT_AUTH_MODES)
HeaderValue = Annotated[t.StrictStr, Field(max_length=255)]


class _Fields(t.Schema):
    """Fields a listener accepts both on create and on update."""

    name: t.Name | None = None
    description: t.Description | None = None
    admin_state_up: t.AdminState = True
    connection_limit: ConnectionLimit | None = None
    default_pool_id: t.UUID | None = None
    default_tls_container_ref: t.ContainerRef | None = None
    sni_container_refs: list[t.ContainerRef] | None = None
    client_ca_tls_container_ref: t.ContainerRef | None = None
    client_authentication: ClientAuth | None = None
    client_crl_container_ref: t.ContainerRef | None = None
    insert_headers: dict[t.StrictStr, HeaderValue] | None = None
    timeout_client_data: t.Timeout | None = None
    timeout_member_connect: t.Timeout | None = None
    timeout_member_data: t.Timeout | None = None
    timeout_tcp_inspect: t.Timeout | None = None
    allowed_cidrs: list[t.CIDR] | None = None
    tls_ciphers: validators.Ciphers | None = None
    tls_versions: list[t.TLSVersion] | None = None
    alpn_protocols: list[t.ALPN] | None = None
    hsts_max_age: validators.Int32 | None = None
    hsts_include_subdomains: StrictBool | None = None
    hsts_preload: StrictBool | None = None
    tags: t.Tags | None = None


class Create(_Fields):
    # Required on POST /listeners (checked by the controller); graph listeners have none.
    loadbalancer_id: t.UUID | None = None
    protocol: ListenerProtocol
    protocol_port: t.Port
    # Accepted for compatibility; a listener always belongs to its load balancer's project.
    project_id: t.ProjectId | None = None
    tenant_id: t.ProjectId | None = None


class Update(_Fields):
    pass


COLLECTION = listing.Collection(
    model=m.Listener, key="listeners", links_key="listeners_links",
    columns={
        "id": m.Listener.id, "name": m.Listener.name, "description": m.Listener.description,
        "project_id": m.Listener.project_id,
        "provisioning_status": m.Listener.provisioning_status,
        "operating_status": m.Listener.operating_status,
        "admin_state_up": m.Listener.enabled, "enabled": m.Listener.enabled,
        "protocol": m.Listener.protocol, "protocol_port": m.Listener.protocol_port,
        "connection_limit": m.Listener.connection_limit,
        "default_pool_id": m.Listener.default_pool_id,
        "loadbalancer_id": m.Listener.load_balancer_id,
        "load_balancer_id": m.Listener.load_balancer_id,
        "default_tls_container_ref": m.Listener.tls_certificate_id,
        "tls_certificate_id": m.Listener.tls_certificate_id,
        "client_ca_tls_container_ref": m.Listener.client_ca_tls_certificate_id,
        "client_ca_tls_certificate_id": m.Listener.client_ca_tls_certificate_id,
        "client_authentication": m.Listener.client_authentication,
        "client_crl_container_ref": m.Listener.client_crl_container_id,
        "client_crl_container_id": m.Listener.client_crl_container_id,
        "peer_port": m.Listener.peer_port,
        "timeout_client_data": m.Listener.timeout_client_data,
        "timeout_member_connect": m.Listener.timeout_member_connect,
        "timeout_member_data": m.Listener.timeout_member_data,
        "timeout_tcp_inspect": m.Listener.timeout_tcp_inspect,
        "tls_ciphers": m.Listener.tls_ciphers,
        "hsts_max_age": m.Listener.hsts_max_age,
        "hsts_include_subdomains": m.Listener.hsts_include_subdomains,
        "hsts_preload": m.Listener.hsts_preload,
        "created_at": m.Listener.created_at, "updated_at": m.Listener.updated_at,
    },
    extra_params=frozenset({"project_id"}),
)

# Child ids only, without pulling the children's own eager relationships.
LOAD_OPTIONS = (
    selectinload(m.Listener.l7policies).load_only(m.L7Policy.id).lazyload("*"),
)


def view(listener: m.Listener) -> dict[str, Any]:
    out = common.base_view(listener)
    cidrs = sorted(x.cidr for x in listener.allowed_cidrs)
    out.update(
        protocol=listener.protocol,
        protocol_port=listener.protocol_port,
        connection_limit=listener.connection_limit,
        default_tls_container_ref=listener.tls_certificate_id,
        sni_container_refs=[s.tls_container_id for s in
                            sorted(listener.sni_containers, key=lambda s: s.position)],
        default_pool_id=listener.default_pool_id,
        l7policies=common.ids(listener.l7policies),
        insert_headers=listener.insert_headers or {},
        loadbalancers=[{"id": listener.load_balancer_id}],
        timeout_client_data=listener.timeout_client_data,
        timeout_member_connect=listener.timeout_member_connect,
        timeout_member_data=listener.timeout_member_data,
        timeout_tcp_inspect=listener.timeout_tcp_inspect,
        client_ca_tls_container_ref=listener.client_ca_tls_certificate_id,
        client_authentication=listener.client_authentication,
        client_crl_container_ref=listener.client_crl_container_id,
        allowed_cidrs=cidrs or None,
        tls_ciphers=listener.tls_ciphers,
        tls_versions=listener.tls_versions,
        alpn_protocols=listener.alpn_protocols,
        hsts_max_age=listener.hsts_max_age,
        hsts_include_subdomains=bool(listener.hsts_include_subdomains),
        hsts_preload=bool(listener.hsts_preload),
    )
    return out


# --- validation --------------------------------------------------------------------------


def _check_insert_headers(headers: list[str], protocol: str) -> None:
    if protocol not in (c.HTTP, c.TERMINATED_HTTPS):
        raise errors.InvalidOption(value="insert-headers",
                                   option=f"a {protocol} protocol listener.")
    unknown = [h for h in headers if h not in c.INSERT_HEADERS_HTTP + c.INSERT_HEADERS_TLS]
    if unknown:
        raise errors.InvalidOption(value=headers, option="insert_headers")
    if protocol != c.TERMINATED_HTTPS:
        tls_only = [h for h in headers if h in c.INSERT_HEADERS_TLS]
        if tls_only:
            raise errors.InvalidOption(value=tls_only, option=f"{protocol} protocol listener.")


def _tls_offload(listener: m.Listener) -> bool:
    """TERMINATED_HTTPS always; a PROMETHEUS listener once it is given a certificate."""
    return listener.protocol == c.TERMINATED_HTTPS or (
        listener.protocol == c.PROMETHEUS and _has_refs(listener))


def _has_refs(listener: m.Listener) -> bool:
    return bool(listener.tls_certificate_id or listener.sni_containers
                or listener.client_ca_tls_certificate_id)


def _vip_addresses(lb: m.LoadBalancer) -> list[str]:
    addresses = [lb.vip.ip_address] if lb.vip is not None and lb.vip.ip_address else []
    return addresses + [a.ip_address for a in lb.additional_vips if a.ip_address]


def _check_refs(listener: m.Listener, sent: set[str], ctx: RequestContext | None) -> None:
    """The certificate references this request sets must resolve."""
    refs = {
        "default_tls_container_ref": listener.tls_certificate_id,
        "sni_container_refs": [s.tls_container_id for s in listener.sni_containers],
        "client_ca_tls_container_ref": listener.client_ca_tls_certificate_id,
        "client_crl_container_ref": listener.client_crl_container_id,
    }
    certificates.check({field: ref for field, ref in refs.items() if field in sent}, ctx)


def _validate(lb: m.LoadBalancer, listener: m.Listener, sent: set[str],
              ctx: RequestContext | None) -> None:
    """Octavia's rules, checked against the listener as it would be stored."""
    protocol = listener.protocol
    api = config.CONF.api_settings
    headers = list((listener.insert_headers or {}).keys())
    if headers:
        _check_insert_headers(headers, protocol)
    if protocol in c.LVS_PROTOCOLS and (_has_refs(listener) or headers):
        raise errors.ValidationError(detail=f"{protocol} protocol listener does not support TLS.")
    if protocol == c.TERMINATED_HTTPS and not api.allow_tls_terminated_listeners:
        raise errors.DisabledOption(option="protocol", value=protocol)
    if protocol == c.PROMETHEUS and not api.allow_prometheus_listeners:
        raise errors.DisabledOption(option="protocol", value=protocol)
    offload = _tls_offload(listener)
    if not offload and _has_refs(listener):
        raise errors.ValidationError(
            detail=f"Certificate container references are not allowed on {protocol} "
                   "protocol listeners.")
    has_cert = bool(listener.tls_certificate_id or listener.sni_containers)
    if listener.client_ca_tls_certificate_id and not has_cert:
        raise errors.ValidationError(
            detail="An SNI or default certificate container reference must be provided with "
                   "a client CA container reference.")
    if offload and not has_cert:
        raise errors.ValidationError(
            detail="An SNI or default certificate container reference must be provided for "
                   f"{protocol} protocol listeners.")
    if (listener.client_authentication != "NONE"
            and not listener.client_ca_tls_certificate_id):
        raise errors.ValidationError(
            detail=f"Client authentication setting {listener.client_authentication} requires "
                   "a client CA container reference.")
    if listener.client_crl_container_id and not listener.client_ca_tls_certificate_id:
        raise errors.ValidationError(
            detail="A client authentication CA reference is required to specify a client "
                   "authentication revocation list.")
    if ((listener.hsts_include_subdomains or listener.hsts_preload)
            and listener.hsts_max_age is None):
        raise errors.ValidationError(
            detail="HSTS configuration options hsts_include_subdomains and hsts_preload only "
                   "make sense if hsts_max_age is set as well.")
    if listener.hsts_max_age is not None and protocol != c.TERMINATED_HTTPS:
        raise errors.ValidationError(
            detail="The HSTS feature can only be used for listeners using the "
                   "TERMINATED_HTTPS protocol.")
    _check_refs(listener, sent, ctx)
    cidrs = [x.cidr for x in listener.allowed_cidrs]
    if cidrs and "allowed_cidrs" in sent:
        if lb.vip_security_groups:
            raise errors.ValidationError(
                detail="allowed_cidrs cannot be used on a load balancer with custom VIP "
                       "security groups (vip_sg_ids).")
        vips = _vip_addresses(lb)
        families = {ipaddress.ip_address(v).version for v in vips}
        for cidr in cidrs:
            if ipaddress.ip_network(cidr).version not in families:
                raise errors.ValidationError(
                    detail=f"CIDR {cidr} IP version incompatible with all VIPs {vips} IP "
                           "version.")


def _apply_tls_defaults(listener: m.Listener) -> None:
    api = config.CONF.api_settings
    if not _tls_offload(listener):
        return
    if not listener.tls_ciphers:
        listener.tls_ciphers = api.default_listener_ciphers
    if not listener.tls_versions:
        listener.tls_versions = list(api.default_listener_tls_versions)
    if not listener.alpn_protocols:
        listener.alpn_protocols = list(api.default_listener_alpn_protocols)


def _pool_for(session: Session, lb: m.LoadBalancer, pool_id: str,
              listener_protocol: str) -> m.Pool:
    """The default pool must be on the listener's load balancer (404 otherwise)."""
    if listener_protocol == c.PROMETHEUS:
        raise errors.BadRequest(f"Protocol {c.PROMETHEUS} listeners cannot have child objects.")
    pool = session.get(m.Pool, pool_id)
    if pool is None or pool.load_balancer_id != lb.id:
        pool = next((p for p in session.new if isinstance(p, m.Pool) and p.id == pool_id
                     and p.load_balancer is lb), None)
    if pool is None:
        raise errors.NotFound(resource="Pool", id=pool_id)
    validators.check_pool_protocol(listener_protocol, pool.protocol)
    return pool


def _new_listeners(session: Session, lb: m.LoadBalancer) -> list[m.Listener]:
    """Listeners of ``lb`` added in this transaction and not flushed yet."""
    return [x for x in session.new if isinstance(x, m.Listener)
            and (x.load_balancer is lb or x.load_balancer_id == lb.id)]


def _check_port_free(session: Session, lb: m.LoadBalancer, protocol: str, port: int) -> None:
    l4 = c.L4_PROTOCOL[protocol]
    taken = [x.protocol for x in _new_listeners(session, lb) if x.protocol_port == port]
    if lb.id and lb not in session.new:
        taken += session.scalars(select(m.Listener.protocol).where(
            m.Listener.load_balancer_id == lb.id, m.Listener.protocol_port == port)).all()
    for other in taken:
        if c.L4_PROTOCOL.get(other) == l4:
            raise errors.Conflict(
                f"Another Listener on this Load Balancer is already using protocol {other} "
                f"and protocol_port {port}")


def _next_peer_port(session: Session, lb: m.LoadBalancer) -> int:
    ports = [x.peer_port for x in _new_listeners(session, lb) if x.peer_port]
    if lb.id and lb not in session.new:
        stored = session.scalar(select(func.max(m.Listener.peer_port)).where(
            m.Listener.load_balancer_id == lb.id))
        if stored:
            ports.append(stored)
    return max(ports) + 1 if ports else BASE_PEER_PORT


def _set_snis(listener: m.Listener, refs: list[str] | None) -> None:
    existing = {s.tls_container_id: s for s in listener.sni_containers}
    rows = []
    for position, ref in enumerate(dict.fromkeys(refs or [])):
        row = existing.get(ref) or m.SNI(tls_container_id=ref)
        row.position = position
        rows.append(row)
    listener.sni_containers = rows


def _set_cidrs(listener: m.Listener, cidrs: list[str] | None) -> None:
    existing = {x.cidr: x for x in listener.allowed_cidrs}
    listener.allowed_cidrs = [existing.get(x) or m.ListenerCidr(cidr=x)
                              for x in dict.fromkeys(cidrs or [])]


def build(session: Session, ctx: RequestContext | None, lb: m.LoadBalancer,
          data: Create) -> m.Listener:
    """Validate ``data`` and add a new PENDING_CREATE listener of ``lb`` to the session.

    Does not lock the load balancer, check quotas or enqueue a job. Works when ``lb`` is
    new: the graph create sets ``default_pool`` itself when the pool is built later.
    """
    conf = config.CONF.haproxy_amphora
    sent = set(data.model_fields_set)
    validators.check_tls_params(data.tls_ciphers, data.tls_versions, data.alpn_protocols, sent)
    with session.no_autoflush:
        listener = m.Listener(
            id=m.new_id(), project_id=lb.project_id, name=data.name,
            description=data.description, enabled=data.admin_state_up,
            protocol=data.protocol, protocol_port=data.protocol_port,
            connection_limit=(data.connection_limit if data.connection_limit is not None
                              else c.MIN_CONNECTION_LIMIT),
            tls_certificate_id=data.default_tls_container_ref,
            client_ca_tls_certificate_id=data.client_ca_tls_container_ref,
            client_authentication=data.client_authentication or "NONE",
            client_crl_container_id=data.client_crl_container_ref,
            insert_headers=data.insert_headers or {},
            timeout_client_data=_or(data.timeout_client_data, conf.timeout_client_data),
            timeout_member_connect=_or(data.timeout_member_connect,
                                       conf.timeout_member_connect),
            timeout_member_data=_or(data.timeout_member_data, conf.timeout_member_data),
            timeout_tcp_inspect=_or(data.timeout_tcp_inspect, conf.timeout_tcp_inspect),
            tls_ciphers=data.tls_ciphers, tls_versions=data.tls_versions,
            alpn_protocols=data.alpn_protocols, hsts_max_age=data.hsts_max_age,
            hsts_include_subdomains=bool(data.hsts_include_subdomains),
            hsts_preload=bool(data.hsts_preload),
            provisioning_status=c.PENDING_CREATE, operating_status=c.OFFLINE,
        )
        listener.tags = data.tags
        _set_snis(listener, data.sni_container_refs)
        _set_cidrs(listener, data.allowed_cidrs)
        if data.default_pool_id:
            listener.default_pool = _pool_for(session, lb, data.default_pool_id,
                                              data.protocol)
        _validate(lb, listener, sent, ctx)
        _check_port_free(session, lb, data.protocol, data.protocol_port)
        _apply_tls_defaults(listener)
        listener.peer_port = _next_peer_port(session, lb)
        listener.load_balancer_id = lb.id
        listener.load_balancer = lb
        session.add(listener)
    return listener


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


# --- update ---------------------------------------------------------------------------


def _apply_update(session: Session, lb: m.LoadBalancer, listener: m.Listener,
                  data: Update, ctx: RequestContext) -> None:
    given = data.given()
    conf = config.CONF.haproxy_amphora
    validators.check_tls_params(data.tls_ciphers, data.tls_versions, data.alpn_protocols, given)
    simple = {
        "name": ("name", None), "description": ("description", None),
        "admin_state_up": ("enabled", None),
        "connection_limit": ("connection_limit", c.MIN_CONNECTION_LIMIT),
        "default_tls_container_ref": ("tls_certificate_id", None),
        "client_ca_tls_container_ref": ("client_ca_tls_certificate_id", None),
        "client_authentication": ("client_authentication", "NONE"),
        "client_crl_container_ref": ("client_crl_container_id", None),
        "insert_headers": ("insert_headers", {}),
        "timeout_client_data": ("timeout_client_data", conf.timeout_client_data),
        "timeout_member_connect": ("timeout_member_connect", conf.timeout_member_connect),
        "timeout_member_data": ("timeout_member_data", conf.timeout_member_data),
        "timeout_tcp_inspect": ("timeout_tcp_inspect", conf.timeout_tcp_inspect),
        "tls_ciphers": ("tls_ciphers", None), "tls_versions": ("tls_versions", None),
        "alpn_protocols": ("alpn_protocols", None),
        "hsts_max_age": ("hsts_max_age", None),
        "hsts_include_subdomains": ("hsts_include_subdomains", False),
        "hsts_preload": ("hsts_preload", False),
    }
    for field, (column, default) in simple.items():
        if field in given:
            setattr(listener, column, _or(given[field], default))
    if "tags" in given:
        listener.tags = data.tags
    if "sni_container_refs" in given:
        _set_snis(listener, data.sni_container_refs)
    if "allowed_cidrs" in given:
        _set_cidrs(listener, data.allowed_cidrs)
    if "default_pool_id" in given:
        if data.default_pool_id:
            listener.default_pool = _pool_for(session, lb, data.default_pool_id,
                                              listener.protocol)
        else:
            listener.default_pool = None
    _validate(lb, listener, set(given), ctx)
    _apply_tls_defaults(listener)


# --- controllers ----------------------------------------------------------------------


def load(session: Session, listener_id: str) -> m.Listener:
    listener = session.scalars(select(m.Listener).where(m.Listener.id == listener_id)
                               .options(*LOAD_OPTIONS)).first()
    if listener is None:
        raise errors.NotFound(resource=NAME, id=listener_id)
    return listener


def load_authorized(req: falcon.Request, session: Session, listener_id: str,
                    action: str) -> m.Listener:
    return common.authorized(req, RESOURCE, action, load(session, listener_id))


class Listeners:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        common.serve_project_list(req, resp, RESOURCE, COLLECTION, m.Listener.project_id, view,
                                  select(m.Listener).options(*LOAD_OPTIONS))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body.parse(req, RESOURCE, Create)
        if data.loadbalancer_id is None:
            raise errors.InvalidInput(field="loadbalancer_id", value="None",
                                      reason="Mandatory field missing.")
        ctx = common.context(req)
        with db.transaction() as session:
            project = common.lb_project(session, data.loadbalancer_id)
            policy.authorize(ctx, RESOURCE, "post", project)
            lb = common.lock_load_balancer(session, data.loadbalancer_id)
            listener = build(session, ctx, lb, data)
            out = common.finish_create(session, listener, view, lb.id, lb.project_id or "",
                                       {"listener": 1})
        common.send(resp, {RESOURCE: out}, 201)


class Listener:
    def on_get(self, req: falcon.Request, resp: falcon.Response, listener_id: str) -> None:
        with db.session() as session:
            listener = load_authorized(req, session, listener_id, "get_one")
            common.send_one(resp, req, RESOURCE, view(listener))

    def on_put(self, req: falcon.Request, resp: falcon.Response, listener_id: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        with db.transaction() as session:
            listener = load_authorized(req, session, listener_id, "put")
            lb = common.lock_load_balancer(session, listener.load_balancer_id)
            with session.no_autoflush:
                _apply_update(session, lb, listener, data, common.context(req))
            out = common.finish_update(session, listener, view, lb.id)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, listener_id: str) -> None:
        with db.transaction() as session:
            listener = load_authorized(req, session, listener_id, "delete")
            common.lock_load_balancer(session, listener.load_balancer_id)
            common.finish_delete(session, listener, listener.load_balancer_id)
        resp.status = 204


class Stats:
    def on_get(self, req: falcon.Request, resp: falcon.Response, listener_id: str) -> None:
        with db.session() as session:
            listener = load_authorized(req, session, listener_id, "get_stats")
            resp.media = {"stats": stats.listener_stats(session, [listener.id])}


ROUTES = [
    ("/listeners", Listeners()),
    ("/listeners/{listener_id}", Listener()),
    ("/listeners/{listener_id}/stats", Stats()),
]
