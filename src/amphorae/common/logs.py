"""Where and how the services log: standard error, one line per record, as text (the
default) or as one JSON object per line for log shippers (``[DEFAULT] log_format``).

A text line: ``2026-12-05 07:12:01,123 4242 INFO amphorae.events: load balancer web
(<id>) is DEGRADED (was ONLINE): ...``. A JSON line has ``time`` (ISO 8601, UTC),
``level``, ``logger``, ``message``, ``process``, ``request_id`` when the line was
written while serving an API request, the fields the caller attached (an event's
``event_kind``, ``load_balancer_id``, ...; the access log's ``method``, ``path``,
``status``, ``duration_ms``, ``project_id``) and ``exception`` with a traceback.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any

TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
# The API request being served (api/app.py sets it), for every line written meanwhile.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "amphorae_request_id", default=None)
# Libraries that say too much below WARNING: Alembic one line per migration step,
# SQLAlchemy every statement once the root logger is at DEBUG.
QUIET = ("alembic", "sqlalchemy")
# What every LogRecord has: the rest of its attributes are fields a caller attached.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class RequestIdFilter(logging.Filter):
    """Gives each record the request id of the API request being served (if any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup(debug: bool = False, log_format: str = "text") -> None:
    """Configure the root logger: one handler on standard error (replacing any)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
