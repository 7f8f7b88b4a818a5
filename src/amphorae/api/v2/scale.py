"""/v2/octavia/loadbalancers/{id}/scale (admin only): how many amphorae an ACTIVE_ACTIVE
load balancer runs, and a way to set it by hand within its flavor's bounds. The change
goes through db/scale.py, as the autoscaler's do."""

from __future__ import annotations

from typing import Any

import falcon
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from amphorae.api import body, policy
from amphorae.api import types as t
from amphorae.api.v2 import common
from amphorae.common import constants as c
from amphorae.common import errors
from amphorae.db import engine as db
from amphorae.db import models as m
from amphorae.db import scale

RESOURCE = "loadbalancer-scale"
KEY = "scale"


class Update(t.Schema):
    desired: t.StrictInt


def view(session: Session, lb: m.LoadBalancer) -> dict[str, Any]:
    low, high = scale.bounds(session, lb)
    row = session.get(m.LoadBalancerScale, lb.id)
    current = session.scalar(select(func.count()).select_from(m.Amphora).where(
        m.Amphora.load_balancer_id == lb.id, m.Amphora.status.in_(c.AMPHORA_SERVING)))
    return {"desired": row.desired if row is not None else low, "current": current,
            "min": low, "max": high, "reason": row.reason if row is not None else None,
            "updated_at": common.iso(row.updated_at if row is not None else None)}


def _load(session: Session, req: falcon.Request, lb_id: str, action: str) -> m.LoadBalancer:
    policy.authorize(common.context(req), RESOURCE, action, common.lb_project(session, lb_id))
    lb = common.get_or_404(session, m.LoadBalancer, lb_id, common.LB_NAME)
    if lb.topology != c.TOPOLOGY_ACTIVE_ACTIVE:
        raise errors.ValidationError(
            detail=f"desired: load balancer {lb_id} has topology {lb.topology}; only "
                   f"{c.TOPOLOGY_ACTIVE_ACTIVE} load balancers scale.")
    return lb


class Scale:
    def on_get(self, req: falcon.Request, resp: falcon.Response, lb_id: str) -> None:
        with db.session() as session:
            lb = _load(session, req, lb_id, "get_one")
            common.send(resp, {KEY: view(session, lb)})

    def on_put(self, req: falcon.Request, resp: falcon.Response, lb_id: str) -> None:
        data = body.parse(req, KEY, Update)
        with db.transaction() as session:
            lb = _load(session, req, lb_id, "put")
            low, high = scale.bounds(session, lb)
            if not low <= data.desired <= high:
                raise errors.InvalidInput(
                    field="desired", value=data.desired,
                    reason=f"Must be between amphora_count_min ({low}) and "
                           f"amphora_count_max ({high}) of the load balancer's flavor.")
            lb = common.lock_load_balancer(session, lb_id, for_child=False)
            lb.provisioning_status = c.ACTIVE  # request_scale moves it on, with its job
            who = common.context(req)
            if not scale.request_scale(session, lb, data.desired,
                                       f"set through the API by {who.user_id or 'admin'} "
                                       f"({req.context.request_id})"):
                raise errors.LBPendingState(state=lb.provisioning_status, id=lb_id)
            session.flush()
            out = view(session, lb)
        common.send(resp, {KEY: out}, 202)


ROUTES = [("/loadbalancers/{lb_id}/scale", Scale())]
