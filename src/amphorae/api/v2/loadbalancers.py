"""/v2/lbaas/loadbalancers: create (also the fully populated graph), show, list, update,
delete (with cascade), status tree, stats and failover."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import falcon
from pydantic import Field
from sqlalchemy import (
    Select,
    String,
    cast,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from amphorae.api import body, listing, policy
from amphorae.api import types as t
from amphorae.api.v2 import common, graph, stats, visibility
from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.db import engine as db
from amphorae.db import events, scale
from amphorae.db import models as m
from amphorae.db import tree as subtree
from amphorae.drivers import registry

LOG = logging.getLogger(__name__)
RESOURCE = "loadbalancer"
NAME = common.LB_NAME


class AdditionalVipIn(t.Schema):
    subnet_id: t.UUID
    ip_address: t.IPAddress | None = None
    port_id: t.UUID | None = None


class Create(t.Schema):
    name: t.Name | None = None
    description: t.Description | None = None
    admin_state_up: t.AdminState = True
    vip_address: t.IPAddress | None = None
    vip_port_id: t.UUID | None = None
    vip_subnet_id: t.UUID | None = None
    vip_network_id: t.UUID | None = None
    vip_qos_policy_id: t.UUID | None = None
    vip_sg_ids: list[t.UUID] | None = None
    additional_vips: list[AdditionalVipIn] = Field(default_factory=list)
    project_id: t.ProjectId | None = None
    tenant_id: t.ProjectId | None = None
    provider: t.Annotated[t.StrictStr, Field(max_length=64)] | None = None
    flavor_id: t.UUID | None = None
    availability_zone: t.Name | None = None
    tags: t.Tags | None = None
    listeners: list[dict[str, Any]] = Field(default_factory=list)
    pools: list[dict[str, Any]] = Field(default_factory=list)


class Update(t.Schema):
    name: t.Name | None = None
    description: t.Description | None = None
    admin_state_up: t.AdminState = True
    vip_qos_policy_id: t.UUID | None = None
    vip_sg_ids: list[t.UUID] | None = None
    tags: t.Tags | None = None


COLLECTION = listing.Collection(
    model=m.LoadBalancer, key="loadbalancers", links_key="loadbalancers_links",
    columns={
        "id": m.LoadBalancer.id, "name": m.LoadBalancer.name,
        "description": m.LoadBalancer.description, "project_id": m.LoadBalancer.project_id,
        "provisioning_status": m.LoadBalancer.provisioning_status,
        "operating_status": m.LoadBalancer.operating_status,
        "admin_state_up": m.LoadBalancer.enabled, "provider": m.LoadBalancer.provider,
        "flavor_id": m.LoadBalancer.flavor_id, "topology": m.LoadBalancer.topology,
        "availability_zone": m.LoadBalancer.availability_zone,
        "created_at": m.LoadBalancer.created_at, "updated_at": m.LoadBalancer.updated_at,
        "vip_address": m.Vip.ip_address, "vip_port_id": m.Vip.port_id,
        "vip_subnet_id": m.Vip.subnet_id, "vip_network_id": m.Vip.network_id,
        "vip_qos_policy_id": m.Vip.qos_policy_id,
    },
    extra_params=frozenset({"project_id"}),
)

# --- reading: two queries for any number of load balancers -------------------------

LB_TABLE = m.LoadBalancer.__table__
VIP_TABLE = m.Vip.__table__
LB_FIELDS = ("id", "name", "description", "provisioning_status", "operating_status",
             "enabled", "project_id", "created_at", "updated_at", "provider", "flavor_id",
             "availability_zone")
VIP_FIELDS = ("port_id", "subnet_id", "network_id", "qos_policy_id", "vnic_type")
READ_COLUMNS = (
    *(LB_TABLE.c[name] for name in LB_FIELDS),
    VIP_TABLE.c.ip_address.label("vip_address"),
    *(VIP_TABLE.c[name].label(f"vip_{name}") for name in VIP_FIELDS),
)
READ_FROM = LB_TABLE.outerjoin(VIP_TABLE, VIP_TABLE.c.load_balancer_id == LB_TABLE.c.id)


def read_select() -> Select:
    return select(*READ_COLUMNS).select_from(READ_FROM)


def _children(session: Session, lb_ids: list[str]) -> dict[str, dict[str, list[Any]]]:
    """Listener/pool ids, tags, security groups and additional VIPs of many load
    balancers in one UNION query."""
    out: dict[str, dict[str, list[Any]]] = {
        i: {"l": [], "p": [], "t": [], "s": [], "v": []} for i in lb_ids}
    if not lb_ids:
        return out
    none = cast(null(), String(64))
    parts = [
        select(literal("l").label("k"), m.Listener.load_balancer_id.label("o"),
               m.Listener.id.label("a"), none.label("b"), none.label("c"))
        .where(m.Listener.load_balancer_id.in_(lb_ids)),
        select(literal("p"), m.Pool.load_balancer_id, m.Pool.id, none, none)
        .where(m.Pool.load_balancer_id.in_(lb_ids)),
        select(literal("t"), m.Tag.resource_id, m.Tag.tag, none, none)
        .where(m.Tag.resource_id.in_(lb_ids)),
        select(literal("s"), m.VipSecurityGroup.load_balancer_id, m.VipSecurityGroup.sg_id,
               none, none).where(m.VipSecurityGroup.load_balancer_id.in_(lb_ids)),
        select(literal("v"), m.AdditionalVip.load_balancer_id, m.AdditionalVip.subnet_id,
               m.AdditionalVip.ip_address, m.AdditionalVip.port_id)
        .where(m.AdditionalVip.load_balancer_id.in_(lb_ids)),
    ]
    ordered = union_all(*parts).order_by(literal_column("k"), literal_column("a"))
    for kind, owner, a, b, c_ in session.execute(ordered):
        out[owner][kind].append(a if kind != "v" else
                                {"subnet_id": a, "ip_address": b, "port_id": c_})
    return out


def _render(r: Any, kids: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        "id": r.id, "name": r.name or "", "description": r.description or "",
        "provisioning_status": r.provisioning_status, "operating_status": r.operating_status,
        "admin_state_up": r.enabled, "project_id": r.project_id, "tenant_id": r.project_id,
        "created_at": common.iso(r.created_at), "updated_at": common.iso(r.updated_at),
        "vip_address": r.vip_address, "vip_port_id": r.vip_port_id,
        "vip_subnet_id": r.vip_subnet_id, "vip_network_id": r.vip_network_id,
        "vip_qos_policy_id": r.vip_qos_policy_id,
        "vip_vnic_type": r.vip_vnic_type or c.VNIC_NORMAL,
        "vip_sg_ids": kids["s"], "additional_vips": kids["v"],
        "listeners": [{"id": i} for i in kids["l"]], "pools": [{"id": i} for i in kids["p"]],
        "provider": r.provider or c.PROVIDER_OCTAVIA, "flavor_id": r.flavor_id,
        "availability_zone": r.availability_zone, "tags": sorted(kids["t"]),
    }


def views(session: Session, rows: list[Any]) -> list[dict[str, Any]]:
    kids = _children(session, [r.id for r in rows])
    return [_render(r, kids[r.id]) for r in rows]


def view(lb: m.LoadBalancer) -> dict[str, Any]:
    """The view of an ORM load balancer (after a write), rendered like a read."""
    vip = lb.vip
    row = SimpleNamespace(**{name: getattr(lb, name) for name in LB_FIELDS},
                          **{f"vip_{name}": getattr(vip, name, None) for name in VIP_FIELDS},
                          vip_address=getattr(vip, "ip_address", None))
    kids = {"l": sorted(x.id for x in lb.listeners), "p": sorted(x.id for x in lb.pools),
            "t": lb.tags, "s": [x.sg_id for x in lb.vip_security_groups],
            "v": [{"subnet_id": a.subnet_id, "ip_address": a.ip_address,
                   "port_id": a.port_id} for a in lb.additional_vips]}
    return _render(row, kids)


def load_row(req: falcon.Request, session: Session, lb_id: str, action: str) -> Any:
    """The load balancer as a read-only row, authorized for ``action``."""
    row = session.execute(read_select().where(LB_TABLE.c.id == lb_id)).first()
    if row is None or row.provisioning_status == c.DELETED:
        raise errors.NotFound(resource=NAME, id=lb_id)
    policy.authorize(common.context(req), RESOURCE, action, row.project_id)
    return row


def load_authorized(req: falcon.Request, session: Session, lb_id: str,
                    action: str) -> m.LoadBalancer:
    lb = common.get_or_404(session, m.LoadBalancer, lb_id, NAME)
    return common.authorized(req, RESOURCE, action, lb)


# --- create ---------------------------------------------------------------------------


def _provider_and_flavor(session: Session, data: Create) -> tuple[str, m.Flavor | None]:
    flavor = None
    if data.flavor_id:
        flavor = session.get(m.Flavor, data.flavor_id)
        if flavor is None or data.flavor_id == c.NIL_UUID:
            raise errors.ValidationError(detail="Invalid flavor_id.")
        if not flavor.enabled:
            raise errors.DisabledOption(option="flavor", value=data.flavor_id)
    provider = data.provider
    if flavor is not None:
        flavor_provider = flavor.flavor_profile.provider_name
        if provider and provider != flavor_provider:
            raise errors.BadRequest(
                f"Flavor '{flavor.id}' is not compatible with provider '{provider}'")
        provider = flavor_provider
    provider = provider or config.CONF.api_settings.default_provider_driver
    if provider not in config.CONF.api_settings.enabled_provider_drivers:
        raise errors.BadRequest(f"Provider '{provider}' is not enabled.")
    return provider, flavor


def _availability_zone(session: Session, name: str | None) -> None:
    if name is None:
        return
    az = session.get(m.AvailabilityZone, name)
    if az is None:
        raise errors.ValidationError(detail="Invalid availability zone.")
    if not az.enabled:
        raise errors.DisabledOption(option="availability_zone", value=name)


def topology_for(flavor: m.Flavor | None) -> str:
    if flavor is not None:
        data = json.loads(flavor.flavor_profile.flavor_data or "{}")
        if data.get("loadbalancer_topology"):
            return str(data["loadbalancer_topology"])
    return str(config.CONF.controller_worker.loadbalancer_topology)


def _check_vip_options(data: Create) -> None:
    conf = config.CONF.networking
    given = {"vip_port_id": data.vip_port_id, "vip_network_id": data.vip_network_id,
             "vip_subnet_id": data.vip_subnet_id}
    allowed = {"vip_port_id": conf.allow_vip_port_id,
               "vip_network_id": conf.allow_vip_network_id,
               "vip_subnet_id": conf.allow_vip_subnet_id}
    for name, value in given.items():
        if value and not allowed[name]:
            raise errors.ValidationError(
                detail=f"VIP must contain one of: {', '.join(k for k, v in allowed.items() if v)}.")
    if not any(given.values()):
        raise errors.ValidationError(
            detail=f"VIP must contain one of: {', '.join(k for k, v in allowed.items() if v)}.")


def build_vip(session: Session, lb: m.LoadBalancer, data: Create) -> None:
    """Resolve the VIP's port/network/subnet and reserve its address."""
    driver = registry.shared_network()
    if data.vip_port_id:
        port = driver.get_port(data.vip_port_id)
        # Another project's port is not there for this one (the service user sees all).
        if port is None or port.project_id not in (None, lb.project_id):
            raise errors.InvalidSubresource(resource="Port", id=data.vip_port_id)
        if port.device_id:
            raise errors.BadRequest(
                f"Port {port.id} is already used by device {port.device_id}.")
        if data.vip_subnet_id and data.vip_subnet_id != port.subnet_id:
            raise errors.ValidationError(
                detail=f"Port {port.id} has no address on subnet {data.vip_subnet_id}.")
        if data.vip_address and data.vip_address != port.ip_address:
            raise errors.ValidationError(
                detail=f"VIP address {data.vip_address} is not on port {port.id}.")
        port = driver.adopt_vip_port(lb.id, port.id)
        lb.vip = m.Vip(ip_address=port.ip_address, port_id=port.id,
                       subnet_id=port.subnet_id, network_id=port.network_id,
                       qos_policy_id=data.vip_qos_policy_id, octavia_owned=False)
        return
    subnet = None
    if data.vip_subnet_id:
        subnet = driver.get_subnet(data.vip_subnet_id, data.vip_network_id)
        if subnet is None:
            raise errors.InvalidSubresource(resource="Subnet", id=data.vip_subnet_id)
        if data.vip_network_id and subnet.network_id != data.vip_network_id:
            raise errors.ValidationError(
                detail=f"Subnet {subnet.id} is not on network {data.vip_network_id}.")
    else:
        net = driver.get_network(str(data.vip_network_id))
        if net is None:
            raise errors.InvalidSubresource(resource="Network", id=data.vip_network_id)
        candidates = [s for s in net.subnets if data.vip_address is None
                      or s.cidr.version == (6 if ":" in data.vip_address else 4)]
        subnet = candidates[0] if candidates else None
        if subnet is None:
            raise errors.ValidationError(
                detail=f"No subnet on network {net.id} fits the VIP address.")
    _check_vip_network(subnet.network_id)
    # The local driver's allocation joins this transaction (engine.transaction).
    port = driver.allocate_vip(lb.id, subnet, data.vip_address, project_id=lb.project_id)
    lb.vip = m.Vip(ip_address=port.ip_address, port_id=port.id, subnet_id=subnet.id,
                   network_id=subnet.network_id, qos_policy_id=data.vip_qos_policy_id)
    seen = {subnet.id}
    for extra in data.additional_vips:
        sub = driver.get_subnet(extra.subnet_id, subnet.network_id)
        if sub is None:
            raise errors.InvalidSubresource(resource="Subnet", id=extra.subnet_id)
        if sub.id in seen:
            raise errors.ValidationError(
                detail="Duplicate VIP subnet(s) specified. Only one IP can be bound per subnet.")
        if sub.network_id != subnet.network_id:
            raise errors.ValidationError(
                detail="All VIP subnets must belong to the same network.")
        seen.add(sub.id)
        extra_port = driver.allocate_vip(lb.id, sub, extra.ip_address,
                                         project_id=lb.project_id)
        lb.additional_vips.append(m.AdditionalVip(
            subnet_id=sub.id, network_id=sub.network_id, ip_address=extra_port.ip_address,
            port_id=extra_port.id))


