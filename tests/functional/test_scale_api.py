"""/v2/octavia/loadbalancers/{id}/scale and db/scale.py's compare-and-set, on the API
server's database (no worker: the tests settle the jobs the way tests/settle.py does)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.db import models as m
from amphorae.db import scale
from tests.functional.test_flavors import make_flavor, make_profile
from tests.settle import _engine

ACTIVE_ACTIVE = {"loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_min": 2,
                 "amphora_count_max": 4}


def active_active_lb(api) -> dict:
    flavor = make_flavor(api, make_profile(api, ACTIVE_ACTIVE)["id"])
    lb = api.create_lb(flavor_id=flavor["id"])
    api.settle(lb["id"])
    return lb


def url(lb_id: str) -> str:
    return f"/v2/octavia/loadbalancers/{lb_id}/scale"


def test_created_with_the_minimum_then_scaled_by_hand(api, server):
    lb = active_active_lb(api)
    status, body = api.get(url(lb["id"]))
    assert status == 200, body
    assert body["scale"] | {"updated_at": None} == {
        "desired": 2, "current": 0, "min": 2, "max": 4,
        "reason": "created with amphora_count_min", "updated_at": None}
    status, body = api.put(url(lb["id"]), {"scale": {"desired": 3}})
    assert status == 202, body
    assert body["scale"]["desired"] == 3 and "set through the API" in body["scale"]["reason"]
    assert api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")[1]["loadbalancer"][
        "provisioning_status"] == "PENDING_UPDATE"
    # Immutable until the reconcile is done.
    status, body = api.put(url(lb["id"]), {"scale": {"desired": 4}})
    assert status == 409 and "PENDING_UPDATE" in body["faultstring"]
    with Session(_engine(server.db_url)) as session:
        kinds = list(session.scalars(select(m.Event.message).where(
            m.Event.load_balancer_id == lb["id"], m.Event.kind == "SCALED")))
        jobs = session.scalars(select(m.Job).where(m.Job.load_balancer_id == lb["id"]))
        assert len(list(jobs)) == 1
    assert len(kinds) == 1 and "2 -> 3 amphorae: set through the API" in kinds[0]
    api.settle(lb["id"])


def test_bad_counts_and_topologies_are_400s_naming_desired(api):
    lb = active_active_lb(api)
    for desired in (1, 5, "3", None):
        status, body = api.put(url(lb["id"]), {"scale": {"desired": desired}})
        assert status == 400, (desired, body)
        assert "desired" in body["faultstring"]
    status, body = api.put(url(lb["id"]), {"scale": {"wanted": 3}})
    assert status == 400 and "desired" in body["faultstring"]  # missing
    single = api.create_lb()
    api.settle(single["id"])
    for method, payload in (("GET", None), ("PUT", {"scale": {"desired": 2}})):
        status, body = api.call(method, url(single["id"]), payload)
        assert status == 400 and "desired" in body["faultstring"], body
        assert "SINGLE" in body["faultstring"]
    assert api.get(url("00000000-0000-0000-0000-00000000beef"))[0] == 404


def test_compare_and_set_refuses_a_stale_count(api, server):
    lb = active_active_lb(api)
    with Session(_engine(server.db_url)) as session, session.begin():
        row = session.get_one(m.LoadBalancer, lb["id"])
        assert scale.request_scale(session, row, 3, "too hot", expected=2)
    api.settle(lb["id"])
    with Session(_engine(server.db_url)) as session, session.begin():
        row = session.get_one(m.LoadBalancer, lb["id"])
        # Decided on 2, but the count is 3 by now: nothing is written.
        assert not scale.request_scale(session, row, 4, "too hot", expected=2)
        assert row.provisioning_status == "ACTIVE"
        assert scale.desired(session, row) == 3
