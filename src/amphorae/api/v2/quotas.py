"""/v2/lbaas/quotas: per-project limits. Rows store only what an operator set (NULL means
"the configured default"); single-project reads fill the defaults in.

Unlike Octavia, which skips quota checks under auth_strategy = noauth, amphorae enforces
quotas under every auth strategy (common.check_quota).
"""

from __future__ import annotations

from typing import Any

import falcon
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.api import body, listing, policy
from amphorae.api import types as t
from amphorae.api.v2 import common
from amphorae.common import errors
from amphorae.db import engine as db
from amphorae.db import models as m

RESOURCE = "quota"
Q = m.Quota

# Database column -> the API's current spelling (both spellings are served).
COLUMNS = ("load_balancer", "listener", "pool", "health_monitor", "member", "l7policy",
           "l7rule")
NEW_SPELLING = {"load_balancer": "loadbalancer", "health_monitor": "healthmonitor"}

QuotaValue = t.Annotated[t.StrictInt, Field(ge=-1, le=2000000000)]


class Update(t.Schema):
    loadbalancer: QuotaValue | None = None
    load_balancer: QuotaValue | None = None
    listener: QuotaValue | None = None
    member: QuotaValue | None = None
    pool: QuotaValue | None = None
    healthmonitor: QuotaValue | None = None
    health_monitor: QuotaValue | None = None
    l7policy: QuotaValue | None = None
    l7rule: QuotaValue | None = None


class _Keys:
    """What the list pager needs of the model: quota rows are keyed by project_id."""

    id = Q.project_id


COLLECTION = listing.Collection(
    model=_Keys, key="quotas", links_key="quotas_links",
    columns={"project_id": Q.project_id, "loadbalancer": Q.load_balancer,
             "load_balancer": Q.load_balancer, "listener": Q.listener, "member": Q.member,
             "pool": Q.pool, "healthmonitor": Q.health_monitor,
             "health_monitor": Q.health_monitor, "l7policy": Q.l7policy, "l7rule": Q.l7rule},
    taggable=False,
    extra_params=frozenset({"project_id"}),
)


def render(project_id: str | None, values: dict[str, int | None]) -> dict[str, Any]:
    """Octavia's quota object: both spellings of two limits, tenant_id beside project_id."""
    return {
        "project_id": project_id,
        "loadbalancer": values["load_balancer"], "load_balancer": values["load_balancer"],
        "listener": values["listener"], "member": values["member"], "pool": values["pool"],
        "healthmonitor": values["health_monitor"],
        "health_monitor": values["health_monitor"],
        "l7policy": values["l7policy"], "l7rule": values["l7rule"],
        "tenant_id": project_id,
    }


def raw_view(row: Any) -> dict[str, Any]:
    return render(row.project_id, {col: getattr(row, col) for col in COLUMNS})


def filled(session: Session, project_id: str) -> dict[str, Any]:
    """The project's limits with the configured defaults in place of NULLs."""
    row = session.get(Q, project_id)
    return render(project_id, {col: common.quota_limit(row, col) for col in COLUMNS})


def defaults(project_id: str | None) -> dict[str, Any]:
    return render(project_id, {col: common.quota_limit(None, col) for col in COLUMNS})


def _authorize(req: falcon.Request, action: str, project_id: str | None) -> None:
    policy.authorize(common.context(req), RESOURCE, action, project_id)


def _locked_row(session: Session, project_id: str) -> m.Quota | None:
    return session.scalars(select(Q).where(Q.project_id == project_id)
                           .with_for_update()).first()


class Quotas:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Plain rows with project_id also labelled "id", which the pager keys on.
        base = select(*Q.__table__.c, Q.project_id.label("id"))
        common.serve_project_list(req, resp, RESOURCE, COLLECTION, Q.project_id, raw_view, base,
                                  scalars=False)


class Quota:
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        _authorize(req, "get_one", project_id)
        with db.session() as session:
            out = filled(session, project_id)
        common.send(resp, {RESOURCE: out})

    def on_put(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        if len(project_id) > 36:
            raise errors.InvalidInput(field="project_id", value=project_id,
                                      reason="Value should have at most 36 characters")
        _authorize(req, "put", project_id)
        given = data.given()
        with db.transaction() as session:
            row = _locked_row(session, project_id)
            if row is None:
                row = Q(project_id=project_id)
                session.add(row)
            for column in COLUMNS:
                # The current spelling wins when a client sends both.
                for name in (column, NEW_SPELLING.get(column)):
                    if name in given:
                        setattr(row, column, given[name])
            session.flush()
            out = filled(session, project_id)
        common.send(resp, {RESOURCE: out}, 202)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        _authorize(req, "delete", project_id)
        with db.transaction() as session:
            row = _locked_row(session, project_id)
            if row is None:
                raise errors.NotFound(resource="Quotas", id=project_id)
            # Octavia keeps the row (it also counts usage there) and resets the limits.
            for column in COLUMNS:
                setattr(row, column, None)
        resp.status = 202


class ProjectDefaults:
    """/quotas/{project_id}/default: the defaults as they apply to that project."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        _authorize(req, "get_defaults", project_id)
        common.send(resp, {RESOURCE: defaults(project_id)})


class Defaults:
    """/quotas/defaults (openstacksdk's QuotaDefault): the caller's defaults."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = common.context(req)
        _authorize(req, "get_defaults", ctx.project_id)
        common.send(resp, {RESOURCE: defaults("defaults")})  # Octavia names it so


ROUTES = [
    ("/quotas", Quotas()),
    ("/quotas/defaults", Defaults()),
    ("/quotas/{project_id}", Quota()),
    ("/quotas/{project_id}/default", ProjectDefaults()),
]
