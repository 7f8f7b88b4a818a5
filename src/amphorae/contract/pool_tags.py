"""Pool settings beyond Octavia's v2 API, carried in pool tags.

The v2 API has no field for connection draining or slow start, so a pool takes them as
tags (``amphorae:drain_timeout=30``, ``amphorae:slow_start=10``, whole seconds). The API
refuses a malformed one with a 400 naming the tag; the controller reads them into the
render model. A pool without the tag keeps the default (see docs/runtime-updates.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

PREFIX = "amphorae:"
DRAIN_TIMEOUT = "drain_timeout"
SLOW_START = "slow_start"
LIMITS = {DRAIN_TIMEOUT: 3600, SLOW_START: 3600}  # seconds
# How haproxy.cfg tells the agent a backend's drain timeout: HAProxy has no keyword for
# it, and a comment line leaves HAProxy's reading of the file unchanged.
DRAIN_COMMENT = "# amphorae drain-timeout"


def drain_comment(seconds: int) -> str:
    return f"{DRAIN_COMMENT} {int(seconds)}s"


@dataclasses.dataclass(frozen=True)
class PoolTuning:
    """None: the tag is absent (the default applies)."""

    drain_timeout: int | None = None
    slow_start: int | None = None


class BadTag(ValueError):
    def __init__(self, tag: str, reason: str) -> None:
        super().__init__(f"{tag}: {reason}")
        self.tag = tag
        self.reason = reason


def parse(tags: Iterable[str] | None) -> PoolTuning:
    """The tuning that ``tags`` ask for; raises BadTag for an ``amphorae:`` tag that is
    unknown, malformed, out of range or given twice with different values."""
    found: dict[str, int] = {}
    for tag in tags or ():
        if not tag.startswith(PREFIX):
            continue  # the user's own tags
        key, sep, raw = tag[len(PREFIX):].partition("=")
        if key not in LIMITS:
            raise BadTag(tag, f"unknown setting; known: "
                              f"{', '.join(PREFIX + name for name in LIMITS)}")
        if not sep or not raw.isascii() or not raw.isdigit():
            raise BadTag(tag, f"expected {PREFIX}{key}=<whole seconds>")
        value = int(raw)
        if value > LIMITS[key]:
            raise BadTag(tag, f"at most {LIMITS[key]} seconds")
        if found.get(key, value) != value:
            raise BadTag(tag, f"{PREFIX}{key} is given twice with different values")
        found[key] = value
    return PoolTuning(drain_timeout=found.get(DRAIN_TIMEOUT),
                      slow_start=found.get(SLOW_START))
