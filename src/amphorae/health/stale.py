"""Stale amphorae: no accepted heartbeat for ``heartbeat_timeout`` seconds.

Each check fails over at most one amphora per load balancer (its load balancer moves
from ACTIVE or ERROR to PENDING_UPDATE and a failover job is enqueued, in one
transaction; the reconciler replaces the amphora). Amphorae get a health row with their
first accepted heartbeat, so one that never sent any is never stale (Octavia's rule);
the reconciler replaces it when its compute instance is gone.

Amphorae whose compute instance is gone or broken are failed over too, without waiting
out the timeout (netns: a namespace deleted, whose processes may live on unnamed and keep
sending heartbeats, or an amphora whose agent died: killed processes are seen within a
check interval, the heartbeat timeout stays the backstop for hangs).

The circuit breaker (``failover_threshold``): when at least that many amphorae are stale
at once, the control plane has most likely lost its network, not its amphorae: none is
failed over, they are marked FAILOVER_STOPPED, and the condition is logged loudly and
kept in :attr:`StaleCheck.partition` for whoever reports health. An amphora whose
heartbeats come back returns to ALLOCATED.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Collection

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.db import events, jobs
from amphorae.db import models as m

LOG = logging.getLogger(__name__)
WATCHED = c.AMPHORA_SERVING
BROKEN = "its compute instance is gone or broken (netns: namespace deleted, agent dead)"


@dataclasses.dataclass
class CheckResult:
    stale: list[str]
    failed_over: list[str]
    stopped: list[str]  # by the circuit breaker
    watched: bool = True  # any health row: False, nothing can go stale before one is written


def check(session: Session, now: dt.datetime, timeout: float,
          threshold: int | None, gone: Collection[str] = (),
          judge_silence: bool = True) -> CheckResult:
    """``gone``: amphorae whose compute instance no longer exists (the caller asked the
    compute driver); they are failed over like stale ones, whatever the threshold (a
    missing instance is no sign of a partition). ``judge_silence`` False: heartbeat
    timestamps are not to be trusted now (health/grace.py), only ``gone`` counts."""
    cutoff = now - dt.timedelta(seconds=timeout)
    rows = session.execute(
        select(m.Amphora.id, m.Amphora.load_balancer_id, m.Amphora.status)
        .join(m.AmphoraHealth, m.AmphoraHealth.amphora_id == m.Amphora.id)
        .where(m.AmphoraHealth.busy.is_(False), m.AmphoraHealth.last_update < cutoff,
               m.Amphora.status.in_(WATCHED))
        .order_by(m.AmphoraHealth.last_update)).all()
    watched = rows or session.scalar(select(m.AmphoraHealth.amphora_id).limit(1)) is not None
    if not judge_silence:  # the query ran all the same: it shows the database answers
        rows = []
    result = CheckResult(stale=[r.id for r in rows], failed_over=[], stopped=[],
                         watched=bool(watched))
    if threshold and len(rows) >= threshold:
        result.stopped = [r.id for r in rows]
        session.execute(update(m.Amphora).where(m.Amphora.id.in_(result.stopped))
                        .values(status=c.FAILOVER_STOPPED))
        LOG.critical("%d amphorae are stale at once (failover_threshold %d): a network "
                     "partition of the control plane is more likely than dead amphorae; "
                     "NO failover, amphorae marked FAILOVER_STOPPED: %s", len(rows),
                     threshold, ", ".join(result.stopped))
        return result
    if gone:
        rows += session.execute(
            select(m.Amphora.id, m.Amphora.load_balancer_id, m.Amphora.status)
            .where(m.Amphora.id.in_(gone), m.Amphora.status.in_(WATCHED),
                   m.Amphora.id.not_in(result.stale))).all()
    seen: set[str] = set()
    for row in rows:
        if row.load_balancer_id is None or row.load_balancer_id in seen:
            continue
        seen.add(row.load_balancer_id)
        moved = session.execute(update(m.LoadBalancer).where(
            m.LoadBalancer.id == row.load_balancer_id,
            m.LoadBalancer.provisioning_status.in_((c.ACTIVE, c.ERROR)))
            .values(provisioning_status=c.PENDING_UPDATE))
        if not moved.rowcount:  # type: ignore[attr-defined]
            continue  # the load balancer is busy: its next check comes soon enough
        session.execute(update(m.AmphoraHealth).where(m.AmphoraHealth.amphora_id == row.id)
                        .values(busy=True))
        jobs.enqueue(session, row.load_balancer_id, c.JOB_FAILOVER_AMPHORA,
                     amphora_id=row.id)
        result.failed_over.append(row.id)
        reason = (BROKEN if row.id in gone else f"it sent no heartbeat for {timeout:g} s")
        owner = events.of_load_balancer(session, row.load_balancer_id)
        events.record(session, events.FAILOVER,
                      f"amphora {row.id}{owner} is failed over: {reason}",
                      level="WARNING", resource_type="amphora",
                      resource_id=row.id, load_balancer_id=row.load_balancer_id)
    return result
