"""Waking an idle worker as soon as a job is written.

PostgreSQL: LISTEN on the channel the API NOTIFYs when its transaction commits, so a
worker starts within milliseconds and otherwise sleeps. SQLite has no notifications:
the worker waits on a doorbell beside the database file, rung after every commit that
enqueued a job (common/doorbell.py). Either way the worker's loop still claims once per
timeout as a slow backstop (a lost ring, another host's API); jobs due later are waited
for exactly (JobQueue.next_due).

``interrupt`` wakes a wait for a stop, from a signal handler: the doorbell rings itself;
a PostgreSQL wait is instead cut to :data:`STOP_LATENCY` (a NOTIFY needs a transaction,
not a thing to start in a signal handler).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from amphorae.common import doorbell
from amphorae.db import engine, jobs

LOG = logging.getLogger(__name__)
POLL_INTERVAL = 0.05  # seconds between claims when nothing can wake the worker
STOP_LATENCY = 1.0  # the longest a wait without interrupt() delays a stop


class PollingWakeup:
    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self.interval = interval

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, self.interval))

    def poke(self) -> None:
        pass  # the next claim is at most an interval away

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


class DoorbellWakeup:
    """SQLite on this host: sleeps until a commit that enqueued a job rings."""

    def __init__(self, directory: Path) -> None:
        self.bell = doorbell.Bell(directory)

    def wait(self, timeout: float) -> None:
        self.bell.wait(timeout)

    def poke(self) -> None:
        self.bell.poke()

    def interrupt(self) -> None:
        self.bell.poke()

    def close(self) -> None:
        self.bell.close()


class PostgresWakeup:
    """A connection of its own in autocommit, LISTENing; reconnects when it drops."""

    def __init__(self, sqlalchemy_url: str) -> None:
        self.sqlalchemy_url = sqlalchemy_url
        url = make_url(sqlalchemy_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, autocommit=True)
            self.conn.execute(f"LISTEN {jobs.NOTIFY_CHANNEL}")
        return self.conn

    def wait(self, timeout: float) -> None:
        started = time.monotonic()
        timeout = min(timeout, STOP_LATENCY)
        try:
            for _ in self._connect().notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error as exc:
            LOG.warning("job notifications unavailable (%s); polling", exc)
            self.close()
            time.sleep(max(0.0, min(timeout, POLL_INTERVAL) - (time.monotonic() - started)))

    def poke(self) -> None:
        """NOTIFY (through another connection: the listening one is busy waiting);
        other workers wake too and find nothing, which is cheap."""
        with engine.transaction(url=self.sqlalchemy_url) as session:
            jobs.notify(session)

    def interrupt(self) -> None:
        pass  # its waits end within STOP_LATENCY

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None


Wakeup = PollingWakeup | DoorbellWakeup | PostgresWakeup


def for_url(url: str) -> Wakeup:
    if url.startswith("postgresql"):
        return PostgresWakeup(url)
    directory = doorbell.directory_for(url)
    if directory is not None:
        try:
            return DoorbellWakeup(directory)
        except OSError as exc:  # e.g. a path too long for a UNIX socket
            LOG.warning("no doorbell in %s (%s): polling for jobs every %g s", directory,
                        exc, POLL_INTERVAL)
    return PollingWakeup()
