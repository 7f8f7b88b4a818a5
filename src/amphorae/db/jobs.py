"""Enqueueing work for the controller worker inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from amphorae.common import constants
from amphorae.db.models import Job

NOTIFY_CHANNEL = "amphorae_jobs"


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
    """Wake PostgreSQL workers when the caller's transaction commits (NOTIFY is
    transactional, and repeated ones in a transaction fold into one); SQLite workers
    poll."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
