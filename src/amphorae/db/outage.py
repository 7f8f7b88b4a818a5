"""Telling a database outage from a bug.

An outage (the server restarting, refusing connections, dropping them, a pool with no
connection to give, SQLite locked by another writer for longer than its busy timeout)
passes by itself: the API answers 503, the services' loops log one line and try again on
their next round. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sqlite3

from sqlalchemy import exc

# SQLite raises OperationalError for broken SQL too ("no such table"): only these pass.
SQLITE_TRANSIENT = ("database is locked", "database is busy", "unable to open database")


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached or used right now."""
    if isinstance(error, exc.TimeoutError):  # no connection left in the pool in time
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if isinstance(error.orig, sqlite3.Error):
        return any(text in str(error.orig) for text in SQLITE_TRANSIENT)
    # PEP 249: OperationalError is the server's doing (connection lost or refused, server
    # shutting down or starting up, out of resources); InterfaceError a closed connection.
    return isinstance(error, (exc.OperationalError, exc.InterfaceError))


def describe(error: BaseException) -> str:
    """One line for the log: the driver's own message, without the statement and
    parameters SQLAlchemy adds (nor the hints libpq adds on further lines)."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def log_failure(log: logging.Logger, what: str, error: BaseException) -> None:
    """From an ``except`` block of a loop that tries again: an outage in one line (it
    repeats every round while it lasts), anything else with its traceback."""
    if unavailable(error):
        log.warning("%s: database unavailable (%s); trying again", what, describe(error))
    else:
        log.exception("%s", what)
