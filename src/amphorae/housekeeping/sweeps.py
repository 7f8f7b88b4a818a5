"""The periodic sweeps: nothing stays stuck, nothing is left behind, old rows go.

- stuck: a load balancer in PENDING_* with no job (a job lost to a bug or a manual
  database edit) is enqueued again, so every pending object reaches a final state;
- orphans: an amphora on this host that no live database row claims (a worker died
  between booting and recording it, or a row was purged) is deleted; so is a network
  object (a Neutron port or security group) this deployment made for a load balancer or
  amphora that no live row claims (an API process died between allocating a VIP port and
  committing), once it is ORPHAN_MIN_AGE old: one whose create is in flight is younger;
- purge: DELETED load balancers and amphorae older than the configured expiry ages are
  removed from the database, as Octavia's housekeeping does, and so are events older
  than ``event_expiry_age``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.db import jobs
from amphorae.db import models as m
from amphorae.drivers.network.base import OwnedResource

LOG = logging.getLogger(__name__)
# A network object's row may commit a moment after the object is made (the API makes the
# VIP port before its transaction commits): younger objects are never orphans.
ORPHAN_MIN_AGE = dt.timedelta(minutes=5)
PENDING = (c.PENDING_CREATE, c.PENDING_UPDATE, c.PENDING_DELETE)
# The purges run in sessions of their own that hold no object: nothing to synchronize,
# and SQLAlchemy's default would first select the rows an IN-subquery delete removes
# (every cleanup_interval, also when there is nothing to purge).
UNSYNCED = {"synchronize_session": False}


def requeue_stuck(session: Session) -> list[str]:
    """Enqueue a reconcile for every pending load balancer that has no job."""
    stuck = list(session.scalars(select(m.LoadBalancer.id).where(
        m.LoadBalancer.provisioning_status.in_(PENDING),
        ~exists().where(m.Job.load_balancer_id == m.LoadBalancer.id))))
    for lb_id in stuck:
        LOG.warning("load balancer %s is pending with no job: enqueued again", lb_id)
        jobs.enqueue(session, lb_id)
    return stuck


def orphans(session: Session, host_amphora_ids: Iterable[str]) -> list[str]:
    """Amphorae found on the host that no live row owns (ids as the host knows them)."""
    found = list(host_amphora_ids)
    live = set(session.scalars(select(m.Amphora.id).where(
        m.Amphora.id.in_(found), m.Amphora.status != c.DELETED)))
    return [amp_id for amp_id in found if amp_id not in live]


def network_orphans(session: Session, found: Iterable[OwnedResource], now: dt.datetime
                    ) -> list[OwnedResource]:
    """Those of ``found`` older than ORPHAN_MIN_AGE whose load balancer or amphora has
    no live row."""
    old = [r for r in found if now - r.created_at >= ORPHAN_MIN_AGE]
    lbs = {r.load_balancer_id for r in old if r.load_balancer_id}
    amps = {r.amphora_id for r in old if r.amphora_id}
    live_lbs = set(session.scalars(select(m.LoadBalancer.id).where(
        m.LoadBalancer.id.in_(lbs), m.LoadBalancer.provisioning_status != c.DELETED)))
    live_amps = set(session.scalars(select(m.Amphora.id).where(
        m.Amphora.id.in_(amps), m.Amphora.status != c.DELETED)))
    return [r for r in old if r.load_balancer_id not in live_lbs
            and r.amphora_id not in live_amps]


def purge(session: Session, now: dt.datetime) -> tuple[int, int]:
    """Remove DELETED rows past their expiry age; returns (load balancers, amphorae)."""
    hk = config.CONF.house_keeping
    amp_cutoff = now - dt.timedelta(seconds=hk.amphora_expiry_age)
    lb_cutoff = now - dt.timedelta(seconds=hk.load_balancer_expiry_age)
    amps = session.execute(delete(m.Amphora).where(
        m.Amphora.status == c.DELETED, m.Amphora.updated_at < amp_cutoff),
        execution_options=UNSYNCED)
    old_lbs = select(m.LoadBalancer.id).where(
        m.LoadBalancer.provisioning_status == c.DELETED,
        m.LoadBalancer.updated_at < lb_cutoff,
        ~exists().where(m.Amphora.load_balancer_id == m.LoadBalancer.id))
    session.execute(delete(m.Tag).where(m.Tag.resource_id.in_(old_lbs)),
                    execution_options=UNSYNCED)
    lbs = session.execute(delete(m.LoadBalancer).where(m.LoadBalancer.id.in_(old_lbs)),
                          execution_options=UNSYNCED)
    return lbs.rowcount, amps.rowcount  # type: ignore[attr-defined]


def purge_events(session: Session, now: dt.datetime) -> int:
    """Remove events older than ``[house_keeping] event_expiry_age``; returns how many."""
    cutoff = now - dt.timedelta(seconds=config.CONF.house_keeping.event_expiry_age)
    return session.execute(delete(m.Event).where(  # type: ignore[attr-defined]
        m.Event.created_at < cutoff), execution_options=UNSYNCED).rowcount
