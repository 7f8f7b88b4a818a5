"""Running the control-plane services: each on its own, or all in one process (`up`)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from amphorae.common import config, metrics
from amphorae.db import engine, migrate, report
from amphorae.drivers import registry

LOG = logging.getLogger(__name__)


def _on_stop(stop: Callable[[], None]) -> None:
    """SIGINT/SIGTERM stop the service gracefully; a second one exits at once."""
    def handler(signum: int, _frame: object) -> None:
        if getattr(handler, "seen", False):
            os._exit(128 + signum)
        handler.seen = True  # type: ignore[attr-defined]
        LOG.info("stopping (signal %d); again to exit at once", signum)
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _migrate_embedded() -> None:
    """The embedded SQLite database is created and upgraded by whoever starts first."""
    if config.database_url().startswith("sqlite"):
        migrate.upgrade()
        engine.dispose()


def worker() -> int:
    from amphorae.worker import service

    _migrate_embedded()
    metrics.serve_own_port()
    w = service.build()
    _on_stop(w.stop)
    LOG.info("worker %s started", w.queue.owner)
    w.run()
    return 0


def _housekeeper():  # type: ignore[no-untyped-def]
    from amphorae.housekeeping.service import Housekeeper

    return Housekeeper(registry.compute(), registry.network())


def housekeeping() -> int:
    _migrate_embedded()
    metrics.serve_own_port()
    keeper = _housekeeper()
    _on_stop(keeper.stop)
    keeper.run()
    return 0


def health() -> int:
    from amphorae.health.service import HealthManager

    _migrate_embedded()
    metrics.serve_own_port()
    manager = HealthManager()
    _on_stop(manager.stop)
    manager.run()
    return 0


def up(config_args: Sequence[str]) -> int:
    """API (gunicorn, a child process), worker, health manager and housekeeping
    (threads here). On
    Ctrl-C everything stops; amphorae keep serving (their agents run in sessions of
    their own) and the next start adopts them."""
    from amphorae.health.service import HealthManager
    from amphorae.worker import service

    _migrate_embedded()
    conf = config.CONF.api_settings
    endpoint = f"http://{conf.bind_host}:{conf.bind_port}"
    metrics.share_directory()  # the API (our child) serves the figures of our threads too
    api = subprocess.Popen([sys.executable, "-m", "amphorae.cli", "api", *config_args])
    w = service.build()
    keeper = _housekeeper()
    manager = HealthManager()
    stopped = threading.Event()
    api_died = threading.Event()

    def stop() -> None:
        stopped.set()
        w.stop()
        keeper.stop()
        manager.stop()
        with contextlib.suppress(ProcessLookupError):
            api.terminate()

    _on_stop(stop)
    keeper_thread = threading.Thread(target=keeper.run, name="housekeeping", daemon=True)
    keeper_thread.start()
    health_thread = threading.Thread(target=manager.run, name="health", daemon=True)
    health_thread.start()
    watcher = threading.Thread(target=_watch_api, args=(api, stopped, api_died, stop),
                               daemon=True)
    watcher.start()
    print(f"amphorae: API on {endpoint} (database {config.database_url()}, "
          f"auth {conf.auth_strategy}); worker, health manager and housekeeping "
          "running. Ctrl-C stops.")
    if os.geteuid() != 0 and config.CONF.controller_worker.compute_driver.endswith("netns_driver"):
        print("amphorae: not root: netns amphorae cannot be created (load balancers will "
              "go to ERROR)")
    print(f"Try: openstack --os-auth-type none --os-endpoint {endpoint} "
          "loadbalancer create --vip-subnet-id public --name lb1")
    sys.stdout.flush()
    w.run()
    stop()
    api.wait(timeout=15)
    health_thread.join(timeout=10)
    keeper_thread.join(timeout=10)  # a sweep in progress ends before the exit
    _release_host_if_idle(w.reconciler.d)
    return 1 if api_died.is_set() else 0  # a supervisor restarts a failed service


def _release_host_if_idle(drivers: registry.Drivers) -> None:
    """With none of its amphorae left, a deployment gives the host back what it made for
    them (the bridges: only its own, another deployment's stay); while amphorae remain
    they keep serving through it."""
    if not drivers.compute.list_instances():
        drivers.network.release_host()
        drivers.compute.release_host()


def _watch_api(api: subprocess.Popen, stopped: threading.Event, died: threading.Event,
               stop: Callable[[], None]) -> None:
    """The API process dying on its own takes the whole service down, visibly: logged,
    and `up` exits 1."""
    code = api.wait()
    if not stopped.is_set():
        LOG.error("the API process exited (%s): stopping", code)
        died.set()
        stop()


# -- amphorae status ----------------------------------------------------------------------

def status(fmt: str = "text") -> int:
    """What runs and what the database holds (db/report.py), plus whether the API
    answers on its bind address; 1 when the database cannot be read."""
    import datetime as dt
    import json

    from sqlalchemy.engine import make_url

    from amphorae.common.timeutil import utcnow

    url = config.database_url()
    shown = make_url(url).render_as_string(hide_password=True)
    path = make_url(url).database if url.startswith("sqlite") else None
    if path and not os.path.exists(path):  # connecting would create an empty file
        print(f"amphorae: no database at {path} yet (a service or `amphorae db upgrade` "
              "creates it)", file=sys.stderr)
        return 1
    try:
        with engine.transaction(write=False, url=url) as session:
            found = report.gather(session, utcnow(),
                                  config.CONF.health_manager.heartbeat_timeout)
    except Exception as exc:
        print(f"amphorae: database {shown}: {_first_line(exc)}", file=sys.stderr)
        return 1
    finally:
        engine.get_engine(url).dispose()
    api = _probe_api()
    if fmt == "json":
        doc = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "database": shown, "api": api,
               "heartbeat_timeout": config.CONF.health_manager.heartbeat_timeout,
               **found.as_dict()}
        print(json.dumps(doc, indent=2))
    else:
        print(_status_text(shown, api, found), end="")
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    problem = text[0] if text else type(exc).__name__
    if "no such table" in problem or ("relation" in problem and "does not exist" in problem):
        problem += " (no schema: run `amphorae db upgrade`)"
    return problem


def _probe_api() -> dict[str, object]:
    """GET / on the API's bind address (a wildcard address: loopback)."""
    import time
    import urllib.error
    import urllib.request

    conf = config.CONF.api_settings
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        conf.bind_host, conf.bind_host)
    url = f"http://[{host}]:{conf.bind_port}/" if ":" in host else \
        f"http://{host}:{conf.bind_port}/"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            code: int | None = resp.status
    except urllib.error.HTTPError as exc:  # it answers, if not with a 200
        code = exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"url": url, "answering": False, "problem": str(reason)}
    return {"url": url, "answering": True, "http_status": code,
            "ms": round((time.monotonic() - started) * 1000)}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def _status_text(database: str, api: dict[str, object], r: report.Report) -> str:
    rows: list[tuple[str, str]] = [("database", database), ("services", "")]
    if api["answering"]:
        rows.append(("  api", f"answering on {api['url']} (HTTP {api['http_status']}, "
                              f"{api['ms']} ms)"))
    else:
        rows.append(("  api", f"not answering on {api['url']} ({api['problem']})"))
    if not r.leases:
        rows.append(("  workers", "unknown: no job is leased (an idle worker leaves no "
                                  "trace in the database)"))
    for i, lease in enumerate(r.leases):
        when = (f"lease expires in {_seconds(lease.expires_in)}" if lease.expires_in >= 0
                else f"lease expired {_seconds(-lease.expires_in)} ago (worker gone?)")
        rows.append(("  workers" if i == 0 else "",
                     f"{lease.owner}: {lease.jobs} job(s), {when}"))
    rows.append(("  health manager",
                 "unknown: no heartbeat recorded" if r.last_heartbeat_age is None
                 else f"last heartbeat written {_seconds(r.last_heartbeat_age)} ago"))
    rows.append(("  housekeeping", "unknown: it records nothing in the database"))
    lbs = r.load_balancers
    rows += [("load balancers", str(sum(lbs["provisioning_status"].values()))),
             ("  provisioning", _counts(lbs["provisioning_status"])),
             ("  operating", _counts(lbs["operating_status"]))]
    timeout = config.CONF.health_manager.heartbeat_timeout
    total = sum(sum(by_status.values()) for by_status in r.amphorae.values())
    rows.append(("amphorae", f"{total}; serving with a heartbeat older than {timeout} s: "
                             f"{r.amphorae_stale}, never reported: {r.amphorae_unreported}"))
    rows += [(f"  {role}", _counts(by_status)) for role, by_status in r.amphorae.items()]
    oldest = "" if r.oldest_job_age is None else \
        f", oldest {_seconds(r.oldest_job_age)} old"
    rows.append(("jobs", f"{sum(r.jobs.values())} ({_counts(r.jobs)}){oldest}"))
    width = max(len(label) for label, _ in rows) + 2
    return "".join(f"{label:<{width}}{value}".rstrip() + "\n" for label, value in rows)
