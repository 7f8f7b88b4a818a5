"""Schema-driven fuzzing of the write calls: no input ever gets a 5xx, and a rejected
call leaves the database exactly as it was.

Each case starts from a valid request body and breaks it: a field replaced by an
arbitrary JSON value, an unknown field added, a field removed, the envelope changed, or
the body replaced by arbitrary bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from amphorae.db import models as m
from tests.servers import PUBLIC_SUBNET

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
                | st.floats(allow_nan=False) | st.text(max_size=300))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner,
                                                                 max_size=4),
    max_leaves=10,
)
INTERESTING = st.sampled_from([
    "", " ", "x" * 256, "x" * 5000, -1, 0, 65536, 2**31, 2**63, 1.5, True, [], {}, None,
    "not-a-uuid", "00000000-0000-0000-0000-000000000000", "198.18.0.999", "::g",
    "\x00", "\r\n", "☃", "ROUND_ROBIN", "HTTP", "UDP", "SCTP",
])
VALUES = JSON_VALUES | INTERESTING


def _snapshot(db_url: str) -> str:
    """A digest of every row of every table."""
    engine = create_engine(db_url)
    digest = hashlib.sha256()
    try:
        with Session(engine) as session:
            for table in m.Base.metadata.sorted_tables:
                rows = session.execute(select(table).order_by(*table.primary_key.columns))
                for row in rows:
                    digest.update(repr(tuple(row)).encode())
    finally:
        engine.dispose()
    return digest.hexdigest()


@st.composite
def broken(draw: st.DrawFn, valid: dict[str, Any], envelope: str) -> bytes:
    body = dict(valid)
    choice = draw(st.integers(0, 5))
    if choice == 0 and body:
        body[draw(st.sampled_from(sorted(body)))] = draw(VALUES)
    elif choice == 1:
        body[draw(st.text(min_size=1, max_size=15))] = draw(VALUES)
    elif choice == 2 and body:
        body.pop(draw(st.sampled_from(sorted(body))))
    elif choice == 3:
        return json.dumps({draw(st.text(max_size=15)): body}).encode()
    elif choice == 4:
        return draw(st.binary(max_size=200))
    else:
        for key in draw(st.lists(st.sampled_from(sorted(body) or ["x"]), max_size=3)):
            body[key] = draw(VALUES)
    return json.dumps({envelope: body}).encode()


def _fuzz(api: Any, method: str, path: str, envelope: str, valid: dict[str, Any],
          after_success: Callable[[Any], None]) -> None:
    db_url = api.server.db_url

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(raw=broken(valid, envelope))
    def run(raw: bytes) -> None:
        before = _snapshot(db_url)
        status, out = api.call(method, path, raw=raw)
        assert status < 500, (raw, status, out)
        if status >= 400:
            assert isinstance(out, dict) and out.get("faultstring"), out
            assert _snapshot(db_url) == before, (raw, status, out)
        else:
            after_success(out)

    run()


def test_fuzz_loadbalancer_create(api):
    def cleanup(out: Any) -> None:
        lb_id = out["loadbalancer"]["id"]
        api.settle(lb_id)
        api.delete(f"/v2/lbaas/loadbalancers/{lb_id}", cascade="true")
        api.settle(lb_id)

    _fuzz(api, "POST", "/v2/lbaas/loadbalancers", "loadbalancer",
          {"name": "f", "vip_subnet_id": PUBLIC_SUBNET, "admin_state_up": True,
           "tags": ["a"]}, cleanup)


@pytest.fixture
def active_lb(api):
    lb = api.create_lb(name="fuzz-target")
    yield lb
    api.settle(lb["id"])
    api.delete(f"/v2/lbaas/loadbalancers/{lb['id']}", cascade="true")
    api.settle(lb["id"])


def test_fuzz_loadbalancer_update(api, active_lb):
    lb_id = active_lb["id"]
    _fuzz(api, "PUT", f"/v2/lbaas/loadbalancers/{lb_id}", "loadbalancer",
          {"name": "g", "description": "d", "admin_state_up": True, "tags": ["b"]},
          lambda out: api.settle(lb_id))


@pytest.fixture
def tree(api):
    """An ACTIVE load balancer with a listener, a pool with a member, a bare pool and an
    L7 policy with a rule, made with one fully populated create."""
    body = {"loadbalancer": {
        "name": "fuzz-tree", "vip_subnet_id": PUBLIC_SUBNET,
        "pools": [{"name": "bare", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}],
        "listeners": [{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
            "name": "main", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": "198.18.64.20", "protocol_port": 80}]},
            "l7policies": [{"action": "REJECT", "rules": [
                {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/x"}]}]}],
    }}
    status, out = api.post("/v2/lbaas/loadbalancers", body)
    assert status == 201, out
    lb = out["loadbalancer"]
    api.settle(lb["id"])
    yield lb
    api.settle(lb["id"])
    api.delete(f"/v2/lbaas/loadbalancers/{lb['id']}", cascade="true")
    api.settle(lb["id"])


def _targets(lb: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    listener = lb["listeners"][0]
    policy = listener["l7policies"][0]
    pools = {p["name"]: p for p in lb["pools"]}
    main, bare = pools["main"], pools["bare"]
    member = main["members"][0]
    return [
        ("POST", "/v2/lbaas/listeners", "listener",
         {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 81,
          "connection_limit": 10, "insert_headers": {}, "allowed_cidrs": ["198.18.0.0/24"]}),
        ("PUT", f"/v2/lbaas/listeners/{listener['id']}", "listener",
         {"name": "l", "timeout_client_data": 1000, "default_pool_id": main["id"]}),
        ("POST", "/v2/lbaas/pools", "pool",
         {"loadbalancer_id": lb["id"], "protocol": "HTTP", "lb_algorithm": "SOURCE_IP",
          "session_persistence": {"type": "APP_COOKIE", "cookie_name": "c"}}),
        ("PUT", f"/v2/lbaas/pools/{main['id']}", "pool",
         {"lb_algorithm": "LEAST_CONNECTIONS", "tls_enabled": False}),
        ("POST", f"/v2/lbaas/pools/{main['id']}/members", "member",
         {"address": "198.18.64.21", "protocol_port": 8080, "weight": 3, "backup": False}),
        ("PUT", f"/v2/lbaas/pools/{main['id']}/members/{member['id']}", "member",
         {"weight": 5, "monitor_port": 81}),
        ("POST", "/v2/lbaas/healthmonitors", "healthmonitor",
         {"pool_id": bare["id"], "type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 3,
          "url_path": "/h", "expected_codes": "200-204"}),
        ("POST", "/v2/lbaas/l7policies", "l7policy",
         {"listener_id": listener["id"], "action": "REDIRECT_TO_URL",
          "redirect_url": "http://example.com/", "position": 1}),
        ("PUT", f"/v2/lbaas/l7policies/{policy['id']}", "l7policy",
         {"action": "REDIRECT_PREFIX", "redirect_prefix": "https://example.com"}),
        ("POST", f"/v2/lbaas/l7policies/{policy['id']}/rules", "rule",
         {"type": "HEADER", "compare_type": "REGEX", "key": "X-A", "value": "^a+$"}),
        # Another project's quota: a fuzzed limit of 0 must not starve later tests.
        ("PUT", "/v2/lbaas/quotas/fuzz-quota-project", "quota",
         {"load_balancer": 100, "listener": -1, "member": 50}),
        ("POST", "/v2/lbaas/flavorprofiles", "flavorprofile",
         {"name": "fp", "provider_name": "amphora",
          "flavor_data": '{"loadbalancer_topology": "SINGLE"}'}),
    ]


def test_fuzz_child_resources(api, tree):
    for method, path, envelope, valid in _targets(tree):
        _fuzz(api, method, path, envelope, valid, lambda out: api.settle(tree["id"]))
