"""/v2/octavia/events (our extension): what happened to load balancers, newest first.

An admin (or global observer) reads every project's events, anyone else only their own
project's, as Octavia scopes any list. Filters: ``load_balancer_id``, ``kind``,
``level``, ``project_id`` (whose events; another project's is a 403 unless global);
``limit`` (default :data:`DEFAULT_LIMIT`, at most ``[api_settings] pagination_max_limit``).
The rows come from db/events.py.
"""

from __future__ import annotations

from typing import Any

import falcon

from amphorae.api import listing
from amphorae.api.v2 import common
from amphorae.db import engine as db
from amphorae.db import events
from amphorae.db import models as m

RESOURCE = "event"
DEFAULT_LIMIT = 50
E = m.Event
FIELDS = ("id", "created_at", "kind", "level", "resource_type", "resource_id",
          "load_balancer_id", "project_id", "message")
COLLECTION = listing.Collection(
    model=E, key="events", links_key="events_links",
    columns={"load_balancer_id": E.load_balancer_id, "kind": E.kind, "level": E.level,
             "project_id": E.project_id},
    taggable=False, extra_params=frozenset({"project_id"}),
    choices={"kind": tuple(events.KINDS), "level": tuple(events.LEVELS)})


def view(row: m.Event) -> dict[str, Any]:
    out = {name: getattr(row, name) for name in FIELDS}
    out["created_at"] = common.iso(row.created_at)
    return out


class Events:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        lp, where = common.scoped_list(req, RESOURCE, COLLECTION, E.project_id)
        limit = lp.limit if "limit" in req.params else min(DEFAULT_LIMIT, lp.limit or
                                                           DEFAULT_LIMIT)
        stmt = listing.query(COLLECTION, lp)  # the filters, as every list applies them
        if where is not None:
            stmt = stmt.where(where)
        stmt = stmt.order_by(E.created_at.desc(), E.id.desc()).limit(limit)
        with db.session() as session:
            resp.media = {"events": [view(row) for row in session.scalars(stmt)]}


ROUTES = [("/events", Events())]
