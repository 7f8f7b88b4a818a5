"""Serving the API: gunicorn with threaded workers (keep-alive, several processes)."""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.app.base import BaseApplication

from amphorae.common import config, metrics

LOG = logging.getLogger(__name__)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from amphorae.api.app import wsgi_app

        return wsgi_app()


def workers() -> int:
    configured = config.CONF.api_settings.api_workers
    return configured if configured > 0 else max(2, os.cpu_count() or 1)


def serve(host: str | None = None, port: int | None = None) -> None:
    conf = config.CONF.api_settings
    host = host or conf.bind_host
    port = port or conf.bind_port
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    LOG.info("amphorae API listening on http://%s", bind)
    metrics.share_directory()  # the gunicorn workers' figures, summed at /metrics
    _Gunicorn({
        "bind": bind,
        "workers": workers(),
        "worker_class": "gthread",
        "threads": 4,
        "keepalive": 30,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "debug" if config.CONF.debug else "warning",
        "graceful_timeout": 5,
        "timeout": 120,
    }).run()