def _check_vip_network(network_id: str) -> None:
    conf = config.CONF.networking
    if conf.valid_vip_networks and network_id not in conf.valid_vip_networks:
        raise errors.ValidationError(detail=f"Supplied VIP network_id {network_id} is not allowed.")
    if network_id in conf.denylist_vip_networks:
        raise errors.ValidationError(detail=f"Supplied VIP network_id {network_id} is not allowed.")


def create(session: Session, req: falcon.Request, data: Create,
           lb_id: str | None = None) -> m.LoadBalancer:
    ctx = common.context(req)
    project = common.request_project(ctx, RESOURCE, data.project_id or data.tenant_id)
    if data.vip_sg_ids is not None:
        policy.authorize(ctx, RESOURCE, "post:vip_sg_ids", project)
    _check_vip_options(data)
    visibility.check_vip(ctx, data)
    provider, flavor = _provider_and_flavor(session, data)
    _availability_zone(session, data.availability_zone)
    lb = m.LoadBalancer(
        id=lb_id or m.new_id(), project_id=project, name=data.name,
        description=data.description,
        enabled=data.admin_state_up, provider=provider,
        flavor_id=flavor.id if flavor else None, availability_zone=data.availability_zone,
        topology=topology_for(flavor), provisioning_status=c.PENDING_CREATE,
        operating_status=c.OFFLINE,
    )
    lb.tags = data.tags
    lb.vip_security_groups = [m.VipSecurityGroup(sg_id=s) for s in
                              dict.fromkeys(data.vip_sg_ids or [])]
    session.add(lb)
    build_vip(session, lb, data)
    if lb.topology == c.TOPOLOGY_ACTIVE_ACTIVE:
        scale.start(session, lb)
    common.enqueue(session, lb.id)
    counts = {"load_balancer": 1}
    if data.listeners or data.pools:
        counts.update(graph.build(session, ctx, lb, data.listeners, data.pools))
    # Last, so a refusal also shows the objects and the job rolling back together.
    common.check_quota(session, project, counts)
    session.flush()
    return lb


