"""Enqueueing work for the controller worker inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import case, event, func, select, text
from sqlalchemy.orm import Session

from amphorae.common import constants, doorbell
from amphorae.db.models import Job

NOTIFY_CHANNEL = "amphorae_jobs"
STATES = ("ready", "leased", "delayed")
_RING = "amphorae_ring_on_commit"  # session.info key: a ring is already registered


def enqueue(session: Session, load_balancer_id: str | None,
            action: str = constants.JOB_RECONCILE, amphora_id: str | None = None,
            payload: dict[str, Any] | None = None) -> Job:
    """Add a job to the session; it commits (or rolls back) with the API change."""
    job = Job(load_balancer_id=load_balancer_id, action=action, amphora_id=amphora_id,
              payload=payload)
    session.add(job)
    notify(session)
    return job


def notify(session: Session) -> None:
    """Wake workers when the caller's transaction commits: PostgreSQL's NOTIFY is
    transactional (repeated ones in a transaction fold into one); SQLite's workers on
    this host are rung (common/doorbell.py) once the commit is done."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        return
    directory = doorbell.directory_for(bind.url.render_as_string())
    if directory is None or session.info.get(_RING):
        return
    session.info[_RING] = True

    def ring(committed: Session) -> None:
        committed.info.pop(_RING, None)
        doorbell.ring(directory)

    event.listen(session, "after_commit", ring, once=True)


def census(session: Session, now: dt.datetime) -> dict[str, tuple[int, dt.datetime | None]]:
    """Per state (:data:`STATES`), how many jobs and the oldest one's creation: leased
    while a worker's lease runs, delayed while a retry is not due, ready otherwise (an
    expired lease included: any worker may claim it)."""
    state = case((Job.lease_expires_at >= now, "leased"), (Job.not_before > now, "delayed"),
                 else_="ready").label("state")
    # Grouped through a subquery: PostgreSQL sees two CASEs with their own parameters as
    # different expressions.
    jobs = select(state, Job.created_at).subquery()
    found = {name: (count, first) for name, count, first in session.execute(
        select(jobs.c.state, func.count(), func.min(jobs.c.created_at))
        .group_by(jobs.c.state))}
    return {name: found.get(name, (0, None)) for name in STATES}
