"""Operating statuses from one heartbeat, exactly as Octavia's health manager computes
them (reference §3.3). Pure: the current statuses and the message in, the new ones out.

- listener: OPEN -> ONLINE; FULL -> DEGRADED (the load balancer too); any other status
  -> ERROR; absent -> ERROR when it is enabled and the load balancer ACTIVE, else OFFLINE;
  unchanged when the heartbeat was heard before the listener's last change (ours: the
  agent built it before it applied the listener, so its absence says nothing);
- pool (key ``<pool_id>:<listener_id>``, or the bare id): UP -> ONLINE; DOWN -> ERROR
  (the load balancer too); absent -> OFFLINE;
- member: UP... -> ONLINE; DOWN... -> ERROR (its pool and the load balancer DEGRADED
  when they were ONLINE); DRAIN -> DRAINING; MAINT -> OFFLINE; "no check" -> NO_MONITOR;
  RESTARTING -> unchanged; absent -> OFFLINE unless NO_MONITOR;
- load balancer: OFFLINE when disabled, else ONLINE, downgraded as above.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from amphorae.common import constants as c


@dataclasses.dataclass(frozen=True)
class Tree:
    """What the database holds for one load balancer: ids -> current operating status."""

    lb_id: str
    lb_enabled: bool
    lb_active: bool  # provisioning_status ACTIVE
    lb_status: str
    listeners: Mapping[str, tuple[bool, str]]  # id -> (enabled, operating_status)
    pools: Mapping[str, str]
    members: Mapping[str, tuple[str, str]]  # id -> (pool_id, operating_status)
    listeners_changed: Mapping[str, dt.datetime] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Statuses:
    load_balancer: dict[str, str] = dataclasses.field(default_factory=dict)
    listener: dict[str, str] = dataclasses.field(default_factory=dict)
    pool: dict[str, str] = dataclasses.field(default_factory=dict)
    member: dict[str, str] = dataclasses.field(default_factory=dict)


def _pool_entries(message: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Pools by bare id; a pool behind several listeners is taken once (the first)."""
    out: dict[str, Mapping[str, Any]] = {}
    for key, entry in (message.get("pools") or {}).items():
        out.setdefault(str(key).split(":", 1)[0], entry)
    return out


def _member_status(reported: str, current: str) -> str | None:
    """None: this report means "leave it as it is"."""
    if reported.startswith("UP"):
        return c.ONLINE
    if reported.startswith("DOWN"):
        return c.ERROR
    return {"DRAIN": c.DRAINING, "MAINT": c.OFFLINE, "no check": c.NO_MONITOR}.get(
        reported, None if reported == "RESTARTING" else current)


def rollup(tree: Tree, message: Mapping[str, Any], heard_at: dt.datetime | None = None
           ) -> Statuses:
    """Every object's new operating status (all of them; the caller writes changes).
    ``heard_at``: when the heartbeat arrived, on the clock of ``listeners_changed``."""
    out = Statuses()
    lb_status = c.ONLINE if tree.lb_enabled else c.OFFLINE

    def degrade(to: str) -> None:
        nonlocal lb_status
        if lb_status == c.ONLINE or (to == c.ERROR and lb_status == c.DEGRADED):
            lb_status = to

    reported_listeners = message.get("listeners") or {}
    for listener_id, (enabled, current) in tree.listeners.items():
        entry = reported_listeners.get(listener_id)
        changed = tree.listeners_changed.get(listener_id)
        if entry is None and heard_at is not None and changed is not None \
                and heard_at < changed:
            status = current
        elif entry is None:
            status = c.ERROR if enabled and tree.lb_active else c.OFFLINE
        elif entry.get("status") == "OPEN":
            status = c.ONLINE
        elif entry.get("status") == "FULL":
            status = c.DEGRADED
            degrade(c.DEGRADED)
        else:
            status = c.ERROR
        out.listener[listener_id] = status

    reported_pools = _pool_entries(message)
    for pool_id in tree.pools:
        entry = reported_pools.get(pool_id)
        if entry is None:
            out.pool[pool_id] = c.OFFLINE
            continue
        pool_status = c.ONLINE if entry.get("status") == "UP" else c.ERROR
        if pool_status == c.ERROR:
            degrade(c.ERROR)
        out.pool[pool_id] = pool_status
    for member_id, (pool_id, current) in tree.members.items():
        entry = reported_pools.get(pool_id)
        reported = (entry or {}).get("members", {}).get(member_id)
        if reported is None:
            status = current if current == c.NO_MONITOR else c.OFFLINE
        else:
            status = _member_status(str(reported), current) or current
        if status == c.ERROR and entry is not None:
            if out.pool.get(pool_id) == c.ONLINE:
                out.pool[pool_id] = c.DEGRADED
            degrade(c.DEGRADED)
        out.member[member_id] = status
    out.load_balancer[tree.lb_id] = lb_status
    return out
