"""Version discovery at `/` and the bare `/v2` paths."""

from __future__ import annotations

import falcon

from amphorae.common import config

# Octavia's API versions and their dates; the newest is CURRENT.
VERSIONS = [
    ("v2.0", "2016-12-11"), ("v2.1", "2018-04-20"), ("v2.2", "2018-07-31"),
    ("v2.3", "2018-12-18"), ("v2.4", "2018-12-19"), ("v2.5", "2019-01-21"),
    ("v2.6", "2019-01-25"), ("v2.7", "2018-01-25T12:00:00"), ("v2.8", "2019-02-12"),
    ("v2.9", "2019-03-04"), ("v2.10", "2019-03-05"), ("v2.11", "2019-06-24"),
    ("v2.12", "2019-09-11"), ("v2.13", "2019-09-13"), ("v2.14", "2019-11-10"),
    ("v2.15", "2020-03-10"), ("v2.16", "2020-03-15"), ("v2.17", "2020-04-29"),
    ("v2.18", "2020-04-29T01:00:00"), ("v2.19", "2020-05-12"), ("v2.20", "2020-08-02"),
    ("v2.21", "2020-09-03"), ("v2.22", "2020-09-04"), ("v2.23", "2020-09-07"),
    ("v2.24", "2020-10-15"), ("v2.25", "2021-10-02"), ("v2.26", "2022-08-29"),
    ("v2.27", "2023-05-05"), ("v2.28", "2023-11-08"), ("v2.29", "2024-10-15"),
    ("v2.30", "2025-02-26"),
]


def _stamp(date: str) -> str:
    return (date if "T" in date else date + "T00:00:00") + "Z"


def _versions(req: falcon.Request) -> list[dict[str, object]]:
    base = config.CONF.api_settings.api_base_uri or req.prefix
    href = base.rstrip("/") + "/v2"
    last = len(VERSIONS) - 1
    return [{"id": vid, "status": "CURRENT" if i == last else "SUPPORTED",
             "updated": _stamp(date), "links": [{"href": href, "rel": "self"}]}
            for i, (vid, date) in enumerate(VERSIONS)]


class Root:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"versions": _versions(req)}


class Bare:
    """Octavia answers the bare version paths with the string "v2", on which
    keystoneauth's discovery crashes when an endpoint ends in /v2; we answer with the
    current version document instead, which every client understands."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"version": _versions(req)[-1]}


def add_routes(app: falcon.App) -> None:
    app.add_route("/", Root())
    bare = Bare()
    for version in ("/v2", "/v2.0"):
        for suffix in ("", "/lbaas", "/octavia"):
            app.add_route(version + suffix, bare)
