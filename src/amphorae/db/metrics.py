"""The database's side of the metrics: the job queue, load balancers and amphorae by
status, the oldest heartbeat, read at scrape time (a few GROUP BY queries in one read
transaction), so they are right whichever process or host changed them. A scrape while
the database is away still answers, with ``amphorae_database_up 0`` and none of these
gauges."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select

from amphorae.common import constants as c
from amphorae.common.timeutil import utcnow
from amphorae.db import engine, jobs
from amphorae.db import models as m

LOG = logging.getLogger(__name__)


class DatabaseCollector:
    """A prometheus_client collector (it only needs ``collect``)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("amphorae_database_up",
                               "1 when the database answered this scrape's queries.")
        try:
            figures = self.read()
        except Exception as exc:  # the scrape still answers: the outage is a figure too
            LOG.warning("metrics: reading the database failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        lbs = GaugeMetricFamily(
            "amphorae_load_balancers", "Load balancers, by provisioning and operating status.",
            labels=["provisioning_status", "operating_status"])
        for prov, oper, count in figures["load_balancers"]:
            lbs.add_metric([prov, oper], count)
        yield lbs
        amps = GaugeMetricFamily("amphorae_amphorae", "Amphorae, by status and role.",
                                 labels=["status", "role"])
        for status, role, count in figures["amphorae"]:
            amps.add_metric([status, role or "none"], count)
        yield amps
        depth = GaugeMetricFamily(
            "amphorae_jobs", "Jobs in the queue: ready to be claimed, leased by a worker, "
            "or delayed (a retry waiting for its time).", labels=["state"])
        oldest = GaugeMetricFamily(
            "amphorae_jobs_oldest_age_seconds",
            "Age of the oldest job in each state (0: none).", labels=["state"])
        now = figures["now"]
        for state, (count, first) in figures["jobs"].items():
            depth.add_metric([state], count)
            oldest.add_metric([state], (now - first).total_seconds() if first else 0.0)
        yield depth
        yield oldest
        last = figures["oldest_heartbeat"]
        yield GaugeMetricFamily(
            "amphorae_heartbeat_oldest_age_seconds",
            "Seconds since the least recent heartbeat of a serving amphora (0: none has "
            "reported yet); past heartbeat_timeout, a failover is due.",
            value=(now - last).total_seconds() if last else 0.0)

    def read(self) -> dict[str, Any]:
        now = utcnow()
        with engine.transaction(write=False, url=self.url) as session:
            lbs = session.execute(
                select(m.LoadBalancer.provisioning_status, m.LoadBalancer.operating_status,
                       func.count())
                .group_by(m.LoadBalancer.provisioning_status,
                          m.LoadBalancer.operating_status)).all()
            amps = session.execute(
                select(m.Amphora.status, m.Amphora.role, func.count())
                .group_by(m.Amphora.status, m.Amphora.role)).all()
            oldest_heartbeat = session.scalar(
                select(func.min(m.AmphoraHealth.last_update))
                .join(m.Amphora, m.Amphora.id == m.AmphoraHealth.amphora_id)
                .where(m.Amphora.status.in_(c.AMPHORA_SERVING)))
            census = jobs.census(session, now)
        return {"now": now, "load_balancers": lbs, "amphorae": amps,
                "oldest_heartbeat": oldest_heartbeat, "jobs": census}
