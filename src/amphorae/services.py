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
from amphorae.db import engine, migrate
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

    def stop() -> None:
        stopped.set()
        w.stop()
        keeper.stop()
        manager.stop()
        with contextlib.suppress(ProcessLookupError):
            api.terminate()

    _on_stop(stop)
    threading.Thread(target=keeper.run, name="housekeeping", daemon=True).start()
    health_thread = threading.Thread(target=manager.run, name="health", daemon=True)
    health_thread.start()
    watcher = threading.Thread(target=_watch_api, args=(api, stopped, stop), daemon=True)
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
    _release_host_if_idle(w.reconciler.d)
    return 0


def _release_host_if_idle(drivers: registry.Drivers) -> None:
    """With none of its amphorae left, a deployment gives the host back what it made for
    them (the bridges: only its own, another deployment's stay); while amphorae remain
    they keep serving through it."""
    if not drivers.compute.list_instances():
        drivers.network.release_host()
        drivers.compute.release_host()


def _watch_api(api: subprocess.Popen, stopped: threading.Event,
               stop: Callable[[], None]) -> None:
    """The API process dying on its own takes the whole service down (visibly)."""
    code = api.wait()
    if not stopped.is_set():
        LOG.error("the API process exited (%s): stopping", code)
        stop()