@contextlib.contextmanager
def released_on_failure(lb_id: str) -> Iterator[None]:
    """A network driver whose VIPs live outside our database (Neutron) cannot roll back
    with the transaction: what it allocated for a load balancer that was not written is
    released here."""
    driver = registry.shared_network()
    try:
        yield
    except BaseException:
        if not driver.joins_transaction:
            try:
                driver.deallocate_vip(lb_id)
            except Exception:
                LOG.exception("load balancer %s was not created; releasing its VIP "
                              "failed", lb_id)
        raise


# --- controllers ----------------------------------------------------------------------


class LoadBalancers:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        lp, where = common.scoped_list(req, RESOURCE, COLLECTION, m.LoadBalancer.project_id)
        stmt = listing.query(COLLECTION, lp, read_select()).where(
            m.LoadBalancer.provisioning_status != c.DELETED)
        if where is not None:
            stmt = stmt.where(where)
        with db.session() as session:
            rows, links = listing.page(session, COLLECTION, lp, stmt, req, scalars=False)
            items = [listing.select_fields(v, lp.fields) for v in views(session, rows)]
        resp.media = {COLLECTION.key: items, COLLECTION.links_key: links}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body.parse(req, RESOURCE, Create)
        lb_id = m.new_id()
        with released_on_failure(lb_id), db.transaction() as session:
            lb = create(session, req, data, lb_id)
            out = view(lb)
            if data.listeners or data.pools:
                out |= graph.view(lb)
        common.send(resp, {RESOURCE: out}, 201)


