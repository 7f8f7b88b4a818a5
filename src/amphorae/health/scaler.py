"""The autoscaler's loop: samples each ACTIVE_ACTIVE load balancer's load, asks
:func:`scaling.decide` and hands a decision to whoever applies it.

Where the figures come from and where decisions go are given as two functions, so this
loop holds only the samples of the last minute or so, per load balancer, in memory. A
restarted scaler starts with none, which delays a decision by at most ``in_after``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Iterable

from amphorae.health import scaling

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Target:
    """One ACTIVE_ACTIVE load balancer as the scaler sees it."""

    lb_id: str
    count: int  # amphorae it should have now
    minimum: int
    maximum: int
    last_change: float  # when ``count`` last changed (same clock as the loop's)
    busy: float | None  # mean busy share of its serving amphorae; None: no figures


class Scaler:
    def __init__(self, policy: scaling.Policy, targets: Callable[[], Iterable[Target]],
                 apply: Callable[[Target, scaling.Decision], bool]) -> None:
        self.policy = policy
        self.targets = targets
        self.apply = apply  # False: someone else changed the count first
        self.keep = max(policy.out_after, policy.in_after) * 2 + 5
        self.samples: dict[str, collections.deque[scaling.Sample]] = {}

    def tick(self, now: float) -> list[tuple[Target, scaling.Decision]]:
        """Take one sample of every target and apply what it calls for."""
        made = []
        seen = set()
        for target in self.targets():
            seen.add(target.lb_id)
            history = self.samples.setdefault(target.lb_id, collections.deque())
            if target.busy is not None:
                history.append(scaling.Sample(now, target.busy))
            while history and history[0].at < now - self.keep:
                history.popleft()
            decision = scaling.decide(self.policy, history, target.count, target.minimum,
                                      target.maximum, target.last_change, now)
            if decision is None:
                continue
            if self.apply(target, decision):
                LOG.info("load balancer %s: %d -> %d amphorae: %s", target.lb_id,
                         target.count, decision.count, decision.reason)
                made.append((target, decision))
        for gone in set(self.samples) - seen:  # deleted, or no longer ACTIVE_ACTIVE
            del self.samples[gone]
        return made
