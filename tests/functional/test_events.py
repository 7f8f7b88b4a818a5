"""GET /v2/octavia/events on a real API and database: the contract the dashboard reads,
filters, newest first, the limit, and project scoping through the policy."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy.orm import Session

from amphorae.db import events
from tests import servers
from tests.settle import _engine

EVENTS = "/v2/octavia/events"
KEYS = {"id", "created_at", "kind", "level", "resource_type", "resource_id",
        "load_balancer_id", "project_id", "message"}


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api("sqlite", tmp_path_factory.mktemp("api-events"),
                             f"events{worker}",
                             "[api_settings]\nauth_strategy = testing\n"
                             "pagination_max_limit = 5\n") as srv:
        yield srv


def as_role(server: servers.Server, project_id: str, *roles: str) -> servers.Client:
    client = servers.Client(server, project=project_id)
    client.http.headers["X-Roles"] = ",".join(roles)
    return client


def add(server: servers.Server, project: str, count: int = 1, **fields: str) -> str:
    """``count`` events of a new load balancer id of ``project``; returns that id."""
    lb_id = str(uuid.uuid4())
    with Session(_engine(server.db_url)) as session, session.begin():
        for i in range(count):
            events.record(session, fields.get("kind", events.MEMBER_STATUS),
                          f"event {i} of {lb_id}", level=fields.get("level", "INFO"),
                          resource_type="member", resource_id=str(uuid.uuid4()),
                          load_balancer_id=lb_id, project_id=project)
    return lb_id


def test_a_member_reads_its_projects_events_newest_first(secure_server):
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    lb = add(secure_server, mine, 3)
    other_lb = add(secure_server, theirs, 2)
    member = as_role(secure_server, mine, "member")
    status, body = member.get(EVENTS)
    assert status == 200 and set(body) == {"events"}
    assert [e["message"] for e in body["events"]] == [f"event {i} of {lb}" for i in (2, 1, 0)]
    first = body["events"][0]
    assert set(first) == KEYS
    assert (first["kind"], first["level"], first["resource_type"], first["load_balancer_id"],
            first["project_id"]) == ("MEMBER_STATUS", "INFO", "member", lb, mine)
    assert isinstance(first["id"], int)
    assert len(first["created_at"]) == 19 and first["created_at"][10] == "T"
    # Another project's events are not listed, and cannot be asked for.
    assert member.get(EVENTS, load_balancer_id=other_lb) == (200, {"events": []})
    assert member.get(EVENTS, project_id=theirs)[0] == 403
    # An admin sees every project's.
    admin = as_role(secure_server, uuid.uuid4().hex, "admin")
    seen = {e["load_balancer_id"] for e in admin.get(EVENTS, limit=5)[1]["events"]}
    assert {lb, other_lb} <= seen
    # No role on the project: nothing.
    assert as_role(secure_server, mine).get(EVENTS)[0] == 403


def test_filters_and_limit(secure_server):
    project = uuid.uuid4().hex
    lb = add(secure_server, project, 2, kind=events.FAILOVER, level="WARNING")
    add(secure_server, project, 1, kind=events.MEMBER_STATUS, level="ERROR")
    reader = as_role(secure_server, project, "reader")

    def kinds(**params: str) -> list[tuple[str, str]]:
        status, body = reader.get(EVENTS, **params)
        assert status == 200, body
        return [(e["kind"], e["level"]) for e in body["events"]]

    assert kinds(kind="FAILOVER") == [("FAILOVER", "WARNING")] * 2
    assert kinds(level="ERROR") == [("MEMBER_STATUS", "ERROR")]
    assert kinds(load_balancer_id=lb, limit="1") == [("FAILOVER", "WARNING")]
    assert len(kinds()) == 3
    add(secure_server, project, 4)
    assert len(kinds(limit="100")) == 5  # pagination_max_limit caps it


@pytest.mark.parametrize(("params", "field"), [
    ({"level": "LOUD"}, "level"), ({"kind": "NOPE"}, "kind"), ({"limit": "many"}, None),
    ({"colour": "red"}, None)])
def test_bad_filters_are_400s(secure_server, params, field):
    status, body = as_role(secure_server, uuid.uuid4().hex, "admin").get(EVENTS, **params)
    assert status == 400, body
    if field:
        assert f"field/attribute {field}" in body["faultstring"]


def test_a_failover_asked_through_the_api_is_an_event_with_its_request(secure_server):
    project = uuid.uuid4().hex
    owner = as_role(secure_server, project, "member")
    lb = owner.create_lb(name="web")
    admin = as_role(secure_server, uuid.uuid4().hex, "admin")
    resp = admin.http.put(f"{secure_server.url}/v2/lbaas/loadbalancers/{lb['id']}/failover",
                          timeout=10)
    assert resp.status_code == 202
    request_id = resp.headers["x-openstack-request-id"]
    status, body = owner.get(EVENTS, kind="FAILOVER", load_balancer_id=lb["id"])
    assert status == 200
    assert [(e["level"], e["resource_type"], e["resource_id"], e["project_id"], e["message"])
            for e in body["events"]] == [
        ("INFO", "loadbalancer", lb["id"], project,
         f"load balancer web ({lb['id']}) is failed over: requested through the API "
         f"({request_id})")]
