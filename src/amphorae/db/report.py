"""What the database says about a deployment, for ``amphorae status``.

Only what the rows record: which workers hold job leases (a lease is renewed every third
of ``job_lease_seconds`` while its reconcile runs, so an idle worker leaves no trace), when
the health manager last wrote a heartbeat, counts of load balancers, amphorae and jobs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.db import jobs
from amphorae.db import models as m


@dataclasses.dataclass
class Lease:
    owner: str
    jobs: int
    expires_in: float  # seconds; negative: expired that long ago (its worker stopped)


@dataclasses.dataclass
class Report:
    leases: list[Lease]
    last_heartbeat_age: float | None  # seconds since the newest heartbeat write, if any
    load_balancers: dict[str, dict[str, int]]  # provisioning_status/operating_status: count
    amphorae: dict[str, dict[str, int]]  # role: {status: count}
    amphorae_stale: int  # serving amphorae whose last heartbeat is older than the timeout
    amphorae_unreported: int  # serving amphorae with no heartbeat recorded yet
    jobs: dict[str, int]  # ready, leased, delayed
    oldest_job_age: float | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _age(now: dt.datetime, then: dt.datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 1)


def gather(session: Session, now: dt.datetime, heartbeat_timeout: float) -> Report:
    leases = [Lease(owner, count, round((expires - now).total_seconds(), 1))
              for owner, count, expires in session.execute(
                  select(m.Job.lease_owner, func.count(), func.max(m.Job.lease_expires_at))
                  .where(m.Job.lease_owner.is_not(None))
                  .group_by(m.Job.lease_owner).order_by(m.Job.lease_owner))]
    lbs: dict[str, dict[str, int]] = {"provisioning_status": {}, "operating_status": {}}
    for column in lbs:
        attr = getattr(m.LoadBalancer, column)
        lbs[column] = dict(session.execute(
            select(attr, func.count()).group_by(attr).order_by(attr)).tuples().all())
    amps: dict[str, dict[str, int]] = {}
    for role, status, count in session.execute(
            select(m.Amphora.role, m.Amphora.status, func.count())
            .group_by(m.Amphora.role, m.Amphora.status)
            .order_by(m.Amphora.role, m.Amphora.status)):
        amps.setdefault(role or "none", {})[status] = count
    serving = m.Amphora.status.in_(c.AMPHORA_SERVING)
    cutoff = now - dt.timedelta(seconds=heartbeat_timeout)
    stale = session.scalar(
        select(func.count()).select_from(m.Amphora)
        .join(m.AmphoraHealth, m.AmphoraHealth.amphora_id == m.Amphora.id)
        .where(serving, m.AmphoraHealth.last_update < cutoff))
    unreported = session.scalar(
        select(func.count()).select_from(m.Amphora)
        .outerjoin(m.AmphoraHealth, m.AmphoraHealth.amphora_id == m.Amphora.id)
        .where(serving, m.AmphoraHealth.amphora_id.is_(None)))
    census = jobs.census(session, now)
    oldest = min((first for _, first in census.values() if first is not None), default=None)
    return Report(
        leases=leases,
        last_heartbeat_age=_age(now, session.scalar(select(func.max(
            m.AmphoraHealth.last_update)))),
        load_balancers=lbs, amphorae=amps,
        amphorae_stale=stale or 0, amphorae_unreported=unreported or 0,
        jobs={name: count for name, (count, _) in census.items()},
        oldest_job_age=_age(now, oldest))
