"""The rows under a load balancer: its listeners and pools, their members and health
monitors, the listeners' L7 policies and their rules.

The one walk of that tree (each kind reaches its load balancer through its parents'
foreign keys), shared by status cascades, cascade delete and the health manager.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from amphorae.db import models as m

# Every kind of the tree, parents before children.
KINDS: tuple[type, ...] = (m.Listener, m.Pool, m.Member, m.HealthMonitor, m.L7Policy,
                           m.L7Rule)
# A child kind -> (its foreign key column, the parent kind); the others hold
# load_balancer_id themselves.
_PARENTS: dict[type, tuple[str, type]] = {
    m.Member: ("pool_id", m.Pool),
    m.HealthMonitor: ("pool_id", m.Pool),
    m.L7Policy: ("listener_id", m.Listener),
    m.L7Rule: ("l7policy_id", m.L7Policy),
}


def _table(kind: type) -> Any:
    return kind.__table__  # type: ignore[attr-defined]


def select_under(kind: type, lb_ids: Iterable[str], *columns: str) -> Select:
    """``SELECT load_balancer_id, <columns>`` (default: ``id``) of every row of ``kind``
    under the load balancers ``lb_ids``: Core columns, plain tuples."""
    table = _table(kind)
    joined, current = table, kind
    while current in _PARENTS:
        foreign_key, parent = _PARENTS[current]
        parent_table = _table(parent)
        joined = joined.join(parent_table, parent_table.c.id == _table(current).c[foreign_key])
        current = parent
    owner = _table(current).c.load_balancer_id
    wanted = [table.c[name] for name in columns or ("id",)]
    return select(owner, *wanted).select_from(joined).where(owner.in_(list(lb_ids)))


def ids_under(kind: type, lb_ids: Iterable[str]) -> Select:
    """The ids of ``kind``'s rows under ``lb_ids``, for ``IN`` clauses."""
    return select_under(kind, lb_ids).with_only_columns(_table(kind).c.id)


def ids_by_kind(session: Session, lb_id: str) -> dict[type, list[str]]:
    """The ids of every row under ``lb_id``, by kind (each kind of KINDS is a key)."""
    return {kind: list(session.scalars(ids_under(kind, [lb_id]))) for kind in KINDS}


def set_all(session: Session, lb_id: str, **values: Any) -> None:
    """Set ``values`` on every row under ``lb_id`` (e.g. a cascade delete's status)."""
    for kind in KINDS:
        session.execute(update(kind).where(_table(kind).c.id.in_(ids_under(kind, [lb_id])))
                        .values(**values))
