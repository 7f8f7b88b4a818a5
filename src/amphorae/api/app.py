"""The WSGI application: middleware, error rendering and the v2 routes."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import falcon
from sqlalchemy import exc as sa_exc

from amphorae.api import context as ctx_mod
from amphorae.api import dashboard, metrics, neutron, versions
from amphorae.common import config, errors, logs
from amphorae.db import outage

LOG = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger("amphorae.api.access")

# Resource modules under amphorae.api.v2, each with ROUTES = [(path, resource), ...].
LBAAS_MODULES = (
    "loadbalancers", "listeners", "pools", "members", "healthmonitors", "l7policies",
    "l7rules", "quotas", "providers", "flavors", "flavorprofiles", "availabilityzones",
    "availabilityzoneprofiles",
)
OCTAVIA_MODULES = ("amphorae", "events", "scale")
PUBLIC_PATHS = {"/", "/v2", "/v2.0", *dashboard.PUBLIC_PATHS}
RETRY_AFTER = 5  # seconds a client is told to wait while the database is unavailable


class RequestMiddleware:
    """Request id, content negotiation, the `.json` suffix, the caller's context and the
    access log line."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.monotonic()
        request_id = "req-" + str(uuid.uuid4())
        req.context.request_id = request_id
        logs.REQUEST_ID.set(request_id)
        resp.set_header("x-openstack-request-id", request_id)
        req.context.auth = ctx_mod.from_headers(req.headers, request_id)
        if req.path.endswith(".json"):
            req.path = req.path[: -len(".json")]
        accept = req.get_header("Accept")
        if accept and not (req.client_accepts("application/json")):
            raise NotAcceptable(request_id)
        _refuse_nul(req)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        access_log(req, resp)
        logs.REQUEST_ID.set(None)


def access_log(req: falcon.Request, resp: falcon.Response) -> None:
    """One INFO line per call on ``amphorae.api.access`` (gunicorn's own is off)."""
    started = getattr(req.context, "started", None)
    ms = (time.monotonic() - started) * 1000 if started is not None else 0.0
    path = req.path + (f"?{req.query_string}" if req.query_string else "")
    auth = getattr(req.context, "auth", None)
    project = auth.project_id if auth is not None else None
    request_id = getattr(req.context, "request_id", None)
    ACCESS_LOG.info("%s %s %d %.1f ms project=%s request_id=%s", req.method, path,
                    resp.status_code, ms, project or "-", request_id or "-",
                    extra={"method": req.method, "path": path, "status": resp.status_code,
                           "duration_ms": round(ms, 1), "project_id": project,
                           "request_id": request_id})


def _refuse_nul(req: falcon.Request) -> None:
    """A NUL in the path or a query parameter is a 400 (PostgreSQL cannot compare one)."""
    def shown(text: str) -> str:
        return text.replace("\x00", "\\x00")

    if "\x00" in req.path:
        raise errors.InvalidInput(field="path", value=shown(req.path),
                                  reason="NUL characters are not allowed.")
    for key, value in req.params.items():
        for text in value if isinstance(value, list) else [value]:
            if "\x00" in key or "\x00" in text:
                raise errors.InvalidInput(field=shown(key), value=shown(text),
                                          reason="NUL characters are not allowed.")


class NotAcceptable(Exception):
    def __init__(self, request_id: str) -> None:
        self.request_id = request_id


def _not_acceptable(req: falcon.Request, resp: falcon.Response, ex: NotAcceptable,
                    params: dict[str, Any]) -> None:
    resp.status = 406
    resp.media = {"errors": [{"status": 406, "title": "Not Acceptable",
                              "detail": "Only content type application/json is accepted.",
                              "request_id": ex.request_id}]}


def _api_error(req: falcon.Request, resp: falcon.Response, ex: errors.APIError,
               params: dict[str, Any]) -> None:
    resp.status = ex.status
    resp.media = ex.body()


def _http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                params: dict[str, Any]) -> None:
    status = ex.status_code
    message = ex.description or ex.title or "Error"
    if status == 404:
        message = "The resource could not be found."
    elif status == 405:
        message = "Method not allowed."
    resp.status = status
    resp.media = errors.fault_body(status, message)
    for name, value in (ex.headers or {}).items():
        resp.set_header(name, value)


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                params: dict[str, Any]) -> None:
    LOG.exception("Unexpected error serving %s %s", req.method, req.path)
    resp.status = 500
    resp.media = errors.fault_body(500, "Internal Server Error")


def _database_error(req: falcon.Request, resp: falcon.Response, ex: Exception,
                    params: dict[str, Any]) -> None:
    """The database is away: a 503 the client may retry; the transaction was rolled
    back, so nothing of the request was written. Other database errors are bugs."""
    if not outage.unavailable(ex):
        _unexpected(req, resp, ex, params)
        return
    LOG.warning("database unavailable serving %s %s: %s", req.method, req.path,
                outage.describe(ex))
    resp.status = 503
    resp.set_header("Retry-After", str(RETRY_AFTER))
    resp.media = errors.fault_body(
        503, "The database is unavailable; the request was not carried out. Retry later.")


def _add_routes(app: falcon.App) -> None:
    import importlib

    versions.add_routes(app)
    metrics.add_routes(app)
    neutron.add_routes(app)
    dashboard.add_routes(app)
    for version in ("/v2", "/v2.0"):
        for prefix, modules in (("/lbaas", LBAAS_MODULES), ("", LBAAS_MODULES),
                                ("/octavia", OCTAVIA_MODULES)):
            for name in modules:
                module = importlib.import_module(f"amphorae.api.v2.{name}")
                for path, resource in module.ROUTES:
                    app.add_route(version + prefix + path, resource)


def create_app() -> falcon.App:
    """The API itself, without authentication (see wsgi_app)."""
    app = falcon.App(middleware=[metrics.RequestMetrics(), RequestMiddleware()])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    app.resp_options.default_media_type = "application/json"
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(sa_exc.DBAPIError, _database_error)
    app.add_error_handler(sa_exc.TimeoutError, _database_error)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(errors.APIError, _api_error)
    app.add_error_handler(NotAcceptable, _not_acceptable)
    _add_routes(app)
    return app


def wsgi_app() -> Any:
    """What the server serves: the API, behind keystonemiddleware's auth_token when
    ``[api_settings] auth_strategy = keystone`` (configured by ``[keystone_authtoken]``)."""
    app = create_app()
    if config.CONF.api_settings.auth_strategy != "keystone":
        return app
    from amphorae.api import keystone

    return keystone.AuthToken(app, PUBLIC_PATHS | metrics.public_paths())
