"""/v2/octavia/amphorae (admin only): list and show amphorae, delete a failed one, fail
one over, push a fresh agent configuration, and read its per-listener statistics."""

from __future__ import annotations

from typing import Any

import falcon
from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.api import listing, policy
from amphorae.api.v2 import common
from amphorae.common import constants as c
from amphorae.common import errors
from amphorae.db import engine as db
from amphorae.db import events
from amphorae.db import models as m

RESOURCE = "amphora"
NAME = "Amphora"
A = m.Amphora

PLAIN_FIELDS = ("id", "compute_id", "lb_network_ip", "vrrp_ip", "ha_ip", "vrrp_port_id",
                "ha_port_id", "cert_busy", "role", "status", "vrrp_interface", "vrrp_id",
                "vrrp_priority", "cached_zone", "image_id", "compute_flavor")
DATE_FIELDS = ("cert_expiration", "created_at", "updated_at")

COLLECTION = listing.Collection(
    model=A, key="amphorae", links_key="amphorae_links",
    columns={
        **{name: getattr(A, name) for name in PLAIN_FIELDS + DATE_FIELDS},
        "loadbalancer_id": A.load_balancer_id,
        # An amphora's project is its load balancer's.
        "project_id": m.LoadBalancer.project_id,
    },
    joins={"project_id": A.load_balancer},
    taggable=False,
)


def view(amp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": amp.id, "loadbalancer_id": amp.load_balancer_id}
    for name in PLAIN_FIELDS[1:]:
        out[name] = getattr(amp, name)
    for name in DATE_FIELDS:
        out[name] = common.iso(getattr(amp, name))
    return out


def _authorize(req: falcon.Request, action: str, project_id: str | None = None) -> None:
    policy.authorize(common.context(req), RESOURCE, action, project_id)


def _load(session: Session, amp_id: str, lock: bool = False) -> m.Amphora:
    stmt = select(A).where(A.id == amp_id)
    if lock:
        stmt = stmt.with_for_update()
    amp = session.scalars(stmt).first()
    if amp is None or amp.status == c.DELETED:
        raise errors.NotFound(resource=NAME, id=amp_id)
    return amp


def _lb_project(session: Session, amp: m.Amphora) -> str | None:
    if amp.load_balancer_id is None:
        return None
    return session.scalar(select(m.LoadBalancer.project_id)
                          .where(m.LoadBalancer.id == amp.load_balancer_id))


class Amphorae:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _authorize(req, "get_all")
        common.serve_list(req, resp, COLLECTION, view, select(A).where(A.status != c.DELETED))


class Amphora:
    def on_get(self, req: falcon.Request, resp: falcon.Response, amp_id: str) -> None:
        _authorize(req, "get_one")
        common.serve_one(req, resp, RESOURCE, _load, amp_id, view)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, amp_id: str) -> None:
        _authorize(req, "delete")
        with db.transaction() as session:
            amp = _load(session, amp_id, lock=True)
            # Only a failed amphora may be removed by hand; live ones go by failover.
            if amp.status != c.ERROR:
                raise errors.ImmutableObject(resource="amphora", id=amp_id)
            amp.status = c.PENDING_DELETE
            common.enqueue(session, amp.load_balancer_id, c.JOB_DELETE_AMPHORA,
                           amphora_id=amp.id)
        resp.status = 204


def _queue_job(req: falcon.Request, amp_id: str, action: str, job: str,
               lock_load_balancer: bool) -> m.Amphora:
    """Authorize ``action`` on the amphora (its load balancer's project) and queue ``job``;
    returns the amphora."""
    with db.transaction() as session:
        amp = _load(session, amp_id)
        _authorize(req, action, _lb_project(session, amp))
        if lock_load_balancer and amp.load_balancer_id is not None:
            # Unlike a load balancer failover, ERROR is not accepted here.
            common.lock_load_balancer(session, amp.load_balancer_id)
        common.enqueue(session, amp.load_balancer_id, job, amphora_id=amp.id)
    return amp


class Failover:
    def on_put(self, req: falcon.Request, resp: falcon.Response, amp_id: str) -> None:
        with db.transaction() as session:  # the event commits with the job
            amp = _queue_job(req, amp_id, "put_failover", c.JOB_FAILOVER_AMPHORA,
                             lock_load_balancer=True)
            owner = events.of_load_balancer(session, amp.load_balancer_id)
            events.record(session, events.FAILOVER,
                          f"amphora {amp.id}{owner} is failed over: requested through the "
                          f"API ({req.context.request_id})", resource_type="amphora",
                          resource_id=amp.id, load_balancer_id=amp.load_balancer_id)
        resp.status = 202


class Config:
    def on_put(self, req: falcon.Request, resp: falcon.Response, amp_id: str) -> None:
        _queue_job(req, amp_id, "put_config", c.JOB_AMPHORA_CONFIG, lock_load_balancer=False)
        resp.status = 202


STATS_FIELDS = ("active_connections", "bytes_in", "bytes_out", "request_errors",
                "total_connections")


class Stats:
    def on_get(self, req: falcon.Request, resp: falcon.Response, amp_id: str) -> None:
        _authorize(req, "get_stats")
        s = m.ListenerStatistics
        with db.session() as session:
            rows = session.execute(
                select(s, A.load_balancer_id).join(A, A.id == s.amphora_id)
                .where(s.amphora_id == amp_id).order_by(s.listener_id)).all()
        if not rows:
            raise errors.NotFound(resource="Amphora stats for", id=amp_id)
        resp.media = {"amphora_stats": [
            {"id": stat.amphora_id, "loadbalancer_id": lb_id, "listener_id": stat.listener_id,
             **{name: getattr(stat, name) for name in STATS_FIELDS}}
            for stat, lb_id in rows]}


ROUTES = [
    ("/amphorae", Amphorae()),
    ("/amphorae/{amp_id}", Amphora()),
    ("/amphorae/{amp_id}/failover", Failover()),
    ("/amphorae/{amp_id}/config", Config()),
    ("/amphorae/{amp_id}/stats", Stats()),
]
