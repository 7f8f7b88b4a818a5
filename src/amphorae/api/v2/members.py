"""/v2/lbaas/pools/{pool_id}/members: create, show, list, update, delete and the batch
update (PUT on the collection)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import falcon
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from amphorae.api import body, listing
from amphorae.api import types as t
from amphorae.api.context import RequestContext
from amphorae.api.v2 import common
from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.db import engine as db
from amphorae.db import models as m
from amphorae.drivers import registry

RESOURCE = "member"
NAME = "Member"
POOL_NAME = "Pool"

Weight = t.Annotated[t.IntLike, t.Field(ge=c.MIN_WEIGHT, le=c.MAX_WEIGHT)]


class SingleCreate(t.Schema):
    """A member as the fully populated load balancer create nests it in a pool."""

    name: t.Name | None = None
    admin_state_up: t.AdminState = True
    address: t.IPAddressAsGiven
    protocol_port: t.Port
    weight: Weight | None = 1
    backup: t.StrictBool | None = False
    subnet_id: t.UUID | None = None
    monitor_address: t.IPAddressAsGiven | None = None
    monitor_port: t.Port | None = None
    tags: t.Tags | None = None
    request_sriov: t.StrictBool | None = False


class Create(SingleCreate):
    # Accepted for compatibility; a member always belongs to its load balancer's project.
    project_id: t.ProjectId | None = None
    tenant_id: t.ProjectId | None = None


class Update(t.Schema):
    name: t.Name | None = None
    admin_state_up: t.AdminState = True
    weight: Weight | None = None
    backup: t.StrictBool | None = None
    monitor_address: t.IPAddressAsGiven | None = None
    monitor_port: t.Port | None = None
    tags: t.Tags | None = None


COLLECTION = listing.Collection(
    model=m.Member, key="members", links_key="members_links",
    columns={
        "id": m.Member.id, "name": m.Member.name, "project_id": m.Member.project_id,
        "pool_id": m.Member.pool_id,
        "provisioning_status": m.Member.provisioning_status,
        "operating_status": m.Member.operating_status,
        "admin_state_up": m.Member.enabled, "address": m.Member.ip_address,
        "protocol_port": m.Member.protocol_port, "weight": m.Member.weight,
        "backup": m.Member.backup, "subnet_id": m.Member.subnet_id,
        "monitor_address": m.Member.monitor_address, "monitor_port": m.Member.monitor_port,
        "vnic_type": m.Member.vnic_type,
        "created_at": m.Member.created_at, "updated_at": m.Member.updated_at,
    },
)


def view(mb: m.Member) -> dict[str, Any]:
    out = common.base_view(mb)
    out.update(
        address=mb.ip_address,
        protocol_port=mb.protocol_port,
        weight=mb.weight,
        backup=mb.backup,
        subnet_id=mb.subnet_id,
        monitor_address=mb.monitor_address,
        monitor_port=mb.monitor_port,
        vnic_type=mb.vnic_type,
    )
    return out


# --- shared helpers (health monitors use them too) ------------------------------------


def pool_listeners(pool: m.Pool) -> list[m.Listener]:
    """Octavia's Pool.listeners: listeners using the pool as default pool, plus those whose
    enabled L7 policies with at least one rule redirect to it."""
    found = {li.id: li for li in pool.listeners_as_default}
    for pol in pool.l7policies_redirecting:
        if pol.enabled and pol.rules and pol.listener_id not in found:
            found[pol.listener_id] = pol.listener
    return list(found.values())


def load_pool(session: Session, pool_id: str) -> m.Pool:
    return common.get_or_404(session, m.Pool, pool_id, POOL_NAME)


def lock_pool_tree(session: Session, pool: m.Pool) -> None:
    """The pool must be ACTIVE and its load balancer lockable; then the load balancer, the
    pool's listeners and the pool go PENDING_UPDATE."""
    if pool.provisioning_status != c.ACTIVE:
        raise errors.ImmutableObject(resource=POOL_NAME, id=pool.id)
    common.lock_load_balancer(session, pool.load_balancer_id)
    common.mark_pending_update(*pool_listeners(pool), pool)


