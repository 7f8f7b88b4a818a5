"""When an ACTIVE_ACTIVE load balancer needs one amphora more or one less.

A pure decision over the recent load of the set: each sample is the mean busy share
(0 to 1) of the amphorae that serve, from their heartbeats. The set grows by one when it
has run hot for ``out_after`` seconds and shrinks by one when it has run cold for
``in_after`` seconds, never outside the flavor's bounds and never within ``cooldown``
seconds of the last change. Two rules keep it from flapping: samples taken before the
last change do not count (they describe another set), and it shrinks only when the
remaining amphorae would carry the same load below the "hot" line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Policy:
    hot: float = 0.70  # mean busy share above which the set runs hot
    cold: float = 0.30  # ... and below which it runs cold
    out_after: float = 3.0  # seconds hot before an amphora is added
    in_after: float = 30.0  # seconds cold before one is removed
    cooldown: float = 10.0  # seconds after a change before the next one

    def __post_init__(self) -> None:
        if not 0 <= self.cold < self.hot <= 1:
            raise ValueError(f"need 0 <= cold < hot <= 1, got cold={self.cold} hot={self.hot}")
        if min(self.out_after, self.in_after, self.cooldown) < 0:
            raise ValueError("durations must not be negative")


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float  # seconds, any monotonic clock shared with ``now``
    busy: float  # mean busy share of the serving amphorae, 0 to 1


@dataclasses.dataclass(frozen=True)
class Decision:
    count: int
    reason: str


def _streak(samples: Sequence[Sample], since: float, test: float, above: bool
            ) -> tuple[float, float] | None:
    """(seconds, mean busy) of the newest unbroken run of samples on one side of
    ``test``, taken after ``since``; None when the newest sample is not on it. The run
    lasts from its first sample to its last: time without samples proves nothing."""
    run = []
    for sample in sorted(samples, key=lambda s: s.at, reverse=True):
        if sample.at <= since or (sample.busy > test) != above:
            break
        run.append(sample)
    if not run:
        return None
    return run[0].at - run[-1].at, sum(s.busy for s in run) / len(run)


def decide(policy: Policy, samples: Sequence[Sample], count: int, minimum: int,
           maximum: int, last_change: float, now: float) -> Decision | None:
    """The amphora count to move to, with why; None to keep ``count``."""
    if count < minimum:
        return Decision(minimum, f"{count} amphorae, below the minimum {minimum}")
    if count > maximum:
        return Decision(maximum, f"{count} amphorae, above the maximum {maximum}")
    if now - last_change < policy.cooldown:
        return None
    hot = _streak(samples, last_change, policy.hot, above=True)
    if hot and count < maximum and hot[0] >= policy.out_after:
        return Decision(count + 1, f"mean busy {hot[1]:.0%} above {policy.hot:.0%} for "
                                   f"{hot[0]:.1f} s")
    cold = _streak(samples, last_change, policy.cold, above=False)
    if cold and count > minimum and cold[0] >= policy.in_after:
        after = cold[1] * count / (count - 1)
        if after < policy.hot:
            return Decision(count - 1, f"mean busy {cold[1]:.0%} below {policy.cold:.0%} for "
                                       f"{cold[0]:.1f} s ({after:.0%} on one fewer)")
    return None
