"""Operating status transitions as events: one per object whose status a batch of
heartbeats changed (a heartbeat that changes nothing tells nothing), members first, the
load balancer last with what brought it down:

    member 198.18.0.5:8000 of pool pool1 of load balancer web (<id>) is ERROR (was ONLINE)
    pool pool1 of load balancer web (<id>) is DEGRADED (was ONLINE)
    load balancer web (<id>) is DEGRADED (was ONLINE): member 198.18.0.5:8000 of pool
    pool1 is ERROR
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.db import events
from amphorae.db import models as m
from amphorae.health.rollup import Tree

# model -> (event kind, resource type), in the order the story is told
KINDS: dict[type, tuple[str, str]] = {
    m.Member: (events.MEMBER_STATUS, "member"),
    m.Pool: (events.POOL_STATUS, "pool"),
    m.Listener: (events.LISTENER_STATUS, "listener"),
    m.LoadBalancer: (events.LOADBALANCER_STATUS, "loadbalancer"),
}
SHOWN_CAUSES = 5  # culprits named in the load balancer's sentence, at most


def record(session: Session, trees: Mapping[str, Tree],
           changes: Mapping[type, Mapping[str, str]]) -> int:
    """Record the transitions in ``changes`` (model -> id -> new status) of the load
    balancers in ``trees`` (their statuses before); returns how many. A few queries per
    batch, however many load balancers changed: names and projects are read at once."""
    stories = []
    for lb_id, tree in trees.items():
        before = statuses(tree)
        mine = {model: {i: s for i, s in changes.get(model, {}).items()
                        if i in before[model]} for model in KINDS}
        if any(mine.values()):
            after = {model: {**before[model], **mine[model]} for model in KINDS}
            stories.append((lb_id, before, mine, after, _causes(after)))
    if not stories:
        return 0
    wanted: dict[type, set[str]] = {model: set() for model in KINDS}
    for lb_id, _, mine, _, causes in stories:
        wanted[m.LoadBalancer].add(lb_id)
        for model in KINDS:
            wanted[model] |= {*mine[model], *causes.get(model, ())}
    names = {model: events.describe(session, model, ids) for model, ids in wanted.items()}
    projects = {lb_id: project for lb_id, project in session.execute(
        select(m.LoadBalancer.id, m.LoadBalancer.project_id)
        .where(m.LoadBalancer.id.in_(wanted[m.LoadBalancer])))}
    count = 0
    for lb_id, before, mine, after, causes in stories:
        lb_name = names[m.LoadBalancer].get(lb_id, f"load balancer {lb_id}")
        for model, (kind, resource_type) in KINDS.items():
            for object_id, status in mine[model].items():
                name = names[model].get(object_id, f"{resource_type} {object_id}")
                where = "" if model is m.LoadBalancer else f" of {lb_name}"
                message = f"{name}{where} is {status} (was {before[model][object_id]})"
                if model is m.LoadBalancer and causes and status in (c.DEGRADED, c.ERROR):
                    message += ": " + _culprits(causes, after, names)
                events.record(session, kind, message, level=_level(model, status),
                              resource_type=resource_type, resource_id=object_id,
                              load_balancer_id=lb_id, project_id=projects.get(lb_id))
                count += 1
    return count


def statuses(tree: Tree) -> dict[type, dict[str, str]]:
    """The tree's current operating statuses, by model and id."""
    return {m.LoadBalancer: {tree.lb_id: tree.lb_status},
            m.Listener: {i: s for i, (_, s) in tree.listeners.items()},
            m.Pool: dict(tree.pools),
            m.Member: {i: s for i, (_, s) in tree.members.items()}}


def _causes(after: Mapping[type, Mapping[str, str]]) -> dict[type, list[str]]:
    """What keeps a load balancer from ONLINE: listeners not serving, pools in ERROR,
    members in ERROR (a DEGRADED pool is told by its members)."""
    bad = {m.Listener: (c.ERROR, c.DEGRADED), m.Pool: (c.ERROR,), m.Member: (c.ERROR,)}
    found = {model: sorted(i for i, s in after[model].items() if s in statuses)
             for model, statuses in bad.items()}
    return {model: ids for model, ids in found.items() if ids}


def _culprits(causes: Mapping[type, list[str]], after: Mapping[type, Mapping[str, str]],
              names: Mapping[type, Mapping[str, str]]) -> str:
    parts = [f"{names[model].get(i, i)} is {after[model][i]}"
             for model in (m.Listener, m.Pool, m.Member) for i in causes.get(model, ())]
    return events.listed(parts, SHOWN_CAUSES)


def _level(model: type, status: str) -> str:
    if status == c.ERROR:  # one member down is a warning; a pool or listener down, not
        return "WARNING" if model is m.Member else "ERROR"
    return "WARNING" if status == c.DEGRADED else "INFO"
