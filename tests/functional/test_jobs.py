"""Every mutating call enqueues its job in the same transaction as its objects."""

from __future__ import annotations

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from amphorae.db import models as m
from tests.servers import PUBLIC_SUBNET


def _count(db_url: str, stmt) -> int:  # type: ignore[no-untyped-def]
    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            return int(session.scalar(stmt) or 0)
    finally:
        engine.dispose()


def _jobs(db_url: str, lb_id: str) -> list[tuple[str, str]]:
    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            return [(j.action, j.load_balancer_id) for j in session.scalars(
                select(m.Job).where(m.Job.load_balancer_id == lb_id))]
    finally:
        engine.dispose()


def test_create_update_delete_each_enqueue_a_job(api):
    db_url = api.server.db_url
    _, body = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "vip_subnet_id": PUBLIC_SUBNET}})
    lb_id = body["loadbalancer"]["id"]
    assert _jobs(db_url, lb_id) == [("reconcile", lb_id)]
    api.settle(lb_id)  # consumes the job, as the worker will
    assert _jobs(db_url, lb_id) == []
    assert api.put(f"/v2/lbaas/loadbalancers/{lb_id}", {"loadbalancer": {"name": "n"}})[0] == 200
    assert _jobs(db_url, lb_id) == [("reconcile", lb_id)]
    api.settle(lb_id)
    assert api.delete(f"/v2/lbaas/loadbalancers/{lb_id}")[0] == 204
    assert _jobs(db_url, lb_id) == [("reconcile", lb_id)]


def test_refused_create_rolls_back_objects_job_and_address(api):
    """The quota check runs after the load balancer, its VIP address and its job were
    written in the transaction: a refusal leaves none of them behind."""
    db_url = api.server.db_url
    project = "quota-rollback-" + api.server.backend
    engine = create_engine(db_url)
    with Session(engine) as session, session.begin():
        session.merge(m.Quota(project_id=project, load_balancer=1))
    engine.dispose()
    headers = {"X-Project-Id": project}
    body = {"loadbalancer": {"vip_subnet_id": PUBLIC_SUBNET}}
    status, _ = api.call("POST", "/v2/lbaas/loadbalancers", body, headers=headers)
    assert status == 201
    before = (_count(db_url, select(func.count()).select_from(m.Job)),
              _count(db_url, select(func.count()).select_from(m.IPAllocation)),
              _count(db_url, select(func.count()).select_from(m.LoadBalancer)))
    status, err = api.call("POST", "/v2/lbaas/loadbalancers", body, headers=headers)
    assert status == 403
    assert err["faultstring"] == "Quota has been met for resources: Load Balancer"
    after = (_count(db_url, select(func.count()).select_from(m.Job)),
             _count(db_url, select(func.count()).select_from(m.IPAllocation)),
             _count(db_url, select(func.count()).select_from(m.LoadBalancer)))
    assert after == before