class LoadBalancer:
    def on_get(self, req: falcon.Request, resp: falcon.Response, lb_id: str) -> None:
        with db.session() as session:
            row = load_row(req, session, lb_id, "get_one")
            common.send_one(resp, req, RESOURCE, views(session, [row])[0])

    def on_put(self, req: falcon.Request, resp: falcon.Response, lb_id: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        given = data.given()
        with db.transaction() as session:
            lb = load_authorized(req, session, lb_id, "put")
            if "vip_sg_ids" in given:
                policy.authorize(common.context(req), RESOURCE, "put:vip_sg_ids", lb.project_id)
            common.lock_load_balancer(session, lb_id, for_child=False)
            common.set_given(lb, given, {"name": "name", "description": "description",
                                         "admin_state_up": "enabled", "tags": "tags"})
            if "vip_qos_policy_id" in given:
                lb.vip.qos_policy_id = data.vip_qos_policy_id
            if "vip_sg_ids" in given:
                lb.vip_security_groups = [m.VipSecurityGroup(sg_id=s) for s in
                                          dict.fromkeys(data.vip_sg_ids or [])]
            common.enqueue(session, lb_id)
            session.flush()
            out = view(lb)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, lb_id: str) -> None:
        cascade = str(req.params.get("cascade", "false")).lower() in listing.TRUE
        with db.transaction() as session:
            lb = load_authorized(req, session, lb_id, "delete")
            common.lock_load_balancer(session, lb_id, for_child=False,
                                      allowed=(c.ACTIVE, c.ERROR), new_status=c.PENDING_DELETE)
            if (lb.listeners or lb.pools) and not cascade:
                raise errors.ValidationError(
                    detail=f"Cannot delete Load Balancer {lb_id} - it has children")
            if cascade:
                subtree.set_all(session, lb_id, provisioning_status=c.PENDING_DELETE)
            common.enqueue(session, lb_id)
        resp.status = 204


