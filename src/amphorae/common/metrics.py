"""The control plane's Prometheus instruments, and how their values leave the process.

Two kinds of figures (docs/metrics.md lists every metric):

- Events (API requests, reconciles, heartbeats, failovers) are counted where they
  happen, in counters and histograms defined here.
- States (the job queue, load balancers and amphorae by status) are read from the
  database at scrape time by a collector (db/metrics.py): correct whichever process or
  host changed them.

Processes that share one exposition record into one directory with prometheus_client's
multiprocess mode: the gunicorn workers of the API and, under ``amphorae up``, the
worker, health manager and housekeeping threads of its parent, which starts the API as
its child. :func:`share_directory` makes that directory (``<state_path>/metrics/<pid>``
of the process that owns the run, fresh each start) before any instrument exists;
children inherit it through ``$PROMETHEUS_MULTIPROC_DIR``. A service run on its own
(``amphorae worker``) keeps its figures in memory and serves them on ``[metrics]
bind_port`` when that is set (:func:`serve_own_port`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec

from oslo_config import cfg

from amphorae.common import config

LOG = logging.getLogger(__name__)
P = ParamSpec("P")
ENV = "PROMETHEUS_MULTIPROC_DIR"
# Reconciles take from milliseconds (a no-op) to minutes (booting amphorae in a cloud).
RECONCILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})



class Instruments:
    """Every counter and histogram, made once per process (after :func:`share_directory`:
    prometheus_client fixes a value's storage when the value is made)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # no *_created series: multiprocess mode has none either
        self.registry = CollectorRegistry()
        r = self.registry
        self.api_requests = Counter(
            "amphorae_api_requests", "API requests answered, by route template and status.",
            ["method", "route", "status"], registry=r)
        self.api_duration = Histogram(
            "amphorae_api_request_duration_seconds",
            "Time from a request's arrival in the application to its answer.",
            ["method", "route"], registry=r)
        self.reconciles = Counter(
            "amphorae_reconciles", "Reconciles the worker finished, by action and outcome.",
            ["action", "outcome"], registry=r)
        self.reconcile_duration = Histogram(
            "amphorae_reconcile_duration_seconds", "Time a reconcile took, claim to end.",
            ["action", "outcome"], buckets=RECONCILE_BUCKETS, registry=r)
        self.heartbeats_received = Counter(
            "amphorae_heartbeats_received", "Heartbeat datagrams received.", registry=r)
        self.heartbeats_rejected = Counter(
            "amphorae_heartbeats_rejected", "Heartbeat datagrams dropped, by reason.",
            ["reason"], registry=r)
        self.heartbeats_written = Counter(
            "amphorae_heartbeats_written",
            "Accepted heartbeats, by what their database write did.", ["outcome"], registry=r)
        self.failovers = Counter(
            "amphorae_failovers", "Amphora failovers the health manager started, by reason.",
            ["reason"], registry=r)
        self.scaling_decisions = Counter(
            "amphorae_scaling_decisions",
            "Amphora counts the autoscaler changed, by direction (out, in).",
            ["direction"], registry=r)


_made = threading.Lock()


@functools.cache
def _instruments() -> Instruments:
    return Instruments()


def instruments() -> Instruments:
    """This process's one set. Made under a lock: two threads of an API worker answering
    its first requests would otherwise each make a set, and in multiprocess mode each
    set's counters overwrite the other's in the shared file (increments lost)."""
    with _made:
        return _instruments()


def share_directory(conf: cfg.ConfigOpts = config.CONF) -> str:
    """Record this process's figures, and its children's, into one directory: the one
    inherited from a parent (the API under ``amphorae up``), else a fresh
    ``<state_path>/metrics/<pid>``, removed at exit (those of runs that are gone, e.g.
    killed, by the next start)."""
    directory = os.environ.get(ENV)
    if not directory:
        directory = _fresh_directory(os.path.join(config.state_path(conf), "metrics"))
        atexit.register(_remove_own, directory, os.getpid())
        os.environ[ENV] = directory
    if _instruments.cache_info().currsize:
        raise RuntimeError("metrics: share_directory() after the first instrument was made")
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # if prometheus_client came in earlier
    return directory


def _fresh_directory(root: str) -> str:
    try:
        _remove_dead_runs(root)
        directory = os.path.join(root, str(os.getpid()))
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        return directory
    except OSError as exc:  # e.g. an API on PostgreSQL whose state_path it may not write
        LOG.warning("metrics: cannot use %s (%s): a temporary directory instead", root, exc)
        return tempfile.mkdtemp(prefix="amphorae-metrics-")


def _remove_dead_runs(root: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            if name.isdigit() and not _alive(int(name)):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


def _remove_own(directory: str, owner: int) -> None:
    """At exit of the run's owner only: forked children (gunicorn workers) inherit the
    atexit hook, and must not take the directory away from the others."""
    if os.getpid() == owner:
        shutil.rmtree(directory, ignore_errors=True)


def collector(extra: Iterable[Any] = ()) -> Any:
    """A registry of this process's figures (with its siblings' in multiprocess mode),
    then those of the collectors in ``extra``."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(instruments().registry)
    for one in extra:
        registry.register(one)
    return registry


def exposition(extra: Iterable[Any] = ()) -> tuple[bytes, str]:
    """The text format's body and content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(collector(extra)), CONTENT_TYPE_LATEST


def serve_own_port(conf: cfg.ConfigOpts = config.CONF) -> None:
    """For a service run on its own: its figures on ``[metrics] bind_host:bind_port``
    (a thread of prometheus_client), when a port is set."""
    opts = conf.metrics
    if not opts.bind_port:
        return
    from prometheus_client import ProcessCollector, start_http_server

    ProcessCollector(registry=instruments().registry)
    start_http_server(opts.bind_port, opts.bind_host, registry=collector())
    LOG.info("metrics on http://%s:%d/metrics", opts.bind_host, opts.bind_port)


# -- recording ---------------------------------------------------------------------------

def safe(record: Callable[P, None]) -> Callable[P, None]:
    """Figures must never break what they measure (a request, a reconcile's bookkeeping,
    the health manager's threads): a failure to record is logged, the first time only,
    and dropped."""
    failed = False

    @functools.wraps(record)
    def recording(*args: P.args, **kwargs: P.kwargs) -> None:
        nonlocal failed
        try:
            record(*args, **kwargs)
        except Exception:
            if not failed:
                failed = True
                LOG.exception("metrics: recording %s failed (later failures are not "
                              "logged)", record.__qualname__)

    return recording


@safe
def api_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else "OTHER"  # any verb a client makes up: one
    i = instruments()
    i.api_requests.labels(method, route, str(status)).inc()
    i.api_duration.labels(method, route).observe(seconds)


@safe
def reconciled(action: str, outcome: str, seconds: float) -> None:
    i = instruments()
    i.reconciles.labels(action, outcome).inc()
    i.reconcile_duration.labels(action, outcome).observe(seconds)
