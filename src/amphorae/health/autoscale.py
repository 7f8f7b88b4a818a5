"""The autoscaler's ends in the database: what each ACTIVE_ACTIVE load balancer runs and
how busy it is (:func:`read_targets`), and a decision written back (:func:`write_decision`).

:class:`scaler.Scaler` holds the loop's memory (recent samples); this module holds none.
A load balancer counts only while it is ACTIVE: during a change its amphorae's figures
describe neither the old set nor the new one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.common import config, metrics
from amphorae.common import constants as c
from amphorae.common.timeutil import utcnow
from amphorae.db import engine, scale
from amphorae.db import models as m
from amphorae.health import scaler as scaler_mod
from amphorae.health import scaling

LOG = logging.getLogger(__name__)
ACTIVE_ACTIVE = "ACTIVE_ACTIVE"


def policy(conf: Any = config.CONF) -> scaling.Policy:
    a = conf.autoscaling
    if a.cold_load >= a.hot_load:
        raise config.ConfigError(f"[autoscaling] cold_load ({a.cold_load}) must be below "
                                 f"hot_load ({a.hot_load})")
    return scaling.Policy(hot=a.hot_load, cold=a.cold_load, out_after=a.scale_out_after,
                          in_after=a.scale_in_after, cooldown=a.cooldown)


def read_targets(session: Session, now: dt.datetime, clock: float
                 ) -> list[scaler_mod.Target]:
    """Every ACTIVE ACTIVE_ACTIVE load balancer with its wanted count, bounds and mean
    load. ``clock`` is the loop's monotonic time at ``now``: the last change's database
    time is put on that clock."""
    lb, row = m.LoadBalancer, m.LoadBalancerScale
    rows = session.execute(
        select(lb.id, row.desired, row.updated_at, m.FlavorProfile.flavor_data)
        .join(row, row.load_balancer_id == lb.id)
        .outerjoin(m.Flavor, m.Flavor.id == lb.flavor_id)
        .outerjoin(m.FlavorProfile, m.FlavorProfile.id == m.Flavor.flavor_profile_id)
        .where(lb.topology == ACTIVE_ACTIVE, lb.provisioning_status == c.ACTIVE)).all()
    loads: dict[str, list[float]] = {}
    for lb_id, load in session.execute(
            select(m.Amphora.load_balancer_id, m.AmphoraHealth.load)
            .join(m.AmphoraHealth, m.AmphoraHealth.amphora_id == m.Amphora.id)
            .where(m.Amphora.load_balancer_id.in_([r[0] for r in rows]),
                   m.Amphora.status == c.AMPHORA_ALLOCATED,
                   m.AmphoraHealth.load.is_not(None))).all():
        loads.setdefault(lb_id, []).append(load)
    targets = []
    for lb_id, desired, updated_at, flavor_data in rows:
        low, high = scale.count_bounds(json.loads(flavor_data or "{}"))
        age = (now - updated_at).total_seconds() if updated_at else float("inf")
        share = loads.get(lb_id)
        targets.append(scaler_mod.Target(
            lb_id=lb_id, count=desired, minimum=low, maximum=high, last_change=clock - age,
            busy=sum(share) / len(share) if share else None))
    return targets


def write_decision(url: str, target: scaler_mod.Target, decision: scaling.Decision
                   ) -> bool:
    """Ask for ``decision.count`` amphorae if the count is still ``target.count`` (the
    admin API or another health manager may have changed it since it was read)."""
    with engine.transaction(url=url) as session:
        lb = session.get(m.LoadBalancer, target.lb_id)
        done = lb is not None and scale.request_scale(
            session, lb, decision.count, f"autoscaler: {decision.reason}", target.count)
    if done:
        _count(decision.count > target.count)
    return done


@metrics.safe
def _count(out: bool) -> None:
    metrics.instruments().scaling_decisions.labels("out" if out else "in").inc()


def scaler(url: str, conf: Any = config.CONF) -> scaler_mod.Scaler:
    """The health manager's autoscaler: reads targets and writes decisions in ``url``."""
    def targets() -> list[scaler_mod.Target]:
        with engine.transaction(write=False, url=url) as session:
            return read_targets(session, utcnow(), time.monotonic())

    return scaler_mod.Scaler(policy(conf), targets,
                             lambda target, decision: write_decision(url, target, decision))
