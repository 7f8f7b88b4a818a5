"""Drift repair: the periodic resync of a level-triggered controller.

A reconcile brings the data plane to the database's state, but nothing watches it
afterwards: someone restarts HAProxy with an old file, an agent loses its UDP document. Every
``[controller_worker] drift_check_interval`` seconds the worker asks each ACTIVE load
balancer's amphorae (read-only: what their running configs' ETags say against what a
reconcile would render; an ACTIVE_ACTIVE one's distributor too: its nexthops and VIPs
against the serving amphorae) and enqueues a reconcile for any that drifted. Objects in ERROR are
left out of the comparison, as a reconcile left them out of the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.common import constants as c
from amphorae.db import engine, jobs, tree
from amphorae.db import models as m
from amphorae.drivers.network import base as net
from amphorae.drivers.registry import Drivers
from amphorae.worker import certificates, desired, reconciler

LOG = logging.getLogger(__name__)


def drifted_load_balancers(drivers: Drivers, url: str | None = None) -> list[str]:
    """Check every ACTIVE load balancer without pending work; enqueue a reconcile for
    those whose amphorae run something else. Returns their ids."""
    with engine.transaction(write=False, url=url) as session:
        busy = select(m.Job.load_balancer_id).where(m.Job.load_balancer_id.is_not(None))
        lb_ids = list(session.scalars(select(m.LoadBalancer.id).where(
            m.LoadBalancer.provisioning_status == c.ACTIVE,
            m.LoadBalancer.id.not_in(busy))))
    found = []
    for lb_id in lb_ids:
        try:
            what = _check(drivers, url, lb_id)
        except Exception as exc:  # an agent away is the health manager's business
            LOG.debug("drift check of load balancer %s skipped: %s", lb_id, exc)
            continue
        if what:
            LOG.warning("load balancer %s drifted (%s): reconciling it", lb_id,
                        ", ".join(what))
            with engine.transaction(url=url) as session:
                jobs.enqueue(session, lb_id)
            found.append(lb_id)
    return found


def _check(drivers: Drivers, url: str | None, lb_id: str) -> list[str]:
    """What any amphora of ``lb_id`` runs differently, as ``amphora-id: kind`` lines."""
    with engine.transaction(write=False, url=url) as session:
        lb = session.get(m.LoadBalancer, lb_id)
        if lb is None or lb.provisioning_status != c.ACTIVE:
            return []
        pair = lb.topology == c.TOPOLOGY_ACTIVE_STANDBY
        amps = list(session.scalars(select(m.Amphora).where(
            m.Amphora.load_balancer_id == lb_id, m.Amphora.status.in_(c.AMPHORA_SERVING))))
        tls = certificates.collect(session, lb_id, drivers.cert_manager)
        left_out = set(tls.failed) | set(_in_error(session, lb_id))
        model = desired.load_balancer_model(session, lb_id, exclude=left_out)
        group = session.get(m.VRRPGroup, lb_id)
        vip = session.get(m.Vip, lb_id)
    if model is None or vip is None or not amps:
        return []
    spread = [] if lb.topology != c.TOPOLOGY_ACTIVE_ACTIVE else drivers.network.distributor_drift(
        net.Distribution(load_balancer_id=lb_id, subnet_id=vip.subnet_id or "",
                         vips=model.vips, serving=tuple(amp.id for amp in amps)))
    if pair and group is None:
        return ["the pair has no VRRP group"]
    vrrp = reconciler.vrrp_group(group) if pair and group is not None else None
    vip_subnet = reconciler.vip_subnet(drivers.network, vip.subnet_id)
    if vip_subnet is None:
        return []
    return spread + [f"{amp.id}: {kind}" for amp in amps for kind in drivers.amphora.drifted(
        reconciler.amphora_ref(amp), model, tls, vrrp, vip_subnet)]


def _in_error(session: Session, lb_id: str) -> Iterable[str]:
    for kind in tree.KINDS:
        yield from session.scalars(select(kind.id).where(
            kind.id.in_(tree.ids_under(kind, [lb_id])), kind.provisioning_status == c.ERROR))
