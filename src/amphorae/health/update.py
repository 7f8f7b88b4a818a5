"""Writing a batch of heartbeats: amphora health, operating statuses, statistics.

One transaction per batch, a fixed handful of queries whatever its size: the amphorae
and their load balancers' trees are read with IN lists, only statuses that change are
written, health rows and statistics are upserted with executemany. Per amphora:

- unknown or DELETED amphorae, and amphorae of no load balancer, change nothing;
- its health row (``last_update``) is refreshed only when it reports as many listeners as
  the load balancer has enabled HAProxy listeners (skipped while the load balancer is
  PENDING_* or disabled) and the heartbeat waited less than ``heartbeat_interval`` in the
  queue: otherwise it goes stale and is failed over, as in Octavia;
- statuses: rollup.rollup on the newest heartbeat of the batch; each change is an
  event (health/transitions.py). None while the load balancer is PENDING_*: the worker
  is changing its amphorae (a failover's new amphora reports nothing until it is
  configured), and the next heartbeat after it settles tells the truth. A listener that
  a heartbeat heard before the listener's last change leaves out keeps its status: the
  agent built that heartbeat before it applied the listener;
- its load (the heartbeat's ``load``, HAProxy's busy share) goes with the health row;
- statistics: version 3 deltas added to the (listener, amphora) row, current connections
  replaced.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.db import models as m
from amphorae.db import tree as subtree
from amphorae.health import rollup, transitions

DELTAS = ("bytes_in", "bytes_out", "total_connections", "request_errors")
# nftables listeners are not in HAProxy's heartbeat; their pools are (the agent checks
# UDP members itself and reports them under the bare pool id, as Octavia's LVS path).
NOT_REPORTED = (c.UDP, "SCTP")


@dataclasses.dataclass(frozen=True)
class Received:
    message: dict[str, Any]
    received_at: float  # time.monotonic() when the datagram arrived


@dataclasses.dataclass
class Outcome:
    refreshed: int = 0  # health rows written
    ignored: int = 0  # unknown amphorae or of no load balancer
    withheld: int = 0  # listener count off, or too old: not refreshed
    status_changes: int = 0


def apply(session: Session, batch: Sequence[Received], now: dt.datetime,
          processed_at: float, interval: float) -> Outcome:
    outcome = Outcome()
    newest: dict[str, Received] = {}
    for item in batch:  # the replay guard admitted them in order: later is newer
        newest[item.message["id"]] = item
    amps, lbs = _amphorae(session, newest)
    trees = _trees(session, lbs)
    health: list[dict[str, Any]] = []
    back: list[str] = []
    changes: dict[type, dict[str, str]] = {}
    for amp_id, item in newest.items():
        lb_id, status = amps.get(amp_id, (None, None))
        tree = trees.get(lb_id) if lb_id is not None else None
        if tree is None:
            outcome.ignored += 1
            continue
        tree_obj, expected, settled = tree
        reported = len(item.message.get("listeners") or {})
        fresh = processed_at - item.received_at < interval
        if fresh and (expected is None or reported == expected):
            health.append({"amphora_id": amp_id, "last_update": now, "busy": False,
                           "load": _load(item.message)})
            if status == c.FAILOVER_STOPPED:
                back.append(amp_id)
        else:
            outcome.withheld += 1
        if settled:
            heard_at = now - dt.timedelta(seconds=processed_at - item.received_at)
            _diff(tree_obj, rollup.rollup(tree_obj, item.message, heard_at), changes)
    stats = [row for item in batch if amps.get(item.message["id"], (None,))[0] in trees
             for row in _stats(item.message)]
    outcome.status_changes = _write_statuses(session, changes)
    if changes:  # an event (and a log line) per transition, none per heartbeat
        transitions.record(session, {lb_id: t for lb_id, (t, _, _) in trees.items()}, changes)
    _upsert_health(session, health)
    if back:  # heartbeats again after the circuit breaker stopped its failover
        session.execute(update(AMPHORA).where(AMPHORA.c.id.in_(back))
                        .values(status=c.AMPHORA_ALLOCATED))
    _add_stats(session, stats)
    outcome.refreshed = len(health)
    return outcome


# -- reading ---------------------------------------------------------------------------
# Core tables, plain tuples, fetchall: ORM rows and row-by-row fetches cost more than
# the rest of a batch's work.

AMPHORA, LOAD_BALANCER = (model.__table__ for model in (m.Amphora, m.LoadBalancer))
LbRow = tuple[bool, str, str]  # enabled, provisioning_status, operating_status


def _amphorae(session: Session, ids: Iterable[str]
              ) -> tuple[dict[str, tuple[str, str]], dict[str, LbRow]]:
    """The amphorae that count (known, not DELETED, of a load balancer that is not
    DELETED) -> (load balancer id, status), and those load balancers, in one query."""
    a, lb = AMPHORA, LOAD_BALANCER
    rows = session.execute(
        select(a.c.id, a.c.load_balancer_id, a.c.status, lb.c.enabled,
               lb.c.provisioning_status, lb.c.operating_status)
        .join(lb, lb.c.id == a.c.load_balancer_id)
        .where(a.c.id.in_(list(ids)), a.c.status != c.DELETED,
               lb.c.provisioning_status != c.DELETED)).all()
    amps = {amp_id: (lb_id, status) for amp_id, lb_id, status, *_ in rows}
    lbs = {lb_id: (enabled, prov, op) for _, lb_id, _, enabled, prov, op in rows}
    return amps, lbs


def _trees(session: Session, lbs: dict[str, LbRow]
           ) -> dict[str, tuple[rollup.Tree, int | None, bool]]:
    """Per load balancer: its tree, the listener count a heartbeat must report (None:
    not checked), and whether it is settled (not PENDING_*)."""
    if not lbs:
        return {}
    listeners: dict[str, dict[str, tuple[bool, str]]] = {i: {} for i in lbs}
    changed: dict[str, dict[str, dt.datetime]] = {i: {} for i in lbs}
    counted: dict[str, int] = dict.fromkeys(lbs, 0)
    for lb_id, listener_id, enabled, status, protocol, provisioning, updated in \
            session.execute(subtree.select_under(
                m.Listener, lbs, "id", "enabled", "operating_status", "protocol",
                "provisioning_status", "updated_at")).all():
        if protocol in NOT_REPORTED:
            continue
        listeners[lb_id][listener_id] = (enabled, status)
        if updated is not None:
            changed[lb_id][listener_id] = updated
        if enabled and provisioning not in (c.ERROR, c.PENDING_DELETE):
            counted[lb_id] += 1
    pools: dict[str, dict[str, str]] = {i: {} for i in lbs}
    for lb_id, pool_id, status in session.execute(
            subtree.select_under(m.Pool, lbs, "id", "operating_status")).all():
        pools[lb_id][pool_id] = status
    members: dict[str, dict[str, tuple[str, str]]] = {i: {} for i in lbs}
    for lb_id, member_id, pool_id, status in session.execute(
            subtree.select_under(m.Member, lbs, "id", "pool_id", "operating_status")).all():
        members[lb_id][member_id] = (pool_id, status)
    out = {}
    for lb_id, (enabled, provisioning, status) in lbs.items():
        check = enabled and provisioning in (c.ACTIVE, c.ERROR)
        tree = rollup.Tree(lb_id=lb_id, lb_enabled=enabled,
                           lb_active=provisioning == c.ACTIVE, lb_status=status,
                           listeners=listeners[lb_id], pools=pools[lb_id],
                           members=members[lb_id], listeners_changed=changed[lb_id])
        out[lb_id] = (tree, counted[lb_id] if check else None,
                      not provisioning.startswith("PENDING_"))
    return out


def _diff(tree: rollup.Tree, new: rollup.Statuses,
          changes: dict[type, dict[str, str]]) -> None:
    current = transitions.statuses(tree)
    for model, statuses in ((m.LoadBalancer, new.load_balancer), (m.Listener, new.listener),
                            (m.Pool, new.pool), (m.Member, new.member)):
        for object_id, status in statuses.items():
            if current[model].get(object_id) != status:
                changes.setdefault(model, {})[object_id] = status


# -- writing ---------------------------------------------------------------------------

def _write_statuses(session: Session, changes: dict[type, dict[str, str]]) -> int:
    count = 0
    for model, statuses in changes.items():
        if not statuses:
            continue
        table = model.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table).where(table.c.id == bindparam("object_id"))
            .values(operating_status=bindparam("status")),
            [{"object_id": i, "status": s} for i, s in statuses.items()])
        count += len(statuses)
    return count


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def _upsert_health(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = _insert(session, m.AmphoraHealth.__table__)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["amphora_id"], set_={"last_update": stmt.excluded.last_update,
                                             "load": stmt.excluded.load}),
        rows)


def _load(message: dict[str, Any]) -> float | None:
    """The heartbeat's busy share (what the autoscaler reads); None when absent or not a
    number in 0..1 (an older agent, or a bad one: it must not steer scaling)."""
    value = message.get("load")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 1 else None


def _stats(message: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for listener_id, entry in (message.get("listeners") or {}).items():
        s = entry.get("stats") or {}
        yield {"listener_id": listener_id, "amphora_id": message["id"],
               "bytes_in": int(s.get("rx", 0)), "bytes_out": int(s.get("tx", 0)),
               "active_connections": int(s.get("conns", 0)),
               "total_connections": int(s.get("totconns", 0)),
               "request_errors": int(s.get("ereq", 0))}


def _add_stats(session: Session, rows: list[dict[str, Any]]) -> None:
    """Deltas summed per (listener, amphora) within the batch, then added to the row."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["listener_id"], row["amphora_id"])
        if key in merged:
            for name in DELTAS:
                merged[key][name] += row[name]
            merged[key]["active_connections"] = row["active_connections"]
        else:
            merged[key] = dict(row)
    if not merged:
        return
    table = m.ListenerStatistics.__table__
    stmt = _insert(session, table)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["listener_id", "amphora_id"],
        set_={**{name: table.c[name] + stmt.excluded[name] for name in DELTAS},
              "active_connections": stmt.excluded.active_connections}),
        list(merged.values()))
