"""The housekeeping service: runs the sweeps every ``[house_keeping] cleanup_interval``."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.db import engine
from amphorae.db import models as m
from amphorae.drivers.compute import netns
from amphorae.drivers.network import ports
from amphorae.housekeeping import sweeps
from amphorae.worker.queue import utcnow

LOG = logging.getLogger(__name__)


class Housekeeper:
    """``host`` is this host's netns driver (None when amphorae are not namespaces
    here: nothing to look for)."""

    def __init__(self, host: netns.NetnsComputeDriver | None = None,
                 url: str | None = None) -> None:
        self.host = host
        self.url = url
        self.stopping = threading.Event()

    def run_once(self) -> None:
        with engine.transaction(url=self.url) as session:
            sweeps.requeue_stuck(session)
        self.remove_orphans()
        with engine.transaction(url=self.url) as session:
            lbs, amps = sweeps.purge(session, utcnow())
        if lbs or amps:
            LOG.info("purged %d deleted load balancers and %d amphorae", lbs, amps)

    def remove_orphans(self) -> list[str]:
        if self.host is None:
            return []
        found = self.host.list_amphorae()
        with engine.transaction(write=False, url=self.url) as session:
            live = {netns.short_id(i) for i in session.scalars(
                select(m.Amphora.id).where(m.Amphora.status != c.DELETED))}
        removed = []
        plugger = ports.PortPlugger(self.host.plumbing)
        # Listed again after reading the rows: one the worker was removing meanwhile
        # (listed, then its row DELETED) is gone now and not reported as an orphan.
        still = {amp.short_id for amp in self.host.list_amphorae()}
        found = [amp for amp in found if amp.short_id in still]
        for amp in found:
            # Only amphorae whose state file (in this driver's directory) names this
            # deployment are ours: other deployments on the host (or test runs) keep
            # theirs elsewhere, and list_amphorae gives theirs no id.
            if amp.amphora_id is None or amp.short_id in live:
                continue
            LOG.warning("amphora %s (%s) on this host has no live row: removing it",
                        amp.amphora_id or amp.short_id, amp.namespace)
            plugger.unplug_all(amp.namespace)
            self.host.delete(amp.short_id)
            removed.append(amp.short_id)
        return removed

    def run(self, interval: float | None = None) -> None:
        interval = interval or config.CONF.house_keeping.cleanup_interval
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception:
                LOG.exception("housekeeping sweep failed")
            self.stopping.wait(interval)

    def stop(self) -> None:
        self.stopping.set()
