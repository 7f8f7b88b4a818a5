"""Serving the API: gunicorn with threaded workers (keep-alive, several processes)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers import gthread

from amphorae.common import config, metrics

LOG = logging.getLogger(__name__)


# How long a stopping worker still reads requests on its idle kept-alive connections (one
# a client sent as the stop came gets its answer, with "Connection: close").
STOP_LINGER = 0.2


class Worker(gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, stopping in a fraction of a second.

    gunicorn keeps a stopping worker's idle kept-alive connections open for 2 s, and
    waits up to 5 s for a client that connected but sent nothing yet (past
    ``graceful_timeout``: the arbiter then kills the worker, "Worker was sent SIGKILL!").
    Here both go at once, while requests in progress still run to their end. (The
    worker process then leaves through ``cli._leave``, as the arbiter does.)"""

    def init_process(self) -> None:
        self._waiting: set[gthread.TConn] = set()  # handed to a thread, no request yet
        super().init_process()

    def enqueue_req(self, conn: gthread.TConn) -> None:
        if not conn.initialized:
            self._waiting.add(conn)
        super().enqueue_req(conn)

    def finish_request(self, conn: gthread.TConn, fs: Any) -> None:
        self._waiting.discard(conn)
        super().finish_request(conn, fs)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # Run by the worker's own loop, as every change to its connections is.
        self.method_queue.defer(self._drop_idle)

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGINT/SIGQUIT: gunicorn's quick stop. Its own raises SystemExit in whatever
        the main thread was doing, and the interpreter then joins every request thread;
        one stuck there (seen under load) held the worker past graceful_timeout and
        the arbiter killed it. A quick stop leaves at once instead."""
        self.alive = False
        self._end_waits()
        self.cfg.worker_int(self)
        logging.shutdown()
        os._exit(0)

    def _drop_idle(self) -> None:
        deadline = time.monotonic() + STOP_LINGER
        for conn in self.keepalived_conns:
            conn.timeout = min(conn.timeout, deadline)
        for conn in self.pending_conns:  # connected, yet sent nothing for seconds
            conn.timeout = 0
        self.murder_pending()
        self._end_waits()

    def _end_waits(self) -> None:
        """Threads waiting for a new connection's first byte stop waiting (one whose
        request has arrived is served)."""
        for conn in list(self._waiting):
            if not conn.initialized and not conn.data_ready:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)


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
        "worker_class": f"{__name__}.Worker",
        "threads": 4,
        "keepalive": 30,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "debug" if config.CONF.debug else "warning",
        "graceful_timeout": 5,
        "timeout": 120,
        "control_socket_disable": True,  # gunicorn 27's ~/.gunicorn/gunicorn.ctl: one per host
    }).run()
