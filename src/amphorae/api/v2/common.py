"""Helpers every v2 controller uses: context, lookups with project scoping, the status
lock on the load balancer, quotas, jobs and JSON responses."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any

import falcon
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload

from amphorae.api import listing, policy
from amphorae.api.context import RequestContext
from amphorae.common import config, errors
from amphorae.common import constants as c
from amphorae.db import engine as db
from amphorae.db import jobs
from amphorae.db import models as m

View = Callable[[Any], dict[str, Any]]
LB_NAME = "Load Balancer"


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


def send_list(resp: falcon.Response, coll: listing.Collection, lp: listing.ListParams,
              rows: list[Any], links: list[dict[str, str]], to_view: Any) -> None:
    resp.media = {coll.key: listing.render(rows, to_view, lp.fields), coll.links_key: links}


def send_one(resp: falcon.Response, req: falcon.Request, key: str, view: dict[str, Any],
             status: int = 200) -> None:
    fields = listing._many(req.params["fields"]) if "fields" in req.params else None
    send(resp, {key: listing.select_fields(view, fields)}, status)


def serve_one(req: falcon.Request, resp: falcon.Response, key: str,
              load: Callable[[Session, str], Any], obj_id: str, to_view: View) -> None:
    """Answer a GET of one object the caller has authorized."""
    with db.session() as session:
        out = to_view(load(session, obj_id))
    send_one(resp, req, key, out)


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


def request_project(ctx: RequestContext, resource: str, body_project: str | None) -> str:
    project = body_project or ctx.project_id
    if not project:
        raise errors.ValidationError(detail="Missing project ID in request where one is required.")
    policy.authorize(ctx, resource, "post", project)
    return project


def serve_list(req: falcon.Request, resp: falcon.Response, coll: listing.Collection,
               to_view: View, base: Select | None = None, *, scalars: bool = True,
               session: Session | None = None) -> None:
    """Answer a list call the caller has authorized: one filtered, sorted page of ``base``
    (all of ``coll.model`` by default), read in ``session`` when the caller has one open."""
    lp = listing.parse(req, coll)
    _send_page(req, resp, coll, lp, listing.query(coll, lp, base), to_view, scalars, session)


def serve_project_list(req: falcon.Request, resp: falcon.Response, resource: str,
                       coll: listing.Collection, project_column: Any, to_view: View,
                       base: Select | None = None, *, scalars: bool = True) -> None:
    """Answer a list call scoped by project (see scoped_list): authorize, filter, page."""
    lp, where = scoped_list(req, resource, coll, project_column)
    stmt = listing.query(coll, lp, base)
    if where is not None:
        stmt = stmt.where(where)
    _send_page(req, resp, coll, lp, stmt, to_view, scalars, None)


def _send_page(req: falcon.Request, resp: falcon.Response, coll: listing.Collection,
               lp: listing.ListParams, stmt: Select, to_view: View, scalars: bool,
               session: Session | None) -> None:
    # The caller's session when it has one open (it loaded the parent there).
    with db.session() if session is None else contextlib.nullcontext(session) as current:
        rows, links = listing.page(current, coll, lp, stmt, req, scalars=scalars)
        send_list(resp, coll, lp, rows, links, to_view)


# --- lookups and the load balancer lock -----------------------------------------------


def find(session: Session, model: type, obj_id: str, resource_name: str,
         missing: type[errors.NotFound] = errors.NotFound) -> Any:
    """The row of ``model`` with this primary key, or Octavia's 404 (``missing``:
    ParentNotFound for a parent named in the path)."""
    obj = session.get(model, obj_id)
    if obj is None:
        raise missing(resource=resource_name, id=obj_id)
    return obj


def authorized(req: falcon.Request, resource: str, action: str, obj: Any) -> Any:
    """``obj`` when the caller may ``action`` it. Another project's object is a 403, as
    Octavia answers (it loads the object, then checks the policy on its project)."""
    policy.authorize(context(req), resource, action, obj.project_id)
    return obj


def get_or_404(session: Session, model: type, obj_id: str, resource_name: str,
               missing: type[errors.NotFound] = errors.NotFound) -> Any:
    obj = session.get(model, obj_id)
    if obj is None or getattr(obj, "provisioning_status", None) == c.DELETED:
        raise missing(resource=resource_name, id=obj_id)
    return obj


def lb_project(session: Session, lb_id: str) -> str | None:
    """The owning project of a live load balancer, without loading it into the session
    (so the row lock taken next reads it fresh)."""
    row = session.execute(select(m.LoadBalancer.project_id, m.LoadBalancer.provisioning_status)
                          .where(m.LoadBalancer.id == lb_id)).first()
    if row is None or row.provisioning_status == c.DELETED:
        raise errors.NotFound(resource=LB_NAME, id=lb_id)
    return row.project_id


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
        raise errors.NotFound(resource=LB_NAME, id=lb_id)
    if lb.provisioning_status not in allowed:
        if for_child:
            raise errors.ImmutableObject(resource=LB_NAME, id=lb_id)
        raise errors.LBPendingState(state=lb.provisioning_status, id=lb_id)
    lb.provisioning_status = new_status
    return lb


def enqueue(session: Session, lb_id: str, action: str = c.JOB_RECONCILE, **kwargs: Any) -> None:
    jobs.enqueue(session, lb_id, action, **kwargs)


def mark_pending_update(*objs: Any) -> None:
    for obj in objs:
        if obj is not None and obj.provisioning_status != c.PENDING_DELETE:
            obj.provisioning_status = c.PENDING_UPDATE


# --- the end of a load balancer child's POST, PUT and DELETE -----------------------------


def finish_create(session: Session, obj: Any, to_view: View, lb_id: str, project_id: str,
                  counts: dict[str, int]) -> dict[str, Any]:
    """Check the quotas of the new objects, queue the job; the view after the flush."""
    check_quota(session, project_id, counts)
    enqueue(session, lb_id)
    session.flush()
    return to_view(obj)


def finish_update(session: Session, obj: Any, to_view: View, lb_id: str) -> dict[str, Any]:
    """``obj`` goes PENDING_UPDATE and the job is queued; the view after the flush."""
    obj.provisioning_status = c.PENDING_UPDATE
    enqueue(session, lb_id)
    session.flush()
    return to_view(obj)


def finish_delete(session: Session, obj: Any, lb_id: str) -> None:
    obj.provisioning_status = c.PENDING_DELETE
    enqueue(session, lb_id)


def set_given(obj: Any, given: dict[str, Any], columns: dict[str, str]) -> None:
    """PUT: copy each API field the client sent to its column (``columns``: field -> column)."""
    for field, column in columns.items():
        if field in given:
            setattr(obj, column, given[field])


# --- flavors, availability zones and their profiles ------------------------------------


def load_catalog(session: Session, model: type, key: str, resource_name: str) -> Any:
    # The nil UUID is reserved by Octavia (for "no flavor") and never served.
    obj = None if key == c.NIL_UUID else session.get(model, key)
    if obj is None:
        raise errors.NotFound(resource=resource_name, id=key)
    return obj


def in_use(resource_name: str, key: str) -> errors.APIError:
    return errors.Conflict(f"{resource_name} {key} is in use and cannot be modified.")


def flush_or_conflict(session: Session, conflict: errors.APIError) -> None:
    """Flush in a savepoint so that a name taken concurrently is a 409, not a 500."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise conflict from None


def delete_unless_a_load_balancer_uses(session: Session, obj: Any, column: Any, value: str,
                                        resource_name: str) -> None:
    """Delete ``obj`` (a flavor, an availability zone) unless a live load balancer refers
    to it through ``column``; DELETED ones, kept until housekeeping purges them, let go
    of it first, as in Octavia."""
    session.execute(update(m.LoadBalancer).where(
        column == value, m.LoadBalancer.provisioning_status == c.DELETED).values(
        {column.key: None}))
    delete_unless_used(session, obj, column == value, resource_name, value)


def delete_unless_used(session: Session, obj: Any, used_by: Any, resource_name: str,
                       key: str) -> None:
    """Delete ``obj`` unless a row matches ``used_by`` (a condition on the referring table):
    then, or when such a row appears meanwhile and the foreign key refuses, a 409."""
    if session.scalar(select(func.count()).where(used_by)):
        raise in_use(resource_name, key)
    try:
        with session.begin_nested():
            session.delete(obj)
    except IntegrityError:
        raise in_use(resource_name, key) from None


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
