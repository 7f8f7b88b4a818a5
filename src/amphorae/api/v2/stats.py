"""Listener statistics as the API serves them, for a listener or a load balancer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.db import models as m

STATS_FIELDS = ("bytes_in", "bytes_out", "active_connections", "total_connections",
                "request_errors")


def listener_stats(session: Session, listener_ids: Any) -> dict[str, int]:
    """Counters summed over amphorae; active connections only from live amphorae."""
    s = m.ListenerStatistics
    live = select(m.Amphora.id).where(m.Amphora.status == c.ALLOCATED).scalar_subquery()
    row = session.execute(
        select(func.coalesce(func.sum(s.bytes_in), 0), func.coalesce(func.sum(s.bytes_out), 0),
               func.coalesce(func.sum(s.total_connections), 0),
               func.coalesce(func.sum(s.request_errors), 0))
        .where(s.listener_id.in_(listener_ids))).one()
    active = session.scalar(
        select(func.coalesce(func.sum(s.active_connections), 0))
        .where(s.listener_id.in_(listener_ids),
               (s.amphora_id.in_(live)) | (s.amphora_id == s.listener_id))) or 0
    return {"bytes_in": int(row[0]), "bytes_out": int(row[1]),
            "active_connections": int(active), "total_connections": int(row[2]),
            "request_errors": int(row[3])}
