"""Helpers every v2 controller uses: context, lookups with project scoping, the status
lock on the load balancer, quotas, jobs and JSON responses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import falcon
from sqlalchemy import func, select
from sqlalchemy.orm import Session, lazyload

from amphorae.api import listing, policy
from amphorae.api.context import RequestContext
from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.db import jobs
from amphorae.db import models as m


def context(req: falcon.Request) -> RequestContext:
    return req.context.auth


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def base_view(obj: Any) -> dict[str, Any]:
    """Fields most resources share, rendered the way Octavia renders them."""
    view: dict[str, Any] = {"id": obj.id}
    if hasattr(obj, "name"):
        view["name"] = obj.name or ""
    if hasattr(obj, "description"):
        view["description"] = obj.description or ""
    if hasattr(obj, "provisioning_status"):
        view["provisioning_status"] = obj.provisioning_status
        view["operating_status"] = obj.operating_status
    if hasattr(obj, "enabled"):
        view["admin_state_up"] = obj.enabled
    if hasattr(obj, "project_id"):
        view["project_id"] = obj.project_id
        view["tenant_id"] = obj.project_id
    if hasattr(obj, "created_at"):
        view["created_at"] = iso(obj.created_at)
        view["updated_at"] = iso(obj.updated_at)
    if hasattr(obj, "_tags"):
        view["tags"] = obj.tags
    return view


def ids(objs: Any) -> list[dict[str, str]]:
    return [{"id": o.id} for o in objs]


def send(resp: falcon.Response, body: Any, status: int = 200) -> None:
    resp.status = status
    resp.media = body


def send_list(resp: falcon.Request, coll: listing.Collection, lp: listing.ListParams,
              rows: list[Any], links: list[dict[str, str]], to_view: Any) -> None:
    resp.media = {coll.key: listing.render(rows, to_view, lp.fields), coll.links_key: links}


def send_one(resp: falcon.Response, req: falcon.Request, key: str, view: dict[str, Any],
             status: int = 200) -> None:
    fields = listing._many(req.params["fields"]) if "fields" in req.params else None
    send(resp, {key: listing.select_fields(view, fields)}, status)


# --- project scoping ------------------------------------------------------------------


def scoped_list(req: falcon.Request, resource: str, coll: listing.Collection,
                project_column: Any) -> tuple[listing.ListParams, Any]:
    """Authorize a list call and return its parameters and the project condition."""
    ctx = context(req)
    lp = listing.parse(req, coll)
    requested = req.params.get("project_id")
    if isinstance(requested, list):
        raise errors.InvalidFilterArgument()
    if policy.check(ctx, resource, "get_all-global"):
        where = project_column == requested if requested else None
        return lp, where
    project = requested or ctx.project_id
    if not project:
        raise errors.PolicyForbidden()
    policy.authorize(ctx, resource, "get_all", project)
    return lp, project_column == project


def authorize_object(ctx: RequestContext, resource: str, action: str, project_id: str | None,
                     not_found: errors.APIError) -> None:
    """Another project's object is a 404, as Octavia answers, not a 403."""
    if policy.check(ctx, resource, action, project_id):
        return
    if policy.check(ctx, resource, "get_one", project_id):
        raise errors.PolicyForbidden()
    raise not_found


def request_project(ctx: RequestContext, resource: str, body_project: str | None) -> str:
    project = body_project or ctx.project_id
    if not project:
        raise errors.ValidationError(detail="Missing project ID in request where one is required.")
    policy.authorize(ctx, resource, "post", project)
    return project


# --- lookups and the load balancer lock -----------------------------------------------


def get_or_404(session: Session, model: type, obj_id: str, resource_name: str) -> Any:
    obj = session.get(model, obj_id)
    if obj is None or getattr(obj, "provisioning_status", None) == c.DELETED:
        raise errors.NotFound(resource=resource_name, id=obj_id)
    return obj


def lock_load_balancer(session: Session, lb_id: str, *, for_child: bool = True,
                       allowed: tuple[str, ...] = (c.ACTIVE,),
                       new_status: str = c.PENDING_UPDATE) -> m.LoadBalancer:
    """Test-and-set the load balancer's provisioning status under a row lock.

    A child change needs the load balancer ACTIVE (409 'immutable' otherwise); a change of
    the load balancer itself gets Octavia's 'Invalid state' 409.
    """
    # populate_existing: a row this session read before must not answer with a stale status.
    lb = session.scalars(
        select(m.LoadBalancer).where(m.LoadBalancer.id == lb_id)
        .options(lazyload("*")).with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if lb is None or lb.provisioning_status == c.DELETED:
        raise errors.NotFound(resource="Load Balancer", id=lb_id)
    if lb.provisioning_status not in allowed:
        if for_child:
            raise errors.ImmutableObject(resource="Load Balancer", id=lb_id)
        raise errors.LBPendingState(state=lb.provisioning_status, id=lb_id)
    lb.provisioning_status = new_status
    return lb


def enqueue(session: Session, lb_id: str, action: str = c.JOB_RECONCILE, **kwargs: Any) -> None:
    jobs.enqueue(session, lb_id, action, **kwargs)


def mark_pending_update(*objs: Any) -> None:
    for obj in objs:
        if obj is not None and obj.provisioning_status != c.PENDING_DELETE:
            obj.provisioning_status = c.PENDING_UPDATE


# --- quotas ---------------------------------------------------------------------------

QUOTA_MODELS: dict[str, type] = {
    "load_balancer": m.LoadBalancer,
    "listener": m.Listener,
    "pool": m.Pool,
    "health_monitor": m.HealthMonitor,
    "member": m.Member,
    "l7policy": m.L7Policy,
    "l7rule": m.L7Rule,
}
QUOTA_NAMES = {
    "load_balancer": "Load Balancer", "listener": "Listener", "pool": "Pool",
    "health_monitor": "Health Monitor", "member": "Member", "l7policy": "L7 Policy",
    "l7rule": "L7 Rule",
}


def quota_limit(row: m.Quota | None, resource: str) -> int:
    value = getattr(row, resource, None) if row is not None else None
    if value is None:
        value = getattr(config.CONF.quotas, f"default_{resource}_quota")
    return int(value)


def check_quota(session: Session, project_id: str, wanted: dict[str, int],
                leaving: dict[str, int] | None = None) -> None:
    """Refuse (403) when the project exceeds a limit of a resource in ``wanted``.

    Call it after the new objects were added to the session: they are flushed and
    counted with the existing ones. Cheap when the limits are unlimited (the default).
    ``leaving`` counts rows the same change marks PENDING_DELETE (batch member update).
    """
    wanted = {k: v for k, v in wanted.items() if v > 0}
    if not wanted:
        return
    row = session.get(m.Quota, project_id)
    limited = {k: v for k, v in wanted.items() if quota_limit(row, k) != -1}
    if not limited:
        return
    # Serialize quota checks of this project (a no-op on SQLite, whose writers are serial).
    if row is None:
        row = m.Quota(project_id=project_id)
        session.add(row)
        session.flush()
    session.execute(select(m.Quota).where(m.Quota.project_id == project_id).with_for_update())
    session.flush()
    for resource in limited:
        model = QUOTA_MODELS[resource]
        stmt = select(func.count()).select_from(model).where(model.project_id == project_id)
        if hasattr(model, "provisioning_status"):
            stmt = stmt.where(model.provisioning_status != c.DELETED)
        used = (session.scalar(stmt) or 0) - (leaving or {}).get(resource, 0)
        if used > quota_limit(row, resource):
            raise errors.QuotaExceeded(resource=QUOTA_NAMES[resource])
