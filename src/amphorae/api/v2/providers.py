"""/v2/lbaas/providers: the enabled provider drivers and what their flavor and
availability zone profiles may say. Served from configuration, no database."""

from __future__ import annotations

from typing import Any

import falcon

from amphorae.api import listing, policy
from amphorae.api.v2 import common
from amphorae.api.v2 import provider_capabilities as caps
from amphorae.common import config


def _fields(req: falcon.Request) -> list[str] | None:
    return listing._many(req.params["fields"]) if "fields" in req.params else None


def _one(req: falcon.Request, name: str) -> str | None:
    value = req.params.get(name)
    return listing._one(value) if value is not None else None


class Providers:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy.authorize(common.context(req), "provider", "get_all")
        rows = [{"name": name, "description": description} for name, description
                in config.CONF.api_settings.enabled_provider_drivers.items()]
        resp.media = {"providers": [listing.select_fields(r, _fields(req)) for r in rows]}


class Capabilities:
    """flavor_capabilities or availability_zone_capabilities of one provider."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rule = "provider-flavor" if kind == "flavor" else "provider-availability-zone"
        self.key = f"{kind}_capabilities"

    def on_get(self, req: falcon.Request, resp: falcon.Response, provider: str) -> None:
        policy.authorize(common.context(req), self.rule, "get_all")
        driver = caps.get_driver(provider)
        rows: list[dict[str, Any]] = caps.listing(getattr(driver, self.kind))
        # Octavia applies only these two exact-match filters here.
        name, description = _one(req, "name"), _one(req, "description")
        if name:
            rows = [r for r in rows if r["name"] == name]
        if description:
            rows = [r for r in rows if r["description"] == description]
        resp.media = {self.key: [listing.select_fields(r, _fields(req)) for r in rows]}


ROUTES = [
    ("/providers", Providers()),
    ("/providers/{provider}/flavor_capabilities", Capabilities("flavor")),
    ("/providers/{provider}/availability_zone_capabilities",
     Capabilities("availability_zone")),
]
