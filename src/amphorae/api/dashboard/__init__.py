"""The operator's dashboard: static files (plain ES modules, CSS, one HTML page) under
``/dashboard/``, served as they are from this package; no build step.

The page calls the normal API from the browser, so the API's policy decides what it
shows and which of its actions succeed. The files themselves are public (see
:data:`PUBLIC_PATHS`): under keystone the page asks for a token and sends it with every
API call (docs/dashboard.md).
"""

from __future__ import annotations

from pathlib import Path

import falcon

STATIC = Path(__file__).parent / "static"
PREFIX = "/dashboard"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
# The files served, by name: those of the static folder with a known type, nothing else
# (no path from the request ever reaches the file system).
FILES = {p.name: p for p in sorted(STATIC.iterdir()) if p.suffix in TYPES}
INDEX = "index.html"
# The page holds the operator's token: it runs only its own files, talks only to its own
# origin, and is never framed.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PUBLIC_PATHS = frozenset({PREFIX, *(f"{PREFIX}/{name}" for name in FILES)})


def _serve(resp: falcon.Response, name: str) -> None:
    path = FILES.get(name)
    if path is None:
        raise falcon.HTTPNotFound()
    resp.content_type = TYPES[path.suffix]
    # Always revalidated: a new release's files are picked up on the next load.
    resp.cache_control = ["no-cache"]
    resp.set_headers(HEADERS)
    resp.data = path.read_bytes()


class Index:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The app strips a trailing slash from req.path; the page's relative URLs need it.
        if not req.env.get("PATH_INFO", "").endswith("/"):
            query = f"?{req.query_string}" if req.query_string else ""
            raise falcon.HTTPMovedPermanently(
                req.env.get("SCRIPT_NAME", "") + PREFIX + "/" + query)
        _serve(resp, INDEX)


class Asset:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _serve(resp, name)


def add_routes(app: falcon.App) -> None:
    app.add_route(PREFIX, Index())
    app.add_route(PREFIX + "/{name}", Asset())