def _pool_lb(session: Session, pool: m.Pool) -> m.LoadBalancer | None:
    if pool.load_balancer is not None:
        return pool.load_balancer
    if pool.load_balancer_id:
        return session.get(m.LoadBalancer, pool.load_balancer_id)
    return None


def _flavor_allows_sriov(session: Session, lb: m.LoadBalancer | None) -> bool:
    if lb is None or not lb.flavor_id:
        return False
    flavor = session.get(m.Flavor, lb.flavor_id)
    if flavor is None:
        return False
    try:
        data = json.loads(flavor.flavor_profile.flavor_data or "{}")
    except ValueError:
        return False
    value = data.get("allow_member_sriov", False) if isinstance(data, dict) else False
    return value is True or str(value).lower() == "true"


def _check_reserved(address: str) -> None:
    wanted = ipaddress.ip_address(address).exploded.upper()
    for reserved in config.CONF.networking.reserved_ips:
        try:
            taken = ipaddress.ip_address(reserved.strip()).exploded.upper()
        except ValueError:
            taken = reserved.strip().upper()
        if wanted == taken:
            raise errors.InvalidOption(value=wanted, option="member address")


def _check_subnet(subnet_id: str | None) -> None:
    if subnet_id and registry.shared_network().get_subnet(subnet_id) is None:
        raise errors.InvalidSubresource(resource="Subnet", id=subnet_id)


def _check_ip_family(pool: m.Pool, lb: m.LoadBalancer | None, address: str) -> None:
    """The amphora's LVS (UDP/SCTP) path cannot forward between address families. As in
    Octavia, checked through the pool's listeners: a pool that serves none is free."""
    if pool.protocol not in c.LVS_PROTOCOLS or lb is None:
        return
    if not (pool.listeners_as_default or pool.l7policies_redirecting):
        return
    provider = lb.provider or c.PROVIDER_AMPHORA
    if provider not in (c.PROVIDER_AMPHORA, c.PROVIDER_OCTAVIA):
        return
    vips = [v.ip_address for v in ([lb.vip] if lb.vip else []) + list(lb.additional_vips)
            if v.ip_address]
    if not vips:
        return
    family = ipaddress.ip_address(address).version
    if all(ipaddress.ip_address(v).version != family for v in vips):
        raise errors.ProviderUnsupportedOption(
            provider=provider,
            detail="This provider doesn't support mixing IPv4 and IPv6 addresses for its "
                   f"VIP and members in {pool.protocol} load balancers.")


def _has_duplicate(session: Session, pool: m.Pool, address: str, port: int) -> bool:
    if inspect(pool).persistent:
        return session.scalar(select(m.Member.id).where(
            m.Member.pool_id == pool.id, m.Member.ip_address == address,
            m.Member.protocol_port == port).limit(1)) is not None
    # A pool of the same (not yet flushed) request: its members are all in memory.
    return any(x.ip_address == address and x.protocol_port == port for x in pool.members)


def build(session: Session, ctx: RequestContext | None, pool: m.Pool, data: SingleCreate,
          *, has_monitor: bool | None = None) -> m.Member:
    """Validate a new member of ``pool`` and add it to the session (PENDING_CREATE).

    ``has_monitor`` says whether the pool has (or will have) a health monitor; when None the
    pool's ``health_monitor`` decides. No locking, quota or job here (the callers do that).
    """
    del ctx  # the callers authorize
    with session.no_autoflush:
        _check_reserved(data.address)
        _check_subnet(data.subnet_id)
        lb = _pool_lb(session, pool)
        if data.request_sriov and not _flavor_allows_sriov(session, lb):
            raise errors.BadRequest(
                "The load balancer flavor does not allow SR-IOV member ports.")
        _check_ip_family(pool, lb, data.address)
        if _has_duplicate(session, pool, data.address, data.protocol_port):
            raise errors.DuplicateMember(address=data.address, port=data.protocol_port)
        if has_monitor is None:
            has_monitor = pool.health_monitor is not None
        member = m.Member(
            id=m.new_id(), project_id=pool.project_id, name=data.name,
            ip_address=data.address, protocol_port=data.protocol_port,
            weight=1 if data.weight is None else data.weight,
            backup=bool(data.backup), subnet_id=data.subnet_id,
            monitor_address=data.monitor_address, monitor_port=data.monitor_port,
            enabled=data.admin_state_up,
            vnic_type=c.VNIC_DIRECT if data.request_sriov else c.VNIC_NORMAL,
            provisioning_status=c.PENDING_CREATE,
            operating_status=c.OFFLINE if has_monitor else c.NO_MONITOR,
        )
        member.tags = data.tags
        member.pool = pool
        session.add(member)
    return member


