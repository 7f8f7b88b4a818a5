"""/v2/lbaas/flavors: named, operator-defined load balancer flavors (readable by all,
written by admins), each pointing at a flavor profile."""

from __future__ import annotations

from typing import Any

import falcon
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from amphorae.api import body, listing, policy
from amphorae.api import types as t
from amphorae.api.v2 import common
from amphorae.common import constants as c
from amphorae.common import errors
from amphorae.db import engine as db
from amphorae.db import models as m

RESOURCE = "flavor"
NAME = "Flavor"


class Create(t.Schema):
    name: t.Name
    description: t.Description | None = None
    enabled: t.AdminState = True
    flavor_profile_id: t.UUID


class Update(t.Schema):
    name: t.Name | None = None
    description: t.Description | None = None
    enabled: t.AdminState = True


COLLECTION = listing.Collection(
    model=m.Flavor, key="flavors", links_key="flavors_links",
    columns={"id": m.Flavor.id, "name": m.Flavor.name, "description": m.Flavor.description,
             "enabled": m.Flavor.enabled, "flavor_profile_id": m.Flavor.flavor_profile_id},
    taggable=False,
)


def view(flavor: Any) -> dict[str, Any]:
    return {"id": flavor.id, "name": flavor.name or "", "description": flavor.description or "",
            "enabled": flavor.enabled, "flavor_profile_id": flavor.flavor_profile_id}


def _authorize(req: falcon.Request, action: str) -> None:
    policy.authorize(common.context(req), RESOURCE, action)


def _load(session: Session, flavor_id: str) -> m.Flavor:
    # The nil UUID is reserved by Octavia (for "no flavor") and never served.
    flavor = None if flavor_id == c.NIL_UUID else session.get(m.Flavor, flavor_id)
    if flavor is None:
        raise errors.NotFound(resource=NAME, id=flavor_id)
    return flavor


def _duplicate(name: str) -> errors.APIError:
    return errors.Conflict(f"A flavor of {name} already exists.")


def _check_name_free(session: Session, name: str, flavor_id: str | None = None) -> None:
    stmt = select(m.Flavor.id).where(m.Flavor.name == name)
    if flavor_id:
        stmt = stmt.where(m.Flavor.id != flavor_id)
    if session.scalars(stmt).first() is not None:
        raise _duplicate(name)


def _flush(session: Session, name: str) -> None:
    """Flush in a savepoint so that a name taken concurrently is a 409, not a 500."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise _duplicate(name) from None


class Flavors:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _authorize(req, "get_all")
        lp = listing.parse(req, COLLECTION)
        stmt = listing.query(COLLECTION, lp)
        with db.session() as session:
            rows, links = listing.page(session, COLLECTION, lp, stmt, req)
            common.send_list(resp, COLLECTION, lp, rows, links, view)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body.parse(req, RESOURCE, Create)
        _authorize(req, "post")
        with db.transaction() as session:
            profile_id = data.flavor_profile_id
            if profile_id == c.NIL_UUID or session.get(m.FlavorProfile, profile_id) is None:
                raise errors.NotFound(resource="Flavor profile", id=profile_id)
            _check_name_free(session, data.name)
            flavor = m.Flavor(id=m.new_id(), name=data.name, description=data.description,
                              enabled=data.enabled, flavor_profile_id=profile_id)
            session.add(flavor)
            _flush(session, data.name)
            out = view(flavor)
        common.send(resp, {RESOURCE: out}, 201)


class Flavor:
    def on_get(self, req: falcon.Request, resp: falcon.Response, flavor_id: str) -> None:
        _authorize(req, "get_one")
        with db.session() as session:
            out = view(_load(session, flavor_id))
        common.send_one(resp, req, RESOURCE, out)

    def on_put(self, req: falcon.Request, resp: falcon.Response, flavor_id: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        _authorize(req, "put")
        given = data.given()
        if "name" in given and data.name is None:
            raise errors.InvalidOption(value=None, option="name")
        with db.transaction() as session:
            flavor = _load(session, flavor_id)
            if "name" in given:
                _check_name_free(session, str(data.name), flavor_id)
                flavor.name = str(data.name)
            if "description" in given:
                flavor.description = data.description
            if "enabled" in given:
                flavor.enabled = data.enabled
            _flush(session, flavor.name)
            out = view(flavor)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, flavor_id: str) -> None:
        _authorize(req, "delete")
        in_use = errors.Conflict(f"{NAME} {flavor_id} is in use and cannot be modified.")
        with db.transaction() as session:
            flavor = _load(session, flavor_id)
            # Load balancers keep their flavor until housekeeping purges them, as in
            # Octavia, where the foreign key refuses the delete.
            used = session.scalar(select(func.count()).select_from(m.LoadBalancer)
                                  .where(m.LoadBalancer.flavor_id == flavor_id))
            if used:
                raise in_use
            try:
                with session.begin_nested():
                    session.delete(flavor)
            except IntegrityError:
                raise in_use from None
        resp.status = 204


ROUTES = [
    ("/flavors", Flavors()),
    ("/flavors/{flavor_id}", Flavor()),
]
