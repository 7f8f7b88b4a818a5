"""Issue 14's figures: each target, and the value measured on main before the issue
(from the issue's text), in one place. bench/provision.py and bench/dataplane.py print
each figure they measure through :func:`line` (the value, the target and the verdict,
the value before) and end with :func:`summary` of those lines.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Target:
    label: str
    bound: float  # the figure must stay below this
    unit: str  # "s", "MiB", "%"
    before: str  # measured on main before issue 14, as the issue gives it
    where: str  # the script that measures it

    def verdict(self, value: float) -> str:
        return "met" if value < self.bound else "NOT met"


TARGETS: dict[str, Target] = {
    "boot": Target("amphora boot (namespace to agent ready), median", 0.25, "s",
                   "0.53 s", "dataplane"),
    "post_active_single": Target("POST to ACTIVE, SINGLE, median", 0.5, "s", "0.89 s",
                                 "provision"),
    "post_active_pair": Target("POST to ACTIVE, ACTIVE_STANDBY, median", 1.0, "s",
                               "1.75 s", "provision"),
    "first_200_single": Target("ACTIVE to first 200 via the VIP, SINGLE, median", 0.3, "s",
                               "not given", "provision"),
    "first_200_pair": Target("ACTIVE to first 200 via the VIP, ACTIVE_STANDBY, median",
                             0.3, "s", "~11 s (fully populated: ACTIVE 2.1 s, first 200 "
                             "at 4.5 s)", "provision"),
    "burst": Target("100 load balancers POSTed at once: all ACTIVE after", 20.0, "s",
                    "58 s", "provision"),
    "rss": Target("RSS of one amphora (sum of its processes)", 40.0, "MiB", "77 MiB",
                  "both"),
    "idle": Target("idle `amphorae up` CPU (60 s), % of a core", 0.5, "%", "3.5%",
                   "provision"),
    "single_kill": Target("SINGLE amphora killed: traffic gap", 2.0, "s", "6.7 s",
                          "provision"),
    "vrrp_gap": Target("VRRP takeover traffic gap, default adverts", 1.0, "s",
                       "2.0 s (default then: 1 s adverts)", "dataplane"),
}

_measured: list[str] = []


def line(key: str, value: float, detail: str = "") -> str:
    """One figure next to its target and its value before issue 14; kept for
    :func:`summary`."""
    t = TARGETS[key]
    text = (f"{t.label}: {value:.3f} {t.unit}{f' ({detail})' if detail else ''}   "
            f"target < {t.bound:g} {t.unit}: {t.verdict(value)}   before: {t.before}")
    _measured.append(text)
    return text


def summary() -> str:
    """Every figure measured in this run, in the order measured."""
    if not _measured:
        return "issue 14 figures: none measured"
    return "\n".join(["issue 14 figures of this run:", *(f"  {t}" for t in _measured)])
