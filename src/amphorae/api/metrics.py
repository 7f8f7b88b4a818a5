"""``/metrics`` on the API port, and the API's own figures: every answered request by
route template (``/v2/lbaas/loadbalancers/{lb_id}``, never the raw path: the labels stay
few whatever clients ask for) and status, with its latency."""

from __future__ import annotations

import time

import falcon

from amphorae.api import policy
from amphorae.common import config, metrics
from amphorae.db import metrics as db_metrics

PATH = "/metrics"
UNMATCHED = "unmatched"  # the route of a request no route took (a 404, mostly)


class RequestMetrics:
    """Falcon middleware; first in the list, so it times the others too."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, req_succeeded: bool) -> None:
        started = getattr(req.context, "metrics_started", None)
        if started is None:
            return
        metrics.api_request(req.method, req.uri_template or UNMATCHED, resp.status_code,
                            time.perf_counter() - started)


class Metrics:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if _auth_required():
            policy.authorize(req.context.auth, "amphora", "get_all")
        resp.data, resp.content_type = metrics.exposition([db_metrics.DatabaseCollector()])


def _auth_required() -> bool:
    return (config.CONF.metrics.auth_required
            and config.CONF.api_settings.auth_strategy == "keystone")


def public_paths() -> set[str]:
    """Paths keystone's auth_token lets through without a token."""
    return {PATH} if config.CONF.metrics.enabled and not _auth_required() else set()


def add_routes(app: falcon.App) -> None:
    if config.CONF.metrics.enabled:
        app.add_route(PATH, Metrics())

