"""The job queue in the database: claims with renewable leases, one target at a time.

A job says "make this load balancer (or this lone amphora) match the database". Jobs for
the same target are claimed together and carried out by one reconcile: the reconcile
reads the database after the claim, so it satisfies every job written before it. A job
written while the reconcile runs stays unclaimed and triggers the next one.

No two workers ever work on the same target: a claim skips any target that has a job
under another worker's live lease. A worker renews its leases while it works; when it
dies, its leases expire and any worker (or the same one, restarted) claims the jobs again.
On PostgreSQL several workers share the queue: the candidate row is picked with
``FOR UPDATE SKIP LOCKED`` and a transaction-scoped advisory lock per target (tried, never
waited for) makes the "no live lease" check and the claim one atomic step. On SQLite
every writer holds the database lock (BEGIN IMMEDIATE), which serialises claims.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import zlib
from collections.abc import Collection, Iterator, Sequence

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from amphorae.common.timeutil import utcnow
from amphorae.db import engine
from amphorae.db.models import Job

ATTEMPTS = 20  # targets tried per claim: enough to step over those busy elsewhere
AMPHORA_TARGET = "amphora:"  # prefix of the target of jobs without a load balancer


def target_of(load_balancer_id: str | None, amphora_id: str | None) -> str:
    """The unit of exclusion: the load balancer, or the amphora for jobs without one."""
    return load_balancer_id or f"{AMPHORA_TARGET}{amphora_id}"


@dataclasses.dataclass(frozen=True)
class Claim:
    target: str
    load_balancer_id: str | None
    job_ids: tuple[int, ...]
    actions: frozenset[tuple[str, str | None]]  # (action, amphora_id)
    attempts: int  # the most any claimed job has been claimed, this claim included

    def has(self, action: str) -> bool:
        return any(a == action for a, _ in self.actions)

    def amphorae_for(self, action: str) -> set[str]:
        return {amp for a, amp in self.actions if a == action and amp}


class LeaseLost(Exception):
    """Another worker holds the jobs now: whatever this one was doing must not be
    written back (that worker redoes it from the database)."""


class JobQueue:
    def __init__(self, owner: str, lease_seconds: float, url: str | None = None) -> None:
        self.owner = owner
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.url = url

    # -- claiming ----------------------------------------------------------------------

    def claim(self, skip: Collection[str] = ()) -> Claim | None:
        """Lease the jobs of the oldest due target nobody else works on, if any. The
        caller's own targets in flight go in ``skip``: a job written meanwhile, or one
        whose lease ran out while the caller still works, must wait for that work."""
        busy_lbs = {t for t in skip if not t.startswith(AMPHORA_TARGET)}
        busy_amps = {t[len(AMPHORA_TARGET):] for t in skip if t.startswith(AMPHORA_TARGET)}
        for _ in range(ATTEMPTS):
            with engine.transaction(url=self.url) as session:
                now = utcnow()
                postgres = session.get_bind().dialect.name == "postgresql"
                query = (select(Job.load_balancer_id, Job.amphora_id)
                         .where(_free(now),
                                or_(Job.not_before.is_(None), Job.not_before <= now))
                         .order_by(Job.id).limit(1))
                if busy_lbs:
                    query = query.where(or_(Job.load_balancer_id.is_(None),
                                            Job.load_balancer_id.not_in(busy_lbs)))
                if busy_amps:
                    query = query.where(or_(Job.load_balancer_id.is_not(None),
                                            Job.amphora_id.not_in(busy_amps)))
                if postgres:
                    # One row, never waited for: a worker that blocks nobody else while
                    # it holds a row cannot be part of a deadlock.
                    query = query.with_for_update(skip_locked=True)
                row = session.execute(query).first()
                if row is None:
                    return None
                lb_id, amp_id = row
                if not postgres or _try_target_lock(session, target_of(lb_id, amp_id)):
                    claim = self._claim_target(session, now, lb_id, amp_id)
                    if claim is not None:
                        return claim
            if lb_id is not None:
                busy_lbs.add(lb_id)
            else:
                busy_amps.add(amp_id)
        return None

    def _claim_target(self, session: Session, now: dt.datetime, lb_id: str | None,
                      amp_id: str | None) -> Claim | None:
        mine = _of_target(lb_id, amp_id)
        busy = session.scalar(select(func.count()).select_from(Job).where(
            mine, ~_free(now), Job.lease_owner != self.owner))
        if busy:
            return None
        rows = session.execute(select(Job.id, Job.action, Job.amphora_id, Job.attempts)
                               .where(mine, _free(now) | (Job.lease_owner == self.owner))
                               .order_by(Job.id)).all()
        if not rows:
            return None
        ids = tuple(r.id for r in rows)
        session.execute(update(Job).where(Job.id.in_(ids)).values(
            lease_owner=self.owner, lease_expires_at=now + self.lease,
            attempts=Job.attempts + 1))
        return Claim(target=target_of(lb_id, amp_id), load_balancer_id=lb_id, job_ids=ids,
                     actions=frozenset((r.action, r.amphora_id) for r in rows),
                     attempts=max(r.attempts for r in rows) + 1)

    def next_due(self) -> float | None:
        """Seconds until a job that cannot be claimed now may become claimable (its
        not_before, or the end of another worker's lease); None when no job waits on a
        time. A lower bound: a worker that wakes then and finds nothing looks again."""
        with engine.transaction(write=False, url=self.url) as session:
            now = utcnow()
            times = session.execute(select(
                func.min(Job.not_before).filter(Job.not_before > now),
                func.min(Job.lease_expires_at).filter(Job.lease_expires_at >= now))).one()
        due = [t for t in times if t is not None]
        return max((min(due) - now).total_seconds(), 0.0) if due else None

    # -- while working and after -------------------------------------------------------

    def renew(self, claims: Sequence[Claim]) -> set[str]:
        """Push the leases of ``claims`` forward; returns the targets whose lease was
        lost (expired and taken over), whose work must not be written back."""
        if not claims:
            return set()
        lost = set()
        with engine.transaction(url=self.url) as session:
            until = utcnow() + self.lease
            for claim in claims:
                result = session.execute(update(Job).where(
                    Job.id.in_(claim.job_ids), Job.lease_owner == self.owner)
                    .values(lease_expires_at=until))
                if result.rowcount == 0:  # type: ignore[attr-defined]
                    lost.add(claim.target)
        return lost

    @contextlib.contextmanager
    def fenced(self, claim: Claim) -> Iterator[Session]:
        """A write transaction that commits only while ``claim`` still holds its jobs:
        the check and the writes are one transaction, and the job rows stay locked
        until it ends, so no other worker can claim them in between (SQLite: the write
        lock; PostgreSQL: the rows' locks). Raises :class:`LeaseLost` otherwise."""
        with engine.transaction(url=self.url) as session:
            held = select(func.count()).select_from(Job).where(
                Job.id.in_(claim.job_ids), Job.lease_owner == self.owner)
            if session.get_bind().dialect.name == "postgresql":
                held = select(func.count()).select_from(
                    select(Job.id).where(Job.id.in_(claim.job_ids),
                                         Job.lease_owner == self.owner)
                    .with_for_update().subquery())
            if session.scalar(held) != len(claim.job_ids):
                raise LeaseLost(claim.target)
            yield session

    def done(self, claim: Claim) -> None:
        """The reconcile ran to an end (success or a final ERROR): drop its jobs."""
        with engine.transaction(url=self.url) as session:
            session.execute(delete(Job).where(Job.id.in_(claim.job_ids),
                                              Job.lease_owner == self.owner))

    def retry(self, claim: Claim, delay: float) -> None:
        """Give the jobs back, due again after ``delay`` seconds."""
        with engine.transaction(url=self.url) as session:
            session.execute(update(Job).where(
                Job.id.in_(claim.job_ids), Job.lease_owner == self.owner).values(
                lease_owner=None, lease_expires_at=None,
                not_before=utcnow() + dt.timedelta(seconds=delay)))

    def defer(self, claim: Claim, delay: float) -> None:
        """Give the jobs back, due again after ``delay`` seconds, without counting this
        claim as an attempt: the reconcile did not fail, it waits (for a booting VM)."""
        with engine.transaction(url=self.url) as session:
            session.execute(update(Job).where(
                Job.id.in_(claim.job_ids), Job.lease_owner == self.owner).values(
                lease_owner=None, lease_expires_at=None, attempts=Job.attempts - 1,
                not_before=utcnow() + dt.timedelta(seconds=delay)))

    def release_all(self) -> None:
        """On a clean shutdown: hand this worker's jobs back at once."""
        with engine.transaction(url=self.url) as session:
            session.execute(update(Job).where(Job.lease_owner == self.owner).values(
                lease_owner=None, lease_expires_at=None))


def _free(now: dt.datetime):  # type: ignore[no-untyped-def]
    return or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)


def _of_target(lb_id: str | None, amp_id: str | None):  # type: ignore[no-untyped-def]
    if lb_id is not None:
        return Job.load_balancer_id == lb_id
    return (Job.load_balancer_id.is_(None)) & (Job.amphora_id == amp_id)


def _try_target_lock(session: Session, target: str) -> bool:
    key = zlib.crc32(target.encode()) - 2**31  # a signed 32-bit advisory lock key
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}))
