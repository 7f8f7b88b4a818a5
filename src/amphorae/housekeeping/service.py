"""The housekeeping service: runs the sweeps every ``[house_keeping] cleanup_interval``."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy import select

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.common.timeutil import utcnow
from amphorae.db import engine, outage
from amphorae.db import models as m
from amphorae.drivers.compute.base import ComputeDriver
from amphorae.drivers.network.base import NetworkDriver
from amphorae.housekeeping import sweeps

LOG = logging.getLogger(__name__)


class Housekeeper:
    """Without drivers (``compute``, ``network``) there are no orphans to look for."""

    def __init__(self, compute: ComputeDriver | None = None,
                 network: NetworkDriver | None = None, url: str | None = None) -> None:
        self.compute = compute
        self.network = network
        self.url = url
        self.stopping = threading.Event()

    def run_once(self) -> None:
        with engine.transaction(url=self.url) as session:
            sweeps.requeue_stuck(session)
        self.remove_orphans()
        self.remove_network_orphans()
        with engine.transaction(url=self.url) as session:
            lbs, amps = sweeps.purge(session, utcnow())
            purged_events = sweeps.purge_events(session, utcnow())
        if lbs or amps:
            LOG.info("purged %d deleted load balancers and %d amphorae", lbs, amps)
        if purged_events:
            LOG.info("purged %d events older than %d s", purged_events,
                     config.CONF.house_keeping.event_expiry_age)

    def remove_orphans(self) -> list[str]:
        """Amphora instances of this deployment that no live row claims."""
        if self.compute is None or self.network is None:
            return []
        found = self.compute.list_instances()
        with engine.transaction(write=False, url=self.url) as session:
            live = set(session.scalars(
                select(m.Amphora.id).where(m.Amphora.status != c.DELETED)))
        # Listed again after reading the rows: one the worker was removing meanwhile
        # (listed, then its row DELETED) is gone now and not reported as an orphan.
        still = {i.amphora_id for i in self.compute.list_instances()}
        removed = []
        for instance in found:
            if instance.amphora_id in live or instance.amphora_id not in still:
                continue
            LOG.warning("amphora %s (%s) has no live row: removing it", instance.amphora_id,
                        instance.compute_id)
            self.network.unplug(instance.amphora_id, instance.compute_id)
            self.compute.delete(instance.amphora_id)
            removed.append(instance.amphora_id)
        return removed

    def remove_network_orphans(self, now: dt.datetime | None = None) -> list[str]:
        """The network driver's objects of this deployment whose load balancer or
        amphora has no live row (sweeps.network_orphans); ``now``: the clock their age
        is measured against (naive UTC; a test moves it)."""
        if self.network is None:
            return []
        found = self.network.owned_resources()
        if not found:
            return []
        with engine.transaction(write=False, url=self.url) as session:
            orphans = sweeps.network_orphans(session, found, now or utcnow())
        # Ports before groups: Neutron refuses to delete a group a port still uses.
        orphans.sort(key=lambda r: r.kind == "security_group")
        removed = []
        for resource in orphans:
            LOG.warning("%s %s (%s) has no live load balancer or amphora: removing it",
                        resource.kind, resource.id, resource.name)
            try:
                self.network.remove_resource(resource)
            except Exception:  # one refusal (a group still in use) stops no other
                LOG.exception("removing %s %s failed; the next sweep tries again",
                              resource.kind, resource.id)
                continue
            removed.append(resource.id)
        return removed

    def run(self, interval: float | None = None) -> None:
        interval = interval or config.CONF.house_keeping.cleanup_interval
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the next round tries again (and reconnects)
                outage.log_failure(LOG, "housekeeping sweep failed", exc)
            self.stopping.wait(interval)

    def stop(self) -> None:
        self.stopping.set()
