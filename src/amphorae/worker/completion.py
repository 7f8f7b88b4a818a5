"""What a successful reconcile writes: Octavia's final statuses for a load balancer tree.

PENDING_CREATE/PENDING_UPDATE objects become ACTIVE, PENDING_DELETE children are removed,
and a load balancer in PENDING_DELETE becomes DELETED (its row stays, hidden, until
housekeeping purges it); the reconcile released its VIP ports before.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.db import models as m
from amphorae.db import tree as subtree

# Children are removed leaves first, so no foreign key points at a removed row.
DELETE_ORDER = (m.L7Rule, m.L7Policy, m.HealthMonitor, m.Member, m.Pool, m.Listener)


def _delete_rows(session: Session, model: type, row_ids: list[str]) -> None:
    if not row_ids:
        return
    if model is m.Pool:
        session.execute(update(m.Listener).where(m.Listener.default_pool_id.in_(row_ids))
                        .values(default_pool_id=None))
        session.execute(update(m.L7Policy).where(m.L7Policy.redirect_pool_id.in_(row_ids))
                        .values(redirect_pool_id=None))
    if model is m.HealthMonitor:
        pools = select(m.HealthMonitor.pool_id).where(m.HealthMonitor.id.in_(row_ids))
        session.execute(update(m.Member).where(m.Member.pool_id.in_(pools))
                        .values(operating_status=c.NO_MONITOR))
    session.execute(delete(m.Tag).where(m.Tag.resource_id.in_(row_ids)))
    session.execute(delete(model).where(model.id.in_(row_ids)))


def complete(session: Session, lb_id: str, failed: Collection[str] = ()) -> None:
    """Write the success statuses for ``lb_id``'s tree after a reconcile; the objects in
    ``failed`` (left out of the data plane) go to ERROR instead."""
    lb = session.get(m.LoadBalancer, lb_id)
    if lb is None or lb.provisioning_status == c.DELETED:
        return
    tree = subtree.ids_by_kind(session, lb_id)
    if lb.provisioning_status == c.PENDING_DELETE:
        for model in DELETE_ORDER:
            _delete_rows(session, model, tree[model])
        session.execute(update(m.Amphora).where(m.Amphora.load_balancer_id == lb_id)
                        .values(status=c.DELETED))
        lb.provisioning_status = c.DELETED
        session.flush()
        session.expire(lb)
        return
    # Only kinds the tree has: a statement per empty kind cost more than the rest (a
    # load balancer with one listener went from 24 statements to 2).
    present = [model for model in DELETE_ORDER if tree[model]]
    for model in present:
        doomed = list(session.scalars(select(model.id).where(
            model.id.in_(tree[model]), model.provisioning_status == c.PENDING_DELETE)))
        _delete_rows(session, model, doomed)
    pending = (c.PENDING_CREATE, c.PENDING_UPDATE)
    for model in present:
        ids = [i for i in tree[model] if i not in failed]
        if ids:
            session.execute(update(model).where(
                model.id.in_(ids), model.provisioning_status.in_(pending))
                .values(provisioning_status=c.ACTIVE))
        broken = [i for i in tree[model] if i in failed]
        if broken:  # a failed object left the data plane, whatever it was doing before
            session.execute(update(model).where(model.id.in_(broken))
                            .values(provisioning_status=c.ERROR))
    # Monitors and L7 objects are ONLINE when enabled; the health manager owns the rest.
    for model in (m.HealthMonitor, m.L7Policy, m.L7Rule):
        if not tree[model]:
            continue
        for enabled, status in ((True, c.ONLINE), (False, c.OFFLINE)):
            # Only rows that change: an untouched object keeps its updated_at.
            session.execute(update(model).where(model.id.in_(tree[model]),
                                                model.enabled == enabled,
                                                model.operating_status != status)
                            .values(operating_status=status))
    lb.provisioning_status = c.ACTIVE
    session.flush()


def fail(session: Session, lb_id: str) -> None:
    """The load balancer could not be built: it and its pending objects go to ERROR."""
    lb = session.get(m.LoadBalancer, lb_id)
    if lb is None or lb.provisioning_status == c.DELETED:
        return
    tree = subtree.ids_by_kind(session, lb_id)
    for model in DELETE_ORDER:
        session.execute(update(model).where(
            model.id.in_(tree[model]),
            model.provisioning_status.in_((c.PENDING_CREATE, c.PENDING_UPDATE)))
            .values(provisioning_status=c.ERROR))
    lb.provisioning_status = c.ERROR
    session.flush()


# When an amphora refuses a configuration, the objects to leave out are looked for in
# rounds: first what was created (or failed before), then what was updated, leaves first,
# so a bad L7 rule costs the rule and not the listener its creation marked PENDING_UPDATE.
SUSPECT_ROUNDS = ((m.L7Rule, m.Member, m.HealthMonitor), (m.L7Policy, m.Pool), (m.Listener,))


def suspects(session: Session, lb_id: str) -> list[set[str]]:
    """Growing sets of object ids to leave out, one per round, without repeats."""
    tree = subtree.ids_by_kind(session, lb_id)

    def ids(models: tuple[type, ...], statuses: tuple[str, ...]) -> set[str]:
        out: set[str] = set()
        for model in models:
            out.update(session.scalars(select(model.id).where(
                model.id.in_(tree[model]), model.provisioning_status.in_(statuses))))
        return out

    rounds = [ids(DELETE_ORDER, (c.PENDING_CREATE, c.ERROR))]
    for models in SUSPECT_ROUNDS:
        grown = rounds[-1] | ids(models, (c.PENDING_UPDATE,))
        if grown != rounds[-1]:
            rounds.append(grown)
    return [r for r in rounds if r]
