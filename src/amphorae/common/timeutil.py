"""The one clock of the stored timestamps."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Now in UTC, naive: the database columns are DateTime without a time zone.
    Microseconds are kept so lists come back in creation order; the API shows seconds."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