# --- controllers ----------------------------------------------------------------------


def _path_pool(session: Session, pool_id: str) -> m.Pool:
    return common.get_or_404(session, m.Pool, pool_id, POOL_NAME, errors.ParentNotFound)


def _authorized_pool(req: falcon.Request, session: Session, pool_id: str,
                     *actions: str) -> m.Pool:
    pool = _path_pool(session, pool_id)
    for action in actions:
        common.authorized(req, RESOURCE, action, pool)
    return pool


def _authorized_member(req: falcon.Request, session: Session, pool_id: str, member_id: str,
                       action: str) -> m.Member:
    member = session.get(m.Member, member_id)
    if member is None or member.pool_id != pool_id:
        _path_pool(session, pool_id)
        raise errors.NotFound(resource=NAME, id=member_id)
    return common.authorized(req, RESOURCE, action, member)


class _NoChange(Exception):
    """A batch update that changes nothing: roll back, answer 202."""


class Members:
    def on_get(self, req: falcon.Request, resp: falcon.Response, pool_id: str) -> None:
        with db.session() as session:
            _authorized_pool(req, session, pool_id, "get_all")
            common.serve_list(req, resp, COLLECTION, view,
                              select(m.Member).where(m.Member.pool_id == pool_id),
                              session=session)

    def on_post(self, req: falcon.Request, resp: falcon.Response, pool_id: str) -> None:
        data = body.parse(req, RESOURCE, Create)
        with db.transaction() as session:
            pool = _authorized_pool(req, session, pool_id, "post")
            # Input checks first, so bad input is a 400 whatever the load balancer's state.
            _check_reserved(data.address)
            _check_subnet(data.subnet_id)
            lock_pool_tree(session, pool)
            member = build(session, common.context(req), pool, data)
            out = common.finish_create(session, member, view, pool.load_balancer_id,
                                       pool.project_id, {"member": 1})
        common.send(resp, {RESOURCE: out}, 201)

    def on_put(self, req: falcon.Request, resp: falcon.Response, pool_id: str) -> None:
        """Batch update: the request lists the pool's members as they should be."""
        items = _parse_batch(req)
        additive = str(listing._one(req.params.get("additive_only", "false"))).lower() \
            in listing.TRUE
        actions = ("post", "put") if additive else ("post", "put", "delete")
        try:
            with db.transaction() as session:
                pool = _authorized_pool(req, session, pool_id, *actions)
                for item in items:
                    _check_subnet(item.subnet_id)
                _batch_update(session, common.context(req), pool, items, additive)
        except _NoChange:
            pass
        resp.status = 202


def _parse_batch(req: falcon.Request) -> list[Create]:
    raw = body.envelope(req, "members")
    if not isinstance(raw, list):
        raise errors.InvalidInput(field="members", value=body._short(raw),
                                  reason="Value should be a list.")
    return [body.validate(item, "members", Create) for item in raw]


