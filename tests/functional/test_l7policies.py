"""L7 policies through the HTTP API, openstacksdk and the openstack CLI."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from amphorae.db import models as m
from tests.functional.test_fuzz import _fuzz
from tests.servers import PROJECT, Client

P = "/v2/lbaas/l7policies"
POLICY_KEYS = {
    "id", "name", "description", "provisioning_status", "operating_status", "admin_state_up",
    "project_id", "tenant_id", "action", "listener_id", "redirect_pool_id", "redirect_url",
    "redirect_prefix", "position", "rules", "created_at", "updated_at", "tags",
    "redirect_http_code",
}


# --- helpers shared with test_l7rules -------------------------------------------------


_PORTS = itertools.count(8000)


def make_listener(api: Client, lb_id: str, protocol: str = "HTTP",
                  port: int | None = None) -> dict[str, Any]:
    status, body = api.post("/v2/lbaas/listeners", {"listener": {
        "loadbalancer_id": lb_id, "protocol": protocol,
        "protocol_port": port or next(_PORTS)}})
    assert status == 201, body
    api.settle(lb_id)
    return body["listener"]


def make_pool(api: Client, lb_id: str, protocol: str = "HTTP") -> dict[str, Any]:
    status, body = api.post("/v2/lbaas/pools", {"pool": {
        "loadbalancer_id": lb_id, "protocol": protocol, "lb_algorithm": "ROUND_ROBIN"}})
    assert status == 201, body
    api.settle(lb_id)
    return body["pool"]


def make_policy(api: Client, listener_id: str, lb_id: str, **fields: Any) -> dict[str, Any]:
    body = {"listener_id": listener_id, "action": "REJECT", **fields}
    status, out = api.post(P, {"l7policy": body})
    assert status == 201, out
    api.settle(lb_id)
    return out["l7policy"]


def setup_http(api: Client, **lb_fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    lb = api.create_lb(**lb_fields)
    return lb, make_listener(api, lb["id"])


def status_of(api: Client, path: str, key: str) -> str:
    status, body = api.get(path)
    assert status == 200, body
    return str(body[key]["provisioning_status"])


def positions(api: Client, listener_id: str) -> list[tuple[str, int]]:
    _, body = api.get(P, listener_id=listener_id, sort="position")
    return [(p["name"], p["position"]) for p in body["l7policies"]]


def fault(response: tuple[int, Any], status: int) -> str:
    code, body = response
    assert code == status, body
    # pecan's description where Octavia refuses while routing (a missing parent)
    return str(body["faultstring"] if "faultstring" in body else body["description"])


# --- create / show --------------------------------------------------------------------


def test_create_matches_octavia_shape_and_locks_parents(api):
    lb, listener = setup_http(api)
    status, body = api.post(P, {"l7policy": {
        "name": "sample-pol", "listener_id": listener["id"], "action": "REDIRECT_TO_URL",
        "redirect_url": "http://example.com/", "position": 1,
        "project_id": "someone-else"}})  # deprecated: the load balancer's project wins
    assert status == 201, body
    pol = body["l7policy"]
    assert set(pol) == POLICY_KEYS
    assert pol["provisioning_status"] == "PENDING_CREATE"
    assert pol["operating_status"] == "OFFLINE"
    assert pol["project_id"] == pol["tenant_id"] == PROJECT
    assert pol["description"] == "" and pol["rules"] == [] and pol["tags"] == []
    assert pol["redirect_http_code"] == 302 and pol["position"] == 1
    assert pol["redirect_pool_id"] is None and pol["redirect_prefix"] is None
    assert pol["updated_at"] is None and pol["admin_state_up"] is True
    assert status_of(api, f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer") == \
        "PENDING_UPDATE"
    assert status_of(api, f"/v2/lbaas/listeners/{listener['id']}", "listener") == \
        "PENDING_UPDATE"
    api.settle(lb["id"])
    status, shown = api.get(f"{P}/{pol['id']}")
    assert status == 200
    assert shown["l7policy"]["provisioning_status"] == "ACTIVE"
    assert shown["l7policy"]["operating_status"] == "ONLINE"
    _, listener_body = api.get(f"/v2/lbaas/listeners/{listener['id']}")
    assert {"id": pol["id"]} in listener_body["listener"]["l7policies"]
    # fields= on show, the .json suffix and the /v2.0 alias
    status, shown = api.get(f"/v2.0/lbaas/l7policies/{pol['id']}.json",
                            fields=["id", "action"])
    assert status == 200 and shown == {"l7policy": {"id": pol["id"],
                                                    "action": "REDIRECT_TO_URL"}}


def test_disabled_policy_is_offline_and_create_with_rules(api):
    lb, listener = setup_http(api)
    status, body = api.post(P, {"l7policy": {
        "listener_id": listener["id"], "action": "REJECT", "admin_state_up": False,
        "description": "d", "tags": ["b", "a"],
        "rules": [{"type": "PATH", "compare_type": "STARTS_WITH", "value": "/api"},
                  {"type": "HEADER", "compare_type": "EQUAL_TO", "key": "X-A", "value": "1"}]}})
    assert status == 201, body
    pol = body["l7policy"]
    assert len(pol["rules"]) == 2 and pol["tags"] == ["a", "b"]
    api.settle(lb["id"])
    _, shown = api.get(f"{P}/{pol['id']}")
    assert shown["l7policy"]["operating_status"] == "OFFLINE"
    _, rules = api.get(f"{P}/{pol['id']}/rules")
    assert {r["id"] for r in rules["rules"]} == {r["id"] for r in pol["rules"]}
    assert {r["provisioning_status"] for r in rules["rules"]} == {"ACTIVE"}
    # A nested rule is checked like a standalone one.
    assert "Invalid L7 Rule: L7 rule type requires a key" in fault(api.post(P, {"l7policy": {
        "listener_id": listener["id"], "action": "REJECT",
        "rules": [{"type": "COOKIE", "compare_type": "EQUAL_TO", "value": "v"}]}}), 400)
    assert "rules.0.type" in fault(api.post(P, {"l7policy": {
        "listener_id": listener["id"], "action": "REJECT",
        "rules": [{"type": "NOPE", "compare_type": "EQUAL_TO", "value": "v"}]}}), 400)


# --- argument sanitising --------------------------------------------------------------


def test_create_sanitises_redirect_arguments(api):
    lb, listener = setup_http(api)
    pool = make_pool(api, lb["id"])
    lid = listener["id"]

    def create(**fields: Any) -> dict[str, Any]:
        return make_policy(api, lid, lb["id"], **fields)

    pol = create(action="REDIRECT_TO_POOL", redirect_pool_id=pool["id"],
                 redirect_http_code=301)
    assert (pol["action"], pol["redirect_pool_id"], pol["redirect_http_code"]) == \
        ("REDIRECT_TO_POOL", pool["id"], None)
    pol = create(action="REJECT", redirect_pool_id=pool["id"], redirect_http_code=301)
    assert (pol["action"], pol["redirect_pool_id"], pol["redirect_url"],
            pol["redirect_prefix"], pol["redirect_http_code"]) == ("REJECT", None, None, None,
                                                                   None)
    pol = create(action="REJECT", redirect_url="http://a.example/")
    assert pol["action"] == "REJECT" and pol["redirect_url"] is None
    pol = create(action="REDIRECT_TO_URL", redirect_url="https://a.example:8443/x?y=1#f",
                 redirect_http_code=308)
    assert (pol["redirect_url"], pol["redirect_http_code"]) == \
        ("https://a.example:8443/x?y=1#f", 308)
    pol = create(action="REDIRECT_PREFIX", redirect_prefix="https://[2001:db8::1]/p")
    assert (pol["action"], pol["redirect_prefix"], pol["redirect_http_code"]) == \
        ("REDIRECT_PREFIX", "https://[2001:db8::1]/p", 302)
    # The URL wins over a prefix sent beside it, as in Octavia.
    pol = create(action="REDIRECT_TO_URL", redirect_url="http://u.example/",
                 redirect_prefix="http://p.example/")
    assert (pol["action"], pol["redirect_prefix"]) == ("REDIRECT_TO_URL", None)
    # A redirect pool forces the action.
    pol = create(action="REDIRECT_TO_POOL", redirect_pool_id=pool["id"], position=1)
    assert pol["action"] == "REDIRECT_TO_POOL"

    def bad(**fields: Any) -> str:
        return fault(api.post(P, {"l7policy": {"listener_id": lid, **fields}}), 400)

    assert bad(action="REDIRECT_TO_URL", redirect_pool_id=pool["id"]) == \
        "Invalid L7 Policy arguments: redirect_url must not be None"
    assert bad(action="REDIRECT_TO_POOL") == \
        "Invalid L7 Policy arguments: redirect_pool_id or redirect_pool must not be None"
    assert bad(action="REDIRECT_PREFIX", redirect_url="http://a.example/") == \
        "Invalid L7 Policy arguments: redirect_prefix must not be None"
    assert bad(action="REDIRECT_TO_POOL", redirect_pool_id=pool["id"],
               redirect_prefix="http://a.example/") == (
        "Invalid L7 Policy arguments: Cannot specify redirect_pool_id and redirect_url or "
        "redirect_prefix at the same time")
    assert bad(action="REDIRECT_PREFIX", redirect_pool_id=pool["id"],
               redirect_prefix="http://a.example/").startswith(
        "Invalid L7 Policy arguments: Cannot specify redirect_pool_id")
    # As in Octavia, an explicit REDIRECT_TO_POOL drops a URL sent beside the pool.
    pol = create(action="REDIRECT_TO_POOL", redirect_pool_id=pool["id"],
                 redirect_url="http://a.example/")
    assert (pol["action"], pol["redirect_url"]) == ("REDIRECT_TO_POOL", None)
    assert fault(api.put(f"{P}/{pol['id']}", {"l7policy": {
        "redirect_pool_id": pool["id"], "redirect_url": "http://a.example/"}}), 400) == (
        "Invalid L7 Policy arguments: Cannot specify redirect_pool_id and redirect_url or "
        "redirect_prefix at the same time")


def test_update_sanitises_and_validates_merged_policy(api):
    lb, listener = setup_http(api)
    pool = make_pool(api, lb["id"])
    pol = make_policy(api, listener["id"], lb["id"], action="REDIRECT_TO_URL",
                      redirect_url="http://a.example/", redirect_http_code=301)
    path = f"{P}/{pol['id']}"

    def put(expect: int = 200, **fields: Any) -> dict[str, Any]:
        status, body = api.put(path, {"l7policy": fields})
        assert status == expect, body
        if status == 200:
            api.settle(lb["id"])
        return body

    out = put(redirect_pool_id=pool["id"])["l7policy"]
    assert (out["action"], out["redirect_pool_id"], out["redirect_url"],
            out["redirect_http_code"], out["provisioning_status"]) == (
        "REDIRECT_TO_POOL", pool["id"], None, None, "PENDING_UPDATE")
    out = put(redirect_prefix="http://p.example/")["l7policy"]
    assert (out["action"], out["redirect_pool_id"], out["redirect_prefix"],
            out["redirect_http_code"]) == ("REDIRECT_PREFIX", None, "http://p.example/", 302)
    out = put(redirect_url="http://u.example/", redirect_http_code=307)["l7policy"]
    assert (out["action"], out["redirect_prefix"], out["redirect_http_code"]) == \
        ("REDIRECT_TO_URL", None, 307)
    # The CLI's `unset --redirect-http-code` sends null.
    assert put(redirect_http_code=None)["l7policy"]["redirect_http_code"] is None
    out = put(action="REJECT")["l7policy"]
    assert (out["action"], out["redirect_url"], out["redirect_http_code"]) == \
        ("REJECT", None, None)
    out = put(name="n", description="d", admin_state_up=False, tags=["t"])["l7policy"]
    assert (out["name"], out["description"], out["admin_state_up"], out["tags"]) == \
        ("n", "d", False, ["t"])
    out = put(name=None, description=None, admin_state_up=True)["l7policy"]
    assert (out["name"], out["description"], out["admin_state_up"]) == ("", "", True)

    assert fault(api.put(path, {"l7policy": {}}), 400) == \
        "Invalid L7 Policy arguments: Invalid update options"
    assert fault(api.put(path, {"l7policy": {"action": None}}), 400) == \
        "Invalid L7 Policy action specified: None"
    assert fault(api.put(path, {"l7policy": {"action": "REDIRECT_TO_URL"}}), 400) == \
        "Invalid L7 Policy arguments: redirect_url must not be None"
    put(redirect_url="http://u.example/")
    assert fault(api.put(path, {"l7policy": {"redirect_url": None}}), 400) == \
        "Invalid L7 Policy arguments: redirect_url must not be None"
    assert "listener_id" in fault(api.put(path, {"l7policy": {
        "listener_id": listener["id"]}}), 400)
    assert fault(api.put(path, {"l7policy": {"redirect_pool_id": str(uuid.uuid4())}}),
                 404).startswith("Pool ")
    # Failed updates change nothing.
    _, shown = api.get(path)
    assert shown["l7policy"]["provisioning_status"] == "ACTIVE"
    assert shown["l7policy"]["redirect_url"] == "http://u.example/"


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "named"), [
    ({"listener_id": None}, "listener_id"),
    ({"listener_id": "not-a-uuid"}, "listener_id"),
    ({"listener_id": 5}, "listener_id"),
    ({"action": None}, "action"),
    ({"action": "DROP"}, "action"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "ftp://a.example/"}, "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://"}, "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "a.example/x"}, "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://a b.example/"}, "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://a.example/x y"}, "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://a.example/\r\nX: y"},
     "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://a.example:8o/"}, "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://[::zz]/"}, "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://a.example/" + "x" * 250},
     "redirect_url"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": ["http://a.example/"]}, "redirect_url"),
    ({"action": "REDIRECT_PREFIX", "redirect_prefix": "mailto:x@a.example"},
     "redirect_prefix"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://a.example/",
      "redirect_http_code": 305}, "redirect_http_code"),
    ({"action": "REDIRECT_TO_URL", "redirect_url": "http://a.example/",
      "redirect_http_code": "302"}, "redirect_http_code"),
    ({"action": "REDIRECT_TO_POOL", "redirect_pool_id": "pool-1"}, "redirect_pool_id"),
    ({"position": 0}, "position"),
    ({"position": 2147483648}, "position"),
    ({"position": "1"}, "position"),
    ({"position": True}, "position"),
    ({"position": 1.5}, "position"),
    ({"name": "n" * 256}, "name"),
    ({"description": 7}, "description"),
    ({"admin_state_up": "yes"}, "admin_state_up"),
    ({"tags": "a"}, "tags"),
    ({"tags": ["t" * 256]}, "tags"),
    ({"rules": {"type": "PATH"}}, "rules"),
    ({"redirect_pool": {"name": "p"}}, "redirect_pool"),
    ({"bogus": 1}, "bogus"),
])
def test_create_rejects_bad_input(api, fields, named):
    # The listener is never looked up: the body is refused first. None drops a field.
    body = {"listener_id": str(uuid.uuid4()), "action": "REJECT", **fields}
    body = {k: v for k, v in body.items() if v is not None}
    status, out = api.post(P, {"l7policy": body})
    assert status == 400, out
    assert named in out["faultstring"]
    assert out["faultcode"] == "Client"


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"l7policy": 1}', b"{", b'{"policy": {}}',
                                 b'{"l7policy": {}, "x": 1}'])
def test_create_rejects_bad_envelopes(api, raw):
    status, out = api.call("POST", P, raw=raw)
    assert status == 400, out


@pytest.mark.parametrize(("fields", "named"), [
    ({"position": 0}, "position"),
    ({"action": "NOPE"}, "action"),
    ({"redirect_url": "javascript:alert(1)"}, "redirect_url"),
    ({"redirect_http_code": 300}, "redirect_http_code"),
    ({"admin_state_up": 1}, "admin_state_up"),
    ({"project_id": PROJECT}, "project_id"),
    ({"rules": []}, "rules"),
])
def test_update_rejects_bad_input(api, fields, named):
    status, out = api.put(f"{P}/{uuid.uuid4()}", {"l7policy": fields})
    assert status == 400, out
    assert named in out["faultstring"]


def test_missing_parents_and_policies_are_404(api):
    lb, listener = setup_http(api)
    missing = str(uuid.uuid4())
    assert fault(api.post(P, {"l7policy": {"listener_id": missing, "action": "REJECT"}}),
                 404) == f"Listener {missing} not found."
    assert fault(api.post(P, {"l7policy": {
        "listener_id": listener["id"], "action": "REDIRECT_TO_POOL",
        "redirect_pool_id": missing}}), 404) == f"Pool {missing} not found."
    for method in ("GET", "PUT", "DELETE"):
        body = {"l7policy": {"name": "x"}} if method == "PUT" else None
        assert fault(api.call(method, f"{P}/{missing}", body), 404) == \
            f"L7 Policy {missing} not found."
    # Nothing was locked by the refused calls.
    assert status_of(api, f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer") == "ACTIVE"


def test_listener_protocol_rules(api):
    lb = api.create_lb()
    tcp = make_listener(api, lb["id"], "TCP")
    message = fault(api.post(P, {"l7policy": {"listener_id": tcp["id"], "action": "REJECT"}}),
                    501)
    assert message == ("Provider 'amphora' does not support a requested option: TCP protocol "
                       "listeners do not support L7 policies")
    udp = make_listener(api, lb["id"], "UDP")
    assert "UDP protocol listeners" in fault(api.post(P, {"l7policy": {
        "listener_id": udp["id"], "action": "REJECT"}}), 501)
    prom = make_listener(api, lb["id"], "PROMETHEUS")
    assert fault(api.post(P, {"l7policy": {"listener_id": prom["id"], "action": "REJECT"}}),
                 400) == "Protocol PROMETHEUS listeners cannot have child objects."
    # Refused creates leave the load balancer unlocked.
    assert status_of(api, f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer") == "ACTIVE"


def test_redirect_pool_must_fit_the_listener(api):
    lb, listener = setup_http(api)
    other_lb = api.create_lb()
    foreign = make_pool(api, other_lb["id"])
    tcp_pool = make_pool(api, lb["id"], "TCP")
    proxy_pool = make_pool(api, lb["id"], "PROXY")
    base = {"listener_id": listener["id"], "action": "REDIRECT_TO_POOL"}
    assert fault(api.post(P, {"l7policy": {**base, "redirect_pool_id": foreign["id"]}}),
                 404) == f"Pool {foreign['id']} not found."
    assert fault(api.post(P, {"l7policy": {**base, "redirect_pool_id": tcp_pool["id"]}}),
                 400) == ("Validation failure: The pool protocol 'TCP' is invalid while the "
                          "listener protocol is 'HTTP'.")
    pol = make_policy(api, listener["id"], lb["id"], action="REDIRECT_TO_POOL",
                      redirect_pool_id=proxy_pool["id"])
    assert pol["redirect_pool_id"] == proxy_pool["id"]
    assert fault(api.put(f"{P}/{pol['id']}", {"l7policy": {
        "redirect_pool_id": tcp_pool["id"]}}), 400).startswith("Validation failure: ")
    assert fault(api.put(f"{P}/{pol['id']}", {"l7policy": {
        "redirect_pool_id": foreign["id"]}}), 404) == f"Pool {foreign['id']} not found."


# --- positions ------------------------------------------------------------------------


def test_positions_stay_contiguous(api):
    lb, listener = setup_http(api)
    lid = listener["id"]
    for name in ("a", "b", "c"):
        assert make_policy(api, lid, lb["id"], name=name)["position"] in (1, 2, 3)
    assert positions(api, lid) == [("a", 1), ("b", 2), ("c", 3)]
    assert make_policy(api, lid, lb["id"], name="first", position=1)["position"] == 1
    assert positions(api, lid) == [("first", 1), ("a", 2), ("b", 3), ("c", 4)]
    assert make_policy(api, lid, lb["id"], name="mid", position=3)["position"] == 3
    assert make_policy(api, lid, lb["id"], name="end", position=2147483647)["position"] == 6
    assert positions(api, lid) == [("first", 1), ("a", 2), ("mid", 3), ("b", 4), ("c", 5),
                                   ("end", 6)]
    by_name = {p["name"]: p for p in api.get(P, listener_id=lid)[1]["l7policies"]}
    # Move down, up, beyond the end, and to its own place.
    status, out = api.put(f"{P}/{by_name['first']['id']}", {"l7policy": {"position": 4}})
    assert status == 200 and out["l7policy"]["position"] == 4
    api.settle(lb["id"])
    assert positions(api, lid) == [("a", 1), ("mid", 2), ("b", 3), ("first", 4), ("c", 5),
                                   ("end", 6)]
    api.put(f"{P}/{by_name['end']['id']}", {"l7policy": {"position": 1}})
    api.settle(lb["id"])
    api.put(f"{P}/{by_name['a']['id']}", {"l7policy": {"position": 99}})
    api.settle(lb["id"])
    api.put(f"{P}/{by_name['mid']['id']}", {"l7policy": {"position": 2, "name": "mid"}})
    api.settle(lb["id"])
    assert positions(api, lid) == [("end", 1), ("mid", 2), ("b", 3), ("first", 4), ("c", 5),
                                   ("a", 6)]
    # Deleting closes the gap at once; the doomed policy sorts last until it is gone.
    assert api.delete(f"{P}/{by_name['mid']['id']}")[0] == 204
    assert positions(api, lid) == [("end", 1), ("b", 2), ("first", 3), ("c", 4), ("a", 5),
                                   ("mid", 6)]
    assert status_of(api, f"{P}/{by_name['mid']['id']}", "l7policy") == "PENDING_DELETE"
    api.settle(lb["id"])
    assert positions(api, lid) == [("end", 1), ("b", 2), ("first", 3), ("c", 4), ("a", 5)]
    assert api.get(f"{P}/{by_name['mid']['id']}")[0] == 404
    # Another listener numbers its own policies.
    other = make_listener(api, lb["id"])
    assert make_policy(api, other["id"], lb["id"], name="x", position=3)["position"] == 1


# --- locking and lifecycle ------------------------------------------------------------


def test_pending_load_balancer_is_immutable(api):
    lb, listener = setup_http(api)
    pol = make_policy(api, listener["id"], lb["id"])
    assert api.put(f"/v2/lbaas/loadbalancers/{lb['id']}", {"loadbalancer": {
        "name": "busy"}})[0] == 200
    message = f"Load Balancer {lb['id']} is immutable and cannot be updated."
    assert fault(api.post(P, {"l7policy": {"listener_id": listener["id"],
                                           "action": "REJECT"}}), 409) == message
    assert fault(api.put(f"{P}/{pol['id']}", {"l7policy": {"name": "x"}}), 409) == message
    assert fault(api.delete(f"{P}/{pol['id']}"), 409) == message
    api.settle(lb["id"])
    status, out = api.put(f"{P}/{pol['id']}", {"l7policy": {"name": "x"}})
    assert status == 200 and out["l7policy"]["provisioning_status"] == "PENDING_UPDATE"
    assert out["l7policy"]["updated_at"] is not None
    assert status_of(api, f"/v2/lbaas/listeners/{listener['id']}", "listener") == \
        "PENDING_UPDATE"
    api.settle(lb["id"])
    assert api.delete(f"{P}/{pol['id']}")[0] == 204
    assert status_of(api, f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer") == \
        "PENDING_UPDATE"
    assert status_of(api, f"/v2/lbaas/listeners/{listener['id']}", "listener") == \
        "PENDING_UPDATE"
    api.settle(lb["id"])
    assert api.get(f"{P}/{pol['id']}")[0] == 404
    assert status_of(api, f"/v2/lbaas/listeners/{listener['id']}", "listener") == "ACTIVE"


def test_quota_limits_policies_and_rules(api):
    project = uuid.uuid4().hex
    client = Client(api.server, project=project)
    lb, listener = setup_http(client)
    engine = create_engine(api.server.db_url)
    try:
        with Session(engine) as session, session.begin():
            session.merge(m.Quota(project_id=project, l7policy=1, l7rule=1))
    finally:
        engine.dispose()
    rule = {"type": "PATH", "compare_type": "EQUAL_TO", "value": "/x"}
    assert fault(client.post(P, {"l7policy": {"listener_id": listener["id"],
                                              "action": "REJECT", "rules": [rule, rule]}}),
                 403) == "Quota has been met for resources: L7 Rule"
    make_policy(client, listener["id"], lb["id"])
    assert fault(client.post(P, {"l7policy": {"listener_id": listener["id"],
                                              "action": "REJECT"}}),
                 403) == "Quota has been met for resources: L7 Policy"
    assert status_of(client, f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer") == \
        "ACTIVE"


# --- lists ----------------------------------------------------------------------------


def test_list_pagination_sorting_filters_fields_and_tags(api):
    lb, listener = setup_http(api)
    lid = listener["id"]
    pool = make_pool(api, lb["id"])
    made = [
        make_policy(api, lid, lb["id"], name="lp-a", tags=["red", "blue"]),
        make_policy(api, lid, lb["id"], name="lp-b", tags=["red"], admin_state_up=False,
                    action="REDIRECT_TO_URL", redirect_url="http://a.example/",
                    redirect_http_code=301),
        make_policy(api, lid, lb["id"], name="lp-c", action="REDIRECT_TO_POOL",
                    redirect_pool_id=pool["id"], position=1),
    ]
    ids = [p["id"] for p in made]

    def names(**params: Any) -> list[str]:
        status, body = api.get(P, listener_id=lid, **params)
        assert status == 200, body
        return [p["name"] for p in body["l7policies"]]

    # Default order is created_at, id (same-second rows fall back to the id).
    _, body = api.get(P, listener_id=lid)
    default = [p["id"] for p in body["l7policies"]]
    assert sorted(default) == sorted(ids)
    assert names(sort="position") == ["lp-c", "lp-a", "lp-b"]
    assert names(sort="position:desc") == ["lp-b", "lp-a", "lp-c"]
    assert names(sort_key="name", sort_dir="desc") == ["lp-c", "lp-b", "lp-a"]
    assert names(action="REDIRECT_TO_URL") == ["lp-b"]
    assert names(admin_state_up="false") == ["lp-b"]
    assert names(position="1") == ["lp-c"]
    assert names(redirect_pool_id=pool["id"]) == ["lp-c"]
    assert names(redirect_http_code="301") == ["lp-b"]
    assert names(name="lp-a", id=ids[0]) == ["lp-a"]
    assert names(provisioning_status="ACTIVE", sort="name") == ["lp-a", "lp-b", "lp-c"]
    assert names(tags="red", sort="name") == ["lp-a", "lp-b"]
    assert names(tags="red,blue") == ["lp-a"]
    assert names(**{"tags-any": "blue,green"}) == ["lp-a"]
    assert names(**{"not-tags": "red"}) == ["lp-c"]
    assert names(**{"not-tags-any": "blue"}, sort="name") == ["lp-b", "lp-c"]
    # Pages follow the links, as openstacksdk and the CLI do.
    _, page1 = api.get(P, listener_id=lid, limit=2)
    assert [p["id"] for p in page1["l7policies"]] == default[:2]
    nxt = [x["href"] for x in page1["l7policies_links"] if x["rel"] == "next"]
    assert len(nxt) == 1 and f"marker={default[1]}" in nxt[0]
    _, page2 = api.get(P, listener_id=lid, limit=2, marker=default[1])
    assert [p["id"] for p in page2["l7policies"]] == default[2:]
    assert [x["rel"] for x in page2["l7policies_links"]] == ["previous"]
    _, body = api.get(P, listener_id=lid, fields=["id", "rules"])
    assert all(set(p) == {"id", "rules"} for p in body["l7policies"])
    assert api.get(P, listener_id=lid, bogus="1")[0] == 400
    assert api.get(P, listener_id=lid, rules="x")[0] == 400
    assert "sort key" in fault(api.get(P, sort="bogus"), 400)
    assert "marker" in fault(api.get(P, marker=str(uuid.uuid4())), 400)
    assert len(api.get(P, project_id=PROJECT, listener_id=lid)[1]["l7policies"]) == 3
    assert api.get(P, project_id=uuid.uuid4().hex, listener_id=lid)[1]["l7policies"] == []


# --- clients --------------------------------------------------------------------------


def test_sdk_create_show_list_update_delete(sdk, api):
    lb, listener = setup_http(api)
    pol = sdk.create_l7_policy(listener_id=listener["id"], action="REDIRECT_PREFIX",
                               redirect_prefix="https://new.example", name="sdk-pol",
                               tags=["sdk"])
    assert pol.provisioning_status == "PENDING_CREATE"
    assert pol.redirect_prefix == "https://new.example" and pol.position == 1
    api.settle(lb["id"])
    got = sdk.get_l7_policy(pol.id)
    assert got.name == "sdk-pol" and got.is_admin_state_up and got.tags == ["sdk"]
    assert sdk.find_l7_policy("sdk-pol").id == pol.id
    assert [p.id for p in sdk.l7_policies(listener_id=listener["id"])] == [pol.id]
    assert [p.id for p in sdk.l7_policies(action="REDIRECT_PREFIX",
                                          redirect_prefix="https://new.example",
                                          listener_id=listener["id"])] == [pol.id]
    assert [p.id for p in sdk.l7_policies(tags="sdk", listener_id=listener["id"])] == [pol.id]
    for name in ("two", "three"):
        sdk.create_l7_policy(listener_id=listener["id"], action="REJECT", name=name)
        api.settle(lb["id"])
    # openstacksdk pages with limit/marker through l7policies_links.
    assert len(list(sdk.l7_policies(listener_id=listener["id"], limit=1))) == 3
    updated = sdk.update_l7_policy(pol.id, name="sdk-pol2", position=3,
                                   is_admin_state_up=False)
    assert updated.name == "sdk-pol2" and updated.position == 3
    assert updated.provisioning_status == "PENDING_UPDATE"
    api.settle(lb["id"])
    sdk.delete_l7_policy(pol.id)
    api.settle(lb["id"])
    assert sdk.find_l7_policy(pol.id) is None


def test_cli_create_show_list_set_unset_delete(cli, api):
    lb, listener = setup_http(api)
    pool = make_pool(api, lb["id"])
    pol = cli("loadbalancer", "l7policy", "create", "--name", "cli-pol", "--description", "d",
              "--action", "REDIRECT_TO_URL", "--redirect-url", "http://old.example/",
              "--redirect-http-code", "301", "--tag", "a", listener["id"])
    assert pol["name"] == "cli-pol" and pol["provisioning_status"] == "PENDING_CREATE"
    assert pol["redirect_http_code"] == 301 and pol["action"] == "REDIRECT_TO_URL"
    api.settle(lb["id"])
    cli.run("loadbalancer", "l7policy", "set", "--name", "cli-pol2", "--redirect-pool",
            pool["id"], "--position", "1", "--tag", "b", "cli-pol")
    shown = cli("loadbalancer", "l7policy", "show", "cli-pol2")
    assert shown["action"] == "REDIRECT_TO_POOL" and shown["redirect_pool_id"] == pool["id"]
    assert shown["redirect_url"] is None and shown["provisioning_status"] == "PENDING_UPDATE"
    tags = shown["tags"].split("\n") if isinstance(shown["tags"], str) else shown["tags"]
    assert sorted(tags) == ["a", "b"]
    api.settle(lb["id"])
    cli.run("loadbalancer", "l7policy", "set", "--action", "REDIRECT_TO_URL",
            "--redirect-url", "http://new.example/", pol["id"])
    api.settle(lb["id"])
    cli.run("loadbalancer", "l7policy", "unset", "--description", "--redirect-http-code",
            "--all-tag", pol["id"])
    shown = cli("loadbalancer", "l7policy", "show", pol["id"])
    assert shown["description"] == "" and shown["redirect_http_code"] is None
    assert shown["redirect_url"] == "http://new.example/" and not shown["tags"]
    api.settle(lb["id"])
    listed = cli("loadbalancer", "l7policy", "list", "--listener", listener["id"])
    assert [p["id"] for p in listed] == [pol["id"]]
    cli.run("loadbalancer", "l7policy", "delete", pol["id"])
    api.settle(lb["id"])
    assert cli.run("loadbalancer", "l7policy", "show", pol["id"], check=False).returncode != 0


# --- fuzzing: no input gets a 5xx, a refused call changes nothing ----------------------


def test_fuzz_create(api):
    lb, listener = setup_http(api)

    def cleanup(out: Any) -> None:
        api.settle(lb["id"])
        api.delete(f"{P}/{out['l7policy']['id']}")
        api.settle(lb["id"])

    _fuzz(api, "POST", P, "l7policy",
          {"listener_id": listener["id"], "action": "REDIRECT_TO_URL", "name": "f",
           "redirect_url": "http://a.example/", "redirect_http_code": 301, "position": 1,
           "tags": ["a"], "rules": [{"type": "PATH", "compare_type": "EQUAL_TO",
                                     "value": "/x"}]}, cleanup)


def test_fuzz_update(api):
    lb, listener = setup_http(api)
    pool = make_pool(api, lb["id"])
    pol = make_policy(api, listener["id"], lb["id"])
    make_policy(api, listener["id"], lb["id"])
    _fuzz(api, "PUT", f"{P}/{pol['id']}", "l7policy",
          {"name": "g", "action": "REDIRECT_TO_POOL", "redirect_pool_id": pool["id"],
           "position": 2, "admin_state_up": False, "tags": ["b"]},
          lambda out: api.settle(lb["id"]))
