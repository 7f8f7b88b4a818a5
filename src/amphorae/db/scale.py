"""The one way an ACTIVE_ACTIVE load balancer's amphora count changes: the admin scale
API and the autoscaler both call :func:`request_scale`, so every change is a
compare-and-set on ``load_balancer_scale.desired``, a reconcile job, and a ``SCALED``
event with its reason, in the caller's transaction.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.common.timeutil import utcnow
from amphorae.db import events, jobs
from amphorae.db import models as m

# A load balancer whose count may change: at rest, or already with a reconcile to come
# (which then applies the new count too).
SCALABLE = (c.ACTIVE, c.PENDING_UPDATE)
REASON_LENGTH = 255  # the column's size


def count_bounds(data: dict[str, Any]) -> tuple[int, int]:
    """(min, max) amphorae of an ACTIVE_ACTIVE flavor document, defaults filled in (the
    API checked the values when the profile was made)."""
    low = data.get("amphora_count_min", c.AMPHORA_COUNT_MIN_DEFAULT)
    return int(low), int(data.get("amphora_count_max",
                                  max(c.AMPHORA_COUNT_MAX_DEFAULT, int(low))))


def bounds(session: Session, lb: m.LoadBalancer) -> tuple[int, int]:
    """(amphora_count_min, amphora_count_max) of the load balancer's flavor."""
    flavor = session.get(m.Flavor, lb.flavor_id) if lb.flavor_id else None
    data = json.loads(flavor.flavor_profile.flavor_data or "{}") if flavor else {}
    return count_bounds(data)


def desired(session: Session, lb: m.LoadBalancer) -> int:
    """How many amphorae the load balancer should run now (its minimum until a scale
    row says otherwise)."""
    row = session.get(m.LoadBalancerScale, lb.id)
    return row.desired if row is not None else bounds(session, lb)[0]


def start(session: Session, lb: m.LoadBalancer) -> None:
    """A new ACTIVE_ACTIVE load balancer starts with its flavor's minimum."""
    session.add(m.LoadBalancerScale(load_balancer_id=lb.id, desired=bounds(session, lb)[0],
                                    reason="created with amphora_count_min",
                                    updated_at=utcnow()))


def request_scale(session: Session, lb: m.LoadBalancer, desired: int, reason: str,
                  expected: int | None = None) -> bool:
    """Ask for ``desired`` amphorae. With ``expected``, only if the count is still that
    (the autoscaler's decision was made on it). False, with nothing written, when the
    count moved meanwhile or the load balancer is not :data:`SCALABLE`; the caller
    checks the bounds and the topology."""
    if lb.topology != c.TOPOLOGY_ACTIVE_ACTIVE or lb.provisioning_status not in SCALABLE:
        return False
    row = session.get(m.LoadBalancerScale, lb.id)
    before = row.desired if row is not None else bounds(session, lb)[0]
    if row is None:
        if expected is not None and expected != before:
            return False
        row = m.LoadBalancerScale(load_balancer_id=lb.id, desired=before)
        session.add(row)
        session.flush()
    stmt = update(m.LoadBalancerScale).where(m.LoadBalancerScale.load_balancer_id == lb.id)
    if expected is not None:
        stmt = stmt.where(m.LoadBalancerScale.desired == expected)
    done = session.execute(stmt.values(desired=desired, reason=reason[:REASON_LENGTH],
                                       updated_at=utcnow())
                           .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        return False
    session.expire(row)
    lb.provisioning_status = c.PENDING_UPDATE
    jobs.enqueue(session, lb.id)
    events.record(session, events.SCALED,
                  f"{events.named('load balancer', lb.name, lb.id)}: {before} -> {desired} "
                  f"amphorae: {reason}", resource_type="loadbalancer", resource_id=lb.id,
                  load_balancer_id=lb.id, project_id=lb.project_id)
    return True
