"""What the worker counts: each finished reconcile, by what it was for and how it ended."""

from __future__ import annotations

from amphorae.common import constants as c
from amphorae.common import metrics
from amphorae.worker.queue import Claim, LeaseLost
from amphorae.worker.reconciler import NotYet

# A claim may hold several jobs; it is named after the one that says most about it.
ACTIONS = (c.JOB_FAILOVER_LB, c.JOB_FAILOVER_AMPHORA, c.JOB_DELETE_AMPHORA,
           c.JOB_AMPHORA_CONFIG)
SUCCESS, LEASE_LOST, ERROR, GAVE_UP = "success", "lease_lost", "error", "gave_up"
WAITING = "waiting"  # stopped while an amphora boots, due again later


def action(claim: Claim) -> str:
    return next((a for a in ACTIONS if claim.has(a)), c.JOB_RECONCILE)


def outcome(error: BaseException | None) -> str:
    if error is None:
        return SUCCESS
    if isinstance(error, LeaseLost):
        return LEASE_LOST
    return WAITING if isinstance(error, NotYet) else ERROR


@metrics.safe
def finished(claim: Claim, error: BaseException | None, seconds: float) -> None:
    metrics.reconciled(action(claim), outcome(error), seconds)


@metrics.safe
def gave_up(claim: Claim) -> None:
    """Claimed too often without finishing: put in ERROR without a reconcile."""
    metrics.reconciled(action(claim), GAVE_UP, 0.0)
