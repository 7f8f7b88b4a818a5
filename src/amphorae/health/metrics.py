"""What the health manager counts, into the Prometheus counters of common/metrics.py.

The receiver keeps its own counters (a ``collections.Counter`` the event loop bumps per
datagram, at no cost beyond a dict update); :class:`HeartbeatMirror` carries what they
grew by into Prometheus from the writer thread, once per batch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from amphorae.common import heartbeat as codec
from amphorae.common import metrics

REJECTED = (*codec.REASONS, "replayed", "overflow", "error")
HEARTBEAT_TIMEOUT, INSTANCE_GONE = "heartbeat_timeout", "instance_gone"


class HeartbeatMirror:
    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    @metrics.safe
    def update(self, counters: Mapping[str, int]) -> None:
        now = dict(counters)  # one copy: every figure below from the same moment
        grew = {name: value - self.seen.get(name, 0) for name, value in now.items()}
        self.seen = now
        i = metrics.instruments()
        if grew.get("received"):
            i.heartbeats_received.inc(grew["received"])
        for reason in REJECTED:
            if grew.get(reason):
                i.heartbeats_rejected.labels(reason).inc(grew[reason])
        # "written" counts every heartbeat of a committed batch, the ignored (unknown
        # amphora) and withheld (not refreshed) ones included.
        applied = grew.get("written", 0) - grew.get("ignored", 0) - grew.get("withheld", 0)
        for outcome, count in (("applied", applied), ("ignored", grew.get("ignored", 0)),
                               ("withheld", grew.get("withheld", 0)),
                               ("failed", grew.get("write_failed", 0))):
            if count > 0:
                i.heartbeats_written.labels(outcome).inc(count)


@metrics.safe
def failovers(failed_over: Collection[str], gone: Collection[str]) -> None:
    """Count the failovers one stale check started."""
    for amphora_id in failed_over:
        reason = INSTANCE_GONE if amphora_id in gone else HEARTBEAT_TIMEOUT
        metrics.instruments().failovers.labels(reason).inc()