def _batch_changes(member: m.Member, item: Create) -> dict[str, Any]:
    """Attributes a matched member takes from its request entry (Octavia applies the POST
    defaults of weight, backup, admin_state_up and the monitor fields; the others only
    when sent; request_sriov is ignored)."""
    wanted: dict[str, Any] = {
        "weight": 1 if item.weight is None else item.weight,
        "backup": bool(item.backup),
        "enabled": item.admin_state_up,
        "monitor_address": item.monitor_address,
        "monitor_port": item.monitor_port,
    }
    sent = item.model_fields_set
    if "name" in sent:
        wanted["name"] = item.name
    if "subnet_id" in sent and item.subnet_id:
        wanted["subnet_id"] = item.subnet_id
    changes = {k: v for k, v in wanted.items() if getattr(member, k) != v}
    if "tags" in sent and sorted(dict.fromkeys(item.tags or [])) != member.tags:
        changes["tags"] = item.tags
    return changes


def _batch_update(session: Session, ctx: RequestContext, pool: m.Pool, items: list[Create],
                  additive: bool) -> None:
    # Lock first, so the members compared below cannot change under us.
    lock_pool_tree(session, pool)
    existing = {(x.ip_address, x.protocol_port): x for x in session.scalars(
        select(m.Member).where(m.Member.pool_id == pool.id))}
    wanted = {(i.address, i.protocol_port) for i in items}
    _refuse_repeats(items, existing)
    new = [i for i in items if (i.address, i.protocol_port) not in existing]
    changed = []
    for item in items:
        member = existing.get((item.address, item.protocol_port))
        if member is not None:
            changes = _batch_changes(member, item)
            if changes:
                changed.append((member, changes))
    doomed = [] if additive else [
        x for key, x in existing.items()
        if key not in wanted and x.provisioning_status != c.PENDING_DELETE]
    if not (new or changed or doomed):
        raise _NoChange()
    has_monitor = pool.health_monitor is not None
    for item in new:
        build(session, ctx, pool, item, has_monitor=has_monitor)
    for member, changes in changed:
        for key, value in changes.items():
            setattr(member, key, value)
        member.provisioning_status = c.PENDING_UPDATE
    for member in doomed:
        member.provisioning_status = c.PENDING_DELETE
    # Only a net increase is checked, as Octavia does; the deleted ones are on their way out.
    common.check_quota(session, pool.project_id, {"member": len(new) - len(doomed)},
                       leaving={"member": len(doomed)})
    common.enqueue(session, pool.load_balancer_id)
    session.flush()


def _refuse_repeats(items: list[Any], existing: dict[tuple[str, int], m.Member]) -> None:
    """One batch names a member once: Octavia refuses an existing one named again (400)
    and a new one named again (409, its database's duplicate)."""
    seen: set[tuple[str, int]] = set()
    for item in items:
        key = (item.address, item.protocol_port)
        if key in seen and key in existing:
            raise errors.ValidationError(
                detail="Member must be updated only once in the same request.")
        if key in seen:
            raise errors.DuplicateMember(address=item.address, port=item.protocol_port)
        seen.add(key)


class Member:
    def on_get(self, req: falcon.Request, resp: falcon.Response, pool_id: str,
               member_id: str) -> None:
        with db.session() as session:
            member = _authorized_member(req, session, pool_id, member_id, "get_one")
            common.send_one(resp, req, RESOURCE, view(member))

    def on_put(self, req: falcon.Request, resp: falcon.Response, pool_id: str,
               member_id: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        given = data.given()
        with db.transaction() as session:
            member = _authorized_member(req, session, pool_id, member_id, "put")
            lock_pool_tree(session, member.pool)
            common.set_given(member, given, {
                "name": "name", "admin_state_up": "enabled", "monitor_address": "monitor_address",
                "monitor_port": "monitor_port", "tags": "tags"})
            if "weight" in given:
                member.weight = 1 if data.weight is None else data.weight
            if "backup" in given:
                member.backup = bool(data.backup)
            out = common.finish_update(session, member, view, member.pool.load_balancer_id)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, pool_id: str,
                  member_id: str) -> None:
        with db.transaction() as session:
            member = _authorized_member(req, session, pool_id, member_id, "delete")
            lock_pool_tree(session, member.pool)
            common.finish_delete(session, member, member.pool.load_balancer_id)
        resp.status = 204


ROUTES = [
    ("/pools/{pool_id}/members", Members()),
    ("/pools/{pool_id}/members/{member_id}", Member()),
]
