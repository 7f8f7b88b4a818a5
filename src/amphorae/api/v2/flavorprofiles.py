"""/v2/lbaas/flavorprofiles: provider-specific flavor documents (admin only).

The controllers here are generic over a `ProfileKind`, and availabilityzoneprofiles.py
serves availability zone profiles with the same code: both are a name, a provider and a
JSON document the provider validates, that cannot change under the objects using them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import falcon
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from amphorae.api import body, listing, policy
from amphorae.api import types as t
from amphorae.api.v2 import common
from amphorae.api.v2 import provider_capabilities as caps
from amphorae.common import constants as c
from amphorae.common import errors
from amphorae.db import engine as db
from amphorae.db import models as m

ProviderName = t.Annotated[t.StrictStr, Field(max_length=255)]
Document = t.Annotated[t.StrictStr, Field(max_length=4096)]


class Create(t.Schema):
    name: t.Name
    provider_name: ProviderName
    flavor_data: Document


class Update(t.Schema):
    name: t.Name | None = None
    provider_name: ProviderName | None = None
    flavor_data: Document | None = None


@dataclasses.dataclass(frozen=True)
class ProfileKind:
    model: type
    key: str
    rule: str
    resource_name: str
    data_field: str
    create: type[t.Schema]
    update: type[t.Schema]
    # (provider, document text) -> parsed document; raises the 400s.
    validate: Callable[[str, str], Any]
    # The column of the objects that use a profile (flavors / availability zones).
    used_by: Any
    collection: listing.Collection

    def view(self, obj: Any) -> dict[str, Any]:
        return {"id": obj.id, "name": obj.name or "", "provider_name": obj.provider_name,
                self.data_field: getattr(obj, self.data_field)}

    def authorize(self, req: falcon.Request, action: str) -> None:
        policy.authorize(common.context(req), self.rule, action)

    def load(self, session: Any, profile_id: str) -> Any:
        obj = None if profile_id == c.NIL_UUID else session.get(self.model, profile_id)
        if obj is None:
            raise errors.NotFound(resource=self.resource_name, id=profile_id)
        return obj

    def in_use(self, session: Any, profile_id: str) -> bool:
        count = session.scalar(select(func.count()).where(self.used_by == profile_id))
        return bool(count)

    def in_use_error(self, profile_id: str) -> errors.APIError:
        return errors.Conflict(
            f"{self.resource_name} {profile_id} is in use and cannot be modified.")


class Profiles:
    def __init__(self, kind: ProfileKind) -> None:
        self.kind = kind

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        kind = self.kind
        kind.authorize(req, "get_all")
        lp = listing.parse(req, kind.collection)
        stmt = listing.query(kind.collection, lp)
        with db.session() as session:
            rows, links = listing.page(session, kind.collection, lp, stmt, req)
            common.send_list(resp, kind.collection, lp, rows, links, kind.view)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        kind = self.kind
        data = body.parse(req, kind.key, kind.create)
        kind.authorize(req, "post")
        document = getattr(data, kind.data_field)
        kind.validate(data.provider_name, document)
        with db.transaction() as session:
            obj = kind.model(id=m.new_id(), name=data.name, provider_name=data.provider_name,
                             **{kind.data_field: document})
            session.add(obj)
            session.flush()
            out = kind.view(obj)
        common.send(resp, {kind.key: out}, 201)


class Profile:
    def __init__(self, kind: ProfileKind) -> None:
        self.kind = kind

    def on_get(self, req: falcon.Request, resp: falcon.Response, profile_id: str) -> None:
        kind = self.kind
        kind.authorize(req, "get_one")
        with db.session() as session:
            out = kind.view(kind.load(session, profile_id))
        common.send_one(resp, req, kind.key, out)

    def on_put(self, req: falcon.Request, resp: falcon.Response, profile_id: str) -> None:
        kind = self.kind
        data = body.parse(req, kind.key, kind.update)
        kind.authorize(req, "put")
        given = data.given()
        for field in ("name", "provider_name", kind.data_field):
            if field in given and given[field] is None:
                raise errors.InvalidOption(value=None, option=field)
        with db.transaction() as session:
            obj = kind.load(session, profile_id)
            changes_meaning = "provider_name" in given or kind.data_field in given
            if changes_meaning and kind.in_use(session, profile_id):
                raise kind.in_use_error(profile_id)
            if changes_meaning:
                # The document must suit the provider the profile ends up with.
                kind.validate(given.get("provider_name", obj.provider_name),
                              given.get(kind.data_field, getattr(obj, kind.data_field)))
            for field, value in given.items():
                setattr(obj, field, value)
            session.flush()
            out = kind.view(obj)
        common.send(resp, {kind.key: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, profile_id: str) -> None:
        kind = self.kind
        kind.authorize(req, "delete")
        with db.transaction() as session:
            obj = kind.load(session, profile_id)
            if kind.in_use(session, profile_id):
                raise kind.in_use_error(profile_id)
            try:
                with session.begin_nested():
                    session.delete(obj)
            except IntegrityError:
                # A flavor / zone started using it meanwhile.
                raise kind.in_use_error(profile_id) from None
        resp.status = 204


COLLECTION = listing.Collection(
    model=m.FlavorProfile, key="flavorprofiles", links_key="flavorprofile_links",
    columns={"id": m.FlavorProfile.id, "name": m.FlavorProfile.name,
             "provider_name": m.FlavorProfile.provider_name,
             "flavor_data": m.FlavorProfile.flavor_data},
    taggable=False,
)

KIND = ProfileKind(
    model=m.FlavorProfile, key="flavorprofile", rule="flavor-profile",
    resource_name="Flavor profile", data_field="flavor_data", create=Create, update=Update,
    validate=caps.validate_flavor_data, used_by=m.Flavor.flavor_profile_id,
    collection=COLLECTION,
)

ROUTES = [
    ("/flavorprofiles", Profiles(KIND)),
    ("/flavorprofiles/{profile_id}", Profile(KIND)),
]
