"""What an ACTIVE_ACTIVE load balancer's amphorae should become: a pure plan over its
amphora rows, the wanted count (db/scale.desired) and the amphorae a failover names.

- dead ones (compute instance gone, or named by a failover) go at once, draining or not:
  the distributor stops sending to them before anything else happens;
- serving ones beyond the count are drained, newest first (the oldest have the most
  flows to lose, and the stick tables they started);
- short of the count, draining ones serve again first, then boots left from an earlier
  run are followed, then new ones are booted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Sequence

from amphorae.common import constants as c

DRAINING = c.PENDING_DELETE  # an amphora's status while its flows run out
DRAIN_IDLE = 2.0  # seconds the distributor must have sent a draining amphora nothing


@dataclasses.dataclass(frozen=True)
class Seat:
    """One amphora row, as the plan sees it."""

    id: str
    status: str
    created_at: dt.datetime
    alive: bool  # its compute instance is ACTIVE


@dataclasses.dataclass(frozen=True)
class Plan:
    keep: tuple[str, ...] = ()  # serving, and staying
    revive: tuple[str, ...] = ()  # draining ones that serve again
    resume: tuple[str, ...] = ()  # BOOTING rows whose boot is followed again
    boot: int = 0  # new amphorae to boot
    drain: tuple[str, ...] = ()  # serving ones that start draining now
    draining: tuple[str, ...] = ()  # draining ones that go on draining
    doomed: tuple[str, ...] = ()  # to remove at once


def plan(seats: Sequence[Seat], wanted: int, replace: Collection[str] = ()) -> Plan:
    by_age = sorted(seats, key=lambda s: (s.created_at, s.id))
    doomed = [s.id for s in by_age if s.id in replace
              or (s.status != c.AMPHORA_BOOTING and not s.alive)]
    live = [s for s in by_age if s.id not in doomed]
    serving = [s.id for s in live if s.status in c.AMPHORA_SERVING]
    draining = [s.id for s in live if s.status == DRAINING]
    booting = [s.id for s in live if s.status == c.AMPHORA_BOOTING]
    doomed += [s.id for s in live if s.id not in {*serving, *draining, *booting}]
    if len(serving) >= wanted:
        keep, drain = serving[:wanted], serving[wanted:]
        return Plan(keep=tuple(keep), drain=tuple(reversed(drain)),
                    draining=tuple(draining), doomed=tuple(doomed + booting))
    need = wanted - len(serving)
    revive = draining[-need:][::-1]  # the newest have drained the least
    need -= len(revive)
    resume = booting[:need]
    return Plan(keep=tuple(serving), revive=tuple(revive), resume=tuple(resume),
                boot=need - len(resume),
                draining=tuple(d for d in draining if d not in revive),
                doomed=tuple(doomed + booting[len(resume):]))


def drained(idle: float, connections: int | None, started: dt.datetime,
            now: dt.datetime, timeout: float) -> bool:
    """Whether a draining amphora may go: the distributor has sent it nothing for
    :data:`DRAIN_IDLE` s and a heartbeat since the drain began reported no connection
    (``connections`` None: none came yet), or the drain has lasted ``timeout`` s."""
    if (now - started).total_seconds() >= timeout:
        return True
    return idle >= DRAIN_IDLE and connections == 0
