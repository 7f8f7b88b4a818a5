"""No failover for heartbeats the health manager could not write.

While the health manager's own transactions fail (the database is restarting, out of
reach), the heartbeats it receives are lost and every amphora's ``last_update`` ages.
Judged by those timestamps, every amphora would look stale the moment the database comes
back. So amphorae are not judged by their heartbeats while writes fail, and once a write
succeeds again every amphora gets a fresh grace period of ``heartbeat_timeout`` from that
moment, as at the health manager's start: one that is still silent afterwards is failed
over as usual. Amphorae whose compute instance is gone are failed over meanwhile too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)


class Grace:
    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._failing = False
        self._until = 0.0  # clock() before which no amphora is judged by its heartbeats
        self._lock = threading.Lock()  # the writer and the stale check both report

    def failed(self) -> None:
        """A transaction of the health manager failed."""
        with self._lock:
            if not self._failing:
                LOG.warning("health manager writes failing: no amphora is judged by its "
                            "heartbeats until they succeed again and %g s have passed",
                            self.timeout)
            self._failing = True

    def succeeded(self) -> None:
        """A transaction of the health manager committed."""
        with self._lock:
            if not self._failing:
                return
            self._failing = False
            self._until = self.clock() + self.timeout
        LOG.warning("health manager writes succeed again: amphorae get %g s to report "
                    "before any is failed over for silence", self.timeout)

    def judging(self) -> bool:
        """Whether silent amphorae may be failed over now."""
        with self._lock:
            return not self._failing and self.clock() >= self._until
