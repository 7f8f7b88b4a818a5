"""/v2/lbaas/flavors: named, operator-defined load balancer flavors (readable by all,
written by admins), each pointing at a flavor profile."""

from __future__ import annotations

from typing import Any

import falcon
from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.api import body, listing, policy
from amphorae.api import types as t
from amphorae.api.v2 import common
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
    return common.load_catalog(session, m.Flavor, flavor_id, NAME)


def _duplicate(name: str) -> errors.APIError:
    return errors.Conflict(f"A flavor of {name} already exists.")


def _check_name_free(session: Session, name: str, flavor_id: str | None = None) -> None:
    stmt = select(m.Flavor.id).where(m.Flavor.name == name)
    if flavor_id:
        stmt = stmt.where(m.Flavor.id != flavor_id)
    if session.scalars(stmt).first() is not None:
        raise _duplicate(name)


class Flavors:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _authorize(req, "get_all")
        common.serve_list(req, resp, COLLECTION, view)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body.parse(req, RESOURCE, Create)
        _authorize(req, "post")
        with db.transaction() as session:
            profile_id = data.flavor_profile_id
            common.load_catalog(session, m.FlavorProfile, profile_id, "Flavor profile")
            _check_name_free(session, data.name)
            flavor = m.Flavor(id=m.new_id(), name=data.name, description=data.description,
                              enabled=data.enabled, flavor_profile_id=profile_id)
            session.add(flavor)
            common.flush_or_conflict(session, _duplicate(data.name))
            out = view(flavor)
        common.send(resp, {RESOURCE: out}, 201)


class Flavor:
    def on_get(self, req: falcon.Request, resp: falcon.Response, flavor_id: str) -> None:
        _authorize(req, "get_one")
        common.serve_one(req, resp, RESOURCE, _load, flavor_id, view)

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
            common.set_given(flavor, given, {"description": "description", "enabled": "enabled"})
            common.flush_or_conflict(session, _duplicate(flavor.name))
            out = view(flavor)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, flavor_id: str) -> None:
        _authorize(req, "delete")
        with db.transaction() as session:
            flavor = _load(session, flavor_id)
            common.delete_unless_a_load_balancer_uses(
                session, flavor, m.LoadBalancer.flavor_id, flavor_id, NAME)
        resp.status = 204


ROUTES = [
    ("/flavors", Flavors()),
    ("/flavors/{flavor_id}", Flavor()),
]
