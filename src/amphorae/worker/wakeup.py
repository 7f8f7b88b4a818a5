"""Waking an idle worker as soon as a job is written.

PostgreSQL: LISTEN on the channel the API NOTIFYs when its transaction commits, so a
worker starts within milliseconds and otherwise sleeps. SQLite has no notifications: the
worker polls, which costs one indexed SELECT per interval.
"""

from __future__ import annotations

import contextlib
import logging
import time

import psycopg
from sqlalchemy.engine import make_url

from amphorae.db.jobs import NOTIFY_CHANNEL

LOG = logging.getLogger(__name__)
POLL_INTERVAL = 0.05  # seconds between claims when idle on SQLite


class PollingWakeup:
    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self.interval = interval

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, self.interval))

    def close(self) -> None:
        pass


class PostgresWakeup:
    """A connection of its own in autocommit, LISTENing; reconnects when it drops."""

    def __init__(self, sqlalchemy_url: str) -> None:
        url = make_url(sqlalchemy_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, autocommit=True)
            self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return self.conn

    def wait(self, timeout: float) -> None:
        started = time.monotonic()
        try:
            for _ in self._connect().notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error as exc:
            LOG.warning("job notifications unavailable (%s); polling", exc)
            self.close()
            time.sleep(max(0.0, min(timeout, POLL_INTERVAL) - (time.monotonic() - started)))

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None


def for_url(url: str) -> PollingWakeup | PostgresWakeup:
    return PostgresWakeup(url) if url.startswith("postgresql") else PollingWakeup()
