"""Events: what an operator wants to know happened, one readable sentence each.

:func:`record` is the one place that tells of something: it adds an ``event`` row to the
caller's session (served by ``GET /v2/octavia/events``, purged by housekeeping) and logs
the same sentence on the ``amphorae.events`` logger at the event's level. The row
commits or rolls back with the change it tells of; the log line is written when that
transaction commits, so a change that was rolled back (the database went away, another
worker took the job over) leaves neither.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from amphorae.common.timeutil import utcnow
from amphorae.db import models as m

LOG = logging.getLogger("amphorae.events")

# Kinds
LOADBALANCER_STATUS = "LOADBALANCER_STATUS"
LISTENER_STATUS = "LISTENER_STATUS"
POOL_STATUS = "POOL_STATUS"
MEMBER_STATUS = "MEMBER_STATUS"
FAILOVER = "FAILOVER"
AMPHORA_BOOTED = "AMPHORA_BOOTED"
AMPHORA_REMOVED = "AMPHORA_REMOVED"
CHANGE_APPLIED = "CHANGE_APPLIED"
ERROR = "ERROR"
SCALED = "SCALED"  # an ACTIVE_ACTIVE load balancer's amphora count changed (db/scale.py)
KINDS = (LOADBALANCER_STATUS, LISTENER_STATUS, POOL_STATUS, MEMBER_STATUS, FAILOVER,
         AMPHORA_BOOTED, AMPHORA_REMOVED, CHANGE_APPLIED, ERROR, SCALED)

# Levels, as the logging module names them
LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}

MESSAGE_LENGTH = 1024  # the column's size
_PENDING = "amphorae.events.pending"  # session.info key: lines to log on commit


def record(session: Session, kind: str, message: str, *, level: str = "INFO",
           resource_type: str | None = None, resource_id: str | None = None,
           load_balancer_id: str | None = None, project_id: str | None = None) -> m.Event:
    """Add an event to ``session``'s transaction; it is logged once that commits. The
    project is the load balancer's when not given."""
    if level not in LEVELS:
        raise ValueError(f"unknown event level {level!r}")
    if project_id is None and load_balancer_id is not None:
        project_id = session.scalar(select(m.LoadBalancer.project_id)
                                    .where(m.LoadBalancer.id == load_balancer_id))
    row = m.Event(created_at=utcnow(), kind=kind, level=level, resource_type=resource_type,
                  resource_id=resource_id, load_balancer_id=load_balancer_id,
                  project_id=project_id, message=message[:MESSAGE_LENGTH])
    session.add(row)
    # What the log line carries besides the sentence (a JSON log line shows it).
    fields = {"event_kind": kind, "resource_type": resource_type,
              "resource_id": resource_id, "load_balancer_id": load_balancer_id,
              "project_id": project_id}
    session.info.setdefault(_PENDING, []).append((row, LEVELS[level], row.message, fields))
    return row


# How sentences call the kinds describe() names by their name (or id)
WHAT = {m.LoadBalancer: "load balancer", m.HealthMonitor: "health monitor",
        m.L7Policy: "L7 policy", m.L7Rule: "L7 rule", m.Amphora: "amphora"}


def named(what: str, name: str | None, object_id: str) -> str:
    """How a sentence names an object: ``load balancer web (<id>)``, or ``pool <id>``
    when it has no name."""
    return f"{what} {name} ({object_id})" if name else f"{what} {object_id}"


def describe(session: Session, model: type, ids: Iterable[str]) -> dict[str, str]:
    """How sentences name these objects of ``model``, by id (missing ids are left out):
    ``load balancer web (<id>)``, ``listener http (HTTP:80)``, ``pool pool1``,
    ``member 198.18.0.5:8000 of pool pool1``, ... A name is shown when there is one; an
    id only where nothing else tells the object apart."""
    wanted = list(ids)
    if not wanted:
        return {}
    if model is m.Listener:
        return {i: f"listener {name} ({proto}:{port})" if name else f"listener {proto}:{port}"
                for i, name, proto, port in session.execute(
                    select(m.Listener.id, m.Listener.name, m.Listener.protocol,
                           m.Listener.protocol_port).where(m.Listener.id.in_(wanted)))}
    if model is m.Pool:
        return {i: f"pool {name or i}" for i, name in session.execute(
            select(m.Pool.id, m.Pool.name).where(m.Pool.id.in_(wanted)))}
    if model is m.Member:
        return {i: f"member {address}:{port} of pool {pool_name or pool_id}"
                for i, address, port, pool_id, pool_name in session.execute(
                    select(m.Member.id, m.Member.ip_address, m.Member.protocol_port,
                           m.Pool.id, m.Pool.name).join(m.Pool)
                    .where(m.Member.id.in_(wanted)))}
    what = WHAT.get(model, model.__name__)
    name_column = getattr(model, "name", None)
    if name_column is None:
        return {i: f"{what} {i}" for i in session.scalars(
            select(model.id).where(model.id.in_(wanted)))}  # type: ignore[attr-defined]
    return {i: named(what, name, i) for i, name in session.execute(
        select(model.id, name_column).where(model.id.in_(wanted)))}  # type: ignore[attr-defined]


def listed(parts: list[str], most: int) -> str:
    """``a, b, c and 4 more``: at most ``most`` parts named in a sentence."""
    shown = ", ".join(parts[:most])
    return shown + (f" and {len(parts) - most} more" if len(parts) > most else "")


def of_load_balancer(session: Session, lb_id: str | None) -> str:
    """`` of load balancer web (<id>)`` for a sentence about one of its parts; empty
    when there is no such load balancer."""
    found = describe(session, m.LoadBalancer, [lb_id] if lb_id else [])
    return f" of {found[lb_id]}" if lb_id in found else ""


@sa_event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    # A row that was rolled back (its transaction, or a savepoint around it) is no longer
    # persistent: it is not told.
    for row, level, message, fields in session.info.pop(_PENDING, ()):
        if inspect(row).persistent:
            LOG.log(level, "%s", message, extra=_extra(fields))


def _extra(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}
