"""A private PostgreSQL cluster for tests that stop and start the server.

The shared server on 127.0.0.1:5432 must never be restarted, so a test that needs a
database outage runs its own cluster: ``initdb`` into a temporary directory named
``amph-pg-…``, ``pg_ctl`` on a free loopback port with its unix socket in that
directory. As root the server runs as the ``postgres`` OS user (PostgreSQL refuses root).
Each directory records the pid of the test process that made it; a cluster whose maker is
gone (a killed test run) is stopped and removed by the next :func:`cluster`.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import psycopg

from tests import servers

BIN = pathlib.Path(os.environ.get("AMPHORAE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PREFIX = "amph-pg-"
OWNER_FILE = "owner.pid"
RUN_AS = "postgres"  # the OS user the server runs as when the tests run as root


class Cluster:
    def __init__(self, base: pathlib.Path, port: int) -> None:
        self.base = base
        self.data = base / "data"
        self.log = base / "postgres.log"
        self.port = port

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*_as_owner(), *args], check=True, timeout=timeout,
                       capture_output=True, text=True, cwd=self.base)

    def init(self) -> None:
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        # fsync off: the data is thrown away; an immediate stop still forces recovery.
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run(str(BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                  "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: the server dies as in a crash (clients see their connections
        drop); ``fast``: it rolls back open transactions and shuts down cleanly."""
        self._run(str(BIN / "pg_ctl"), "stop", "-w", "-t", "60", "-m", mode,
                  "-D", str(self.data))

    def running(self) -> bool:
        proc = subprocess.run([*_as_owner(), str(BIN / "pg_ctl"), "status", "-D",
                               str(self.data)], capture_output=True, cwd=self.base)
        return proc.returncode == 0

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _as_owner() -> list[str]:
    return ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _discard(cluster: Cluster) -> None:
    with contextlib.suppress(Exception):
        if cluster.running():
            cluster.stop("immediate")
    shutil.rmtree(cluster.base, ignore_errors=True)


def remove_leftovers() -> list[pathlib.Path]:
    """Clusters of earlier test runs whose process is gone: stopped and removed."""
    removed = []
    for base in pathlib.Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((base / OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and _alive(owner):
            continue  # a live test run's cluster (perhaps another xdist worker's)
        if owner is None and time.time() - base.stat().st_mtime < 60:
            continue  # being created right now
        _discard(Cluster(base, 0))
        removed.append(base)
    return removed


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A running private cluster, stopped and removed afterwards even when the test
    fails."""
    remove_leftovers()
    base = pathlib.Path(tempfile.mkdtemp(prefix=PREFIX))
    (base / OWNER_FILE).write_text(str(os.getpid()))
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        os.chown(base, user.pw_uid, user.pw_gid)
    pg = Cluster(base, servers.free_port())
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        _discard(pg)
