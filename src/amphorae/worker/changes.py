"""What a reconcile applied, told as one event (and log line) per run:

    load balancer web (<id>): created listener http (HTTP:80), pool pool1; applied in
    2.31 s, ACTIVE

:func:`pending` reads what the run is about to settle (the PENDING_* objects), before
completion.complete writes the final statuses; :func:`applied` tells it afterwards, with
the time it took and the outcome; :func:`failed` tells a load balancer that could not be
built.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.db import events
from amphorae.db import models as m
from amphorae.db import tree as subtree

VERBS = {c.PENDING_CREATE: "created", c.PENDING_UPDATE: "updated",
         c.PENDING_DELETE: "deleted"}
SHOWN = 10  # objects named per verb, at most

Pending = dict[str, list[str]]  # verb -> the objects' names


def pending(session: Session, lb_id: str) -> Pending:
    """The objects under ``lb_id`` waiting for this run, named, by what happens to them."""
    out: Pending = {}
    for model in subtree.KINDS:
        table = model.__table__  # type: ignore[attr-defined]
        rows = session.execute(select(table.c.id, table.c.provisioning_status).where(
            table.c.id.in_(subtree.ids_under(model, [lb_id])),
            table.c.provisioning_status.in_(tuple(VERBS)))).all()
        names = events.describe(session, model, [i for i, _ in rows])
        for object_id, status in rows:
            out.setdefault(VERBS[status], []).append(names.get(object_id, object_id))
    lb = session.get(m.LoadBalancer, lb_id)
    if lb is not None and lb.provisioning_status == c.PENDING_CREATE:
        out.setdefault("created", []).insert(0, "the load balancer")
    return out


def applied(session: Session, lb_id: str, changed: Pending, seconds: float,
            failed: Collection[str] = (), replaced: Collection[str] = ()) -> None:
    """Record the run's outcome; ``failed``: objects left out (now ERROR), ``replaced``:
    amphorae the run replaced."""
    lb = session.get(m.LoadBalancer, lb_id)
    if lb is None:
        return
    name = events.named("load balancer", lb.name, lb_id)
    if lb.provisioning_status == c.DELETED:
        message = f"{name} deleted in {seconds:.2f} s"
    else:
        what = [f"{verb} {events.listed(names, SHOWN)}" for verb, names in changed.items()]
        if replaced:
            what.append(f"replaced amphora {', '.join(sorted(replaced))}")
        message = (f"{name}: {'; '.join(what) or 'nothing pending, amphorae checked'}; "
                   f"applied in {seconds:.2f} s, {lb.provisioning_status}")
    level = "INFO"
    if failed:
        message += (", but left out of the configuration and now ERROR: "
                    f"{events.listed(_describe_any(session, failed), SHOWN)}")
        level = "WARNING"
    events.record(session, events.CHANGE_APPLIED, message, level=level,
                  resource_type="loadbalancer", resource_id=lb_id, load_balancer_id=lb_id)


def failed(session: Session, lb_id: str, reason: str, seconds: float) -> None:
    lb = session.get(m.LoadBalancer, lb_id)
    name = events.named("load balancer", lb.name if lb else None, lb_id)
    events.record(session, events.ERROR,
                  f"{name} cannot be built ({seconds:.2f} s), now ERROR: {reason}",
                  level="ERROR", resource_type="loadbalancer", resource_id=lb_id,
                  load_balancer_id=lb_id)


def _describe_any(session: Session, ids: Collection[str]) -> list[str]:
    """Names of objects of any kind of the tree."""
    found: dict[str, str] = {}
    for model in subtree.KINDS:
        found.update(events.describe(session, model, ids))
    return [found.get(i, i) for i in sorted(ids)]