class Status:
    def on_get(self, req: falcon.Request, resp: falcon.Response, lb_id: str) -> None:
        with db.session() as session:
            lb = load_row(req, session, lb_id, "get_status")
            resp.media = {"statuses": {"loadbalancer": status_tree(session, lb)}}


def _status(obj: Any, *extra: str) -> dict[str, Any]:
    out = {"id": obj.id, "name": obj.name or "",
           "provisioning_status": obj.provisioning_status,
           "operating_status": obj.operating_status}
    for key in extra:
        out[key] = getattr(obj, key)
    return out


STATUS_FIELDS = ("id", "name", "provisioning_status", "operating_status")


def status_tree(session: Session, lb: Any) -> dict[str, Any]:
    """The status tree Octavia serves: each listener with the pools its traffic can reach
    (default pool, pools of enabled L7 redirects that have rules)."""
    def rows(kind: Any, *columns: str, order: tuple[str, ...] = ("created_at", "id")) -> list:
        table = kind.__table__
        return session.execute(subtree.select_under(kind, [lb.id], *columns).order_by(
            *(table.c[name] for name in order))).all()

    redirects: dict[str, list[str]] = {}
    with_rules = {r.l7policy_id for r in rows(m.L7Rule, "l7policy_id")}
    for pol in rows(m.L7Policy, "id", "listener_id", "enabled", "redirect_pool_id",
                    order=("position", "id")):
        if pol.enabled and pol.id in with_rules and pol.redirect_pool_id:
            redirects.setdefault(pol.listener_id, []).append(pol.redirect_pool_id)
    monitors = {hm.pool_id: _status(hm, "type")
                for hm in rows(m.HealthMonitor, *STATUS_FIELDS, "pool_id", "type")}
    members: dict[str, list[dict[str, Any]]] = {}
    for mb in rows(m.Member, *STATUS_FIELDS, "pool_id", "protocol_port", "ip_address"):
        members.setdefault(mb.pool_id, []).append(
            _status(mb, "protocol_port") | {"address": mb.ip_address})
    pools = {}
    for pool in rows(m.Pool, *STATUS_FIELDS):
        pools[pool.id] = _status(pool)
        pools[pool.id]["health_monitor"] = monitors.get(pool.id)  # null without one
        pools[pool.id]["members"] = members.get(pool.id, [])
    tree = _status(lb)
    tree["listeners"] = []
    for listener in rows(m.Listener, *STATUS_FIELDS, "default_pool_id"):
        reached = [listener.default_pool_id] if listener.default_pool_id else []
        reached += redirects.get(listener.id, [])
        node = _status(listener)
        node["pools"] = [pools[i] for i in dict.fromkeys(reached) if i in pools]
        tree["listeners"].append(node)
    return tree


