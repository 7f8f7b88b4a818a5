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

from amphorae.api import body, listing, policy
from amphorae.api import types as t
from amphorae.api.v2 import common
from amphorae.api.v2 import provider_capabilities as caps
from amphorae.common import errors
from amphorae.db import engine as db
from amphorae.db import models as m

ProviderName = t.Annotated[t.StrictStr, Field(max_length=255)]
Document = t.Annotated[t.StrictStr, Field(max_length=4096)]


class ProfileCreate(t.Schema):
    """The fields of both profile kinds; each adds its document field (which comes last)."""

    name: t.Name
    provider_name: ProviderName


class ProfileUpdate(t.Schema):
    name: t.Name | None = None
    provider_name: ProviderName | None = None


class Create(ProfileCreate):
    flavor_data: Document


class Update(ProfileUpdate):
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
        return common.load_catalog(session, self.model, profile_id, self.resource_name)

    def in_use(self, session: Any, profile_id: str) -> bool:
        count = session.scalar(select(func.count()).where(self.used_by == profile_id))
        return bool(count)


class Profiles:
    def __init__(self, kind: ProfileKind) -> None:
        self.kind = kind

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        kind = self.kind
        kind.authorize(req, "get_all")
        common.serve_list(req, resp, kind.collection, kind.view)

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
        common.serve_one(req, resp, kind.key, kind.load, profile_id, kind.view)

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
                raise common.in_use(kind.resource_name, profile_id)
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
            common.delete_unless_used(session, obj, kind.used_by == profile_id,
                                      kind.resource_name, profile_id)
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
