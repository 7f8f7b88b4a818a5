"""/v2/lbaas/availabilityzones: named availability zones (readable by all, written by
admins), keyed by name, each pointing at an availability zone profile."""

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

RESOURCE = "availability_zone"
RULE = "availability-zone"
NAME = "Availability Zone"
AZ = m.AvailabilityZone


class Create(t.Schema):
    name: t.Name
    description: t.Description | None = None
    enabled: t.AdminState = True
    availability_zone_profile_id: t.UUID


class Update(t.Schema):
    description: t.Description | None = None
    enabled: t.AdminState = True


class _Keys:
    """What the list pager needs of the model: zones are identified (and paged) by name."""

    id = AZ.name


COLLECTION = listing.Collection(
    model=_Keys, key="availability_zones", links_key="availability_zones_links",
    columns={"name": AZ.name, "description": AZ.description, "enabled": AZ.enabled,
             "availability_zone_profile_id": AZ.availability_zone_profile_id},
    taggable=False,
)


def view(zone: Any) -> dict[str, Any]:
    return {"name": zone.name, "description": zone.description or "",
            "enabled": zone.enabled,
            "availability_zone_profile_id": zone.availability_zone_profile_id}


def _authorize(req: falcon.Request, action: str) -> None:
    policy.authorize(common.context(req), RULE, action)


def _load(session: Session, name: str) -> m.AvailabilityZone:
    return common.load_catalog(session, AZ, name, NAME)


def _duplicate(name: str) -> errors.APIError:
    return errors.Conflict(f"A availability zone of {name} already exists.")


class AvailabilityZones:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _authorize(req, "get_all")
        # Plain rows with the name also labelled "id", which the pager keys on.
        base = select(*AZ.__table__.c, AZ.name.label("id"))
        common.serve_list(req, resp, COLLECTION, view, base, scalars=False)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body.parse(req, RESOURCE, Create)
        _authorize(req, "post")
        with db.transaction() as session:
            profile_id = data.availability_zone_profile_id
            common.load_catalog(session, m.AvailabilityZoneProfile, profile_id,
                                "Availability Zone Profile")
            if session.get(AZ, data.name) is not None:
                raise _duplicate(data.name)
            zone = AZ(name=data.name, description=data.description, enabled=data.enabled,
                      availability_zone_profile_id=profile_id)
            session.add(zone)
            common.flush_or_conflict(session, _duplicate(data.name))
            out = view(zone)
        common.send(resp, {RESOURCE: out}, 201)


class AvailabilityZone:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _authorize(req, "get_one")
        common.serve_one(req, resp, RESOURCE, _load, name, view)

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        _authorize(req, "put")
        given = data.given()
        with db.transaction() as session:
            zone = _load(session, name)
            common.set_given(zone, given, {"description": "description", "enabled": "enabled"})
            session.flush()
            out = view(zone)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _authorize(req, "delete")
        with db.transaction() as session:
            zone = _load(session, name)
            common.delete_unless_a_load_balancer_uses(
                session, zone, m.LoadBalancer.availability_zone, name, NAME)
        resp.status = 204


ROUTES = [
    ("/availabilityzones", AvailabilityZones()),
    ("/availabilityzones/{name}", AvailabilityZone()),
]