class Stats:
    def on_get(self, req: falcon.Request, resp: falcon.Response, lb_id: str) -> None:
        with db.session() as session:
            lb = load_row(req, session, lb_id, "get_stats")
            ids_q = select(m.Listener.id).where(m.Listener.load_balancer_id == lb.id)
            resp.media = {"stats": stats.listener_stats(session, ids_q.scalar_subquery())}


class Failover:
    def on_put(self, req: falcon.Request, resp: falcon.Response, lb_id: str) -> None:
        with db.transaction() as session:
            lb = load_authorized(req, session, lb_id, "put_failover")
            common.lock_load_balancer(session, lb.id, for_child=False,
                                      allowed=(c.ACTIVE, c.ERROR))
            common.enqueue(session, lb.id, c.JOB_FAILOVER_LB)
            events.record(session, events.FAILOVER,
                          f"{events.named('load balancer', lb.name, lb.id)} is failed over: "
                          f"requested through the API ({req.context.request_id})",
                          resource_type="loadbalancer", resource_id=lb.id,
                          load_balancer_id=lb.id, project_id=lb.project_id)
        resp.status = 202


ROUTES = [
    ("/loadbalancers", LoadBalancers()),
    ("/loadbalancers/{lb_id}", LoadBalancer()),
    ("/loadbalancers/{lb_id}/status", Status()),
    ("/loadbalancers/{lb_id}/statuses", Status()),
    ("/loadbalancers/{lb_id}/stats", Stats()),
    ("/loadbalancers/{lb_id}/failover", Failover()),
]
