"""Fuzzing of the write calls and the list filters: no input ever gets a 5xx, and a
rejected call leaves the database exactly as it was.

Each write case starts from a valid request body and breaks it: a field replaced by an
arbitrary JSON value, an unknown field added, a field removed, the envelope changed, or
the body replaced by arbitrary bytes. The raw bodies of every write call are broken as
bytes too (nesting depth, size, encoding), and every list filter of every resource gets
values out of its column's range (what an outside fuzzer found 500s with).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    Boolean,
    Engine,
    Float,
    Integer,
    SmallInteger,
    String,
    create_engine,
    select,
)
from sqlalchemy.orm import Session

from amphorae.api import app as api_app
from amphorae.api import listing
from amphorae.api.body import MAX_BODY, MAX_DEPTH
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


_ENGINES: dict[str, Engine] = {}


def _snapshot(db_url: str) -> str:
    """A digest of every row of every table."""
    # One engine per database for the whole run: a snapshot per request stays cheap.
    engine = _ENGINES.get(db_url) or _ENGINES.setdefault(db_url, create_engine(db_url))
    digest = hashlib.sha256()
    with Session(engine) as session:
        for table in m.Base.metadata.sorted_tables:
            rows = session.execute(select(table).order_by(*table.primary_key.columns))
            for row in rows:
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


class Database:
    """The API's database as last seen; nothing but the test's requests writes it, so a
    refused request must leave it so (one snapshot per request, not two)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.seen = _snapshot(db_url)

    def unchanged(self) -> bool:
        now, self.seen = self.seen, _snapshot(self.db_url)
        return now == self.seen

    def changed_on_purpose(self) -> None:
        self.seen = _snapshot(self.db_url)


# gunicorn refuses a request line over 4094 bytes itself, before the API sees it.
URI_TOO_LONG = 414


def _refused(api: Any, db: Database, method: str, path: str, raw: bytes | None = None,
             params: dict[str, str] | None = None) -> tuple[int, Any]:
    """Send a request: never a 5xx, and a refusal (a 4xx with a message: a faultstring,
    or pecan's description where Octavia refuses while routing) leaves the database as
    it was."""
    status, out = api.call(method, path, raw=raw, **(params or {}))
    shown = (raw or b"")[:200], {k: v[:200] for k, v in (params or {}).items()}
    assert status < 500, (method, path, shown, status, out)
    if status >= 400:
        assert status == URI_TOO_LONG or (isinstance(out, dict) and (
            out.get("faultstring") or out.get("description"))), (method, path, shown, status, out)
        assert db.unchanged(), (method, path, shown, status, out)
        message = str(out.get("faultstring") or "") if isinstance(out, dict) else ""
        assert not any(p in message for p in PYDANTIC_WORDING), (method, path, shown, out)
    return status, out


# How pydantic words its errors: the API says it in WSME's words instead (api/body.py).
PYDANTIC_WORDING = ("Input should", "String should", "List should", "Field required",
                    "Dictionary should", "Extra inputs")


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
    db = Database(api.server.db_url)

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(raw=broken(valid, envelope))
    def run(raw: bytes) -> None:
        status, out = _refused(api, db, method, path, raw=raw)
        if status < 400:
            after_success(out)
            db.changed_on_purpose()

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


# --- what an outside fuzzer found, as it sent it: both were 500s -------------------------

DEEP = 2000


def test_a_body_nested_2000_deep_is_a_400(api):
    """It was a RecursionError in the JSON parser, on every write call."""
    status, out = api.call("POST", "/v2/lbaas/loadbalancers", raw=_nested(DEEP))
    assert status == 400 and "nested deeper" in out["faultstring"], (status, out)


def test_an_integer_filter_wider_than_64_bits_is_a_400(api, tree):
    """It was an OverflowError from SQLite."""
    main = next(p for p in tree["pools"] if p["name"] == "main")
    status, out = api.get(f"/v2/lbaas/pools/{main['id']}/members",
                          weight="999999999999999999999")
    assert status == 400 and "weight" in out["faultstring"], (status, out)


# --- raw request bodies: nesting depth, size, encoding ---------------------------------


def _write_calls(api: Any, lb: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Every write call that reads a body, with a valid body for it."""
    policy = lb["listeners"][0]["l7policies"][0]
    main = next(p for p in lb["pools"] if p["name"] == "main")
    rule = policy["rules"][0]
    status, out = api.post("/v2/lbaas/flavorprofiles", {"flavorprofile": {
        "name": "raw-fp", "provider_name": "amphora", "flavor_data": "{}"}})
    assert status == 201, out
    profile = out["flavorprofile"]["id"]
    status, out = api.post("/v2/lbaas/availabilityzoneprofiles", {
        "availability_zone_profile": {"name": "raw-azp", "provider_name": "amphora",
                                      "availability_zone_data": "{}"}})
    assert status == 201, out
    zone_profile = out["availability_zone_profile"]["id"]
    # PUTs of objects that need not exist: the body is read before the object is.
    nobody = "5d4e3f2a-1b0c-4d9e-8f7a-6b5c4d3e2f1a"
    return [
        *[(method, path, envelope, valid) for method, path, envelope, valid in _targets(lb)],
        ("POST", "/v2/lbaas/loadbalancers", "loadbalancer",
         {"name": "raw", "vip_subnet_id": PUBLIC_SUBNET}),
        ("PUT", f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", {"name": "raw"}),
        ("PUT", f"/v2/lbaas/pools/{main['id']}/members", "members",
         {"address": "198.18.64.30", "protocol_port": 80}),
        ("PUT", f"/v2/lbaas/healthmonitors/{nobody}", "healthmonitor", {"delay": 7}),
        ("PUT", f"/v2/lbaas/l7policies/{policy['id']}/rules/{rule['id']}", "rule",
         {"value": "/y"}),
        ("PUT", f"/v2/lbaas/flavorprofiles/{profile}", "flavorprofile", {"name": "raw-fp2"}),
        ("POST", "/v2/lbaas/flavors", "flavor", {"name": "raw-f", "flavor_profile_id": profile}),
        ("PUT", f"/v2/lbaas/flavors/{nobody}", "flavor", {"description": "d"}),
        ("POST", "/v2/lbaas/availabilityzoneprofiles", "availability_zone_profile",
         {"name": "raw-azp2", "provider_name": "amphora", "availability_zone_data": "{}"}),
        ("PUT", f"/v2/lbaas/availabilityzoneprofiles/{zone_profile}",
         "availability_zone_profile", {"name": "raw-azp3"}),
        ("POST", "/v2/lbaas/availabilityzones", "availability_zone",
         {"name": "raw-az", "availability_zone_profile_id": zone_profile}),
        ("PUT", "/v2/lbaas/availabilityzones/raw-none", "availability_zone",
         {"description": "d"}),
    ]


def _with_value(valid: dict[str, Any], envelope: str, value: bytes) -> bytes:
    """The valid body with its first field's value replaced by ``value``, verbatim."""
    field = sorted(valid)[0]
    good = json.dumps({envelope: {**valid, field: "\x01"}}).encode()
    return good.replace(b'"\\u0001"', value)


def _nested(depth: int, opener: bytes = b'{"a":', closer: bytes = b"}") -> bytes:
    return opener * depth + b"1" + closer * depth


def _hostile(valid: dict[str, Any], envelope: str) -> list[tuple[bytes, int, str]]:
    """Bodies every write call must refuse as it reads them: (body, status, what the
    faultstring names)."""
    good = json.dumps({envelope: valid})
    field = sorted(valid)[0]
    # The root and the envelope are two levels: the field's value adds the rest.
    deepest = MAX_DEPTH - 2
    return [
        (_nested(DEEP), 400, "nested deeper"),
        (_nested(DEEP, b"[", b"]"), 400, "nested deeper"),
        (_with_value(valid, envelope, _nested(DEEP)), 400, "nested deeper"),
        (_with_value(valid, envelope, _nested(deepest + 1, b"[", b"]")), 400, "nested deeper"),
        (_with_value(valid, envelope, json.dumps("x" * MAX_BODY).encode()), 413, "larger"),
        (good.encode("utf-16"), 400, "UTF-8"),
        (good.encode("utf-32"), 400, "UTF-8"),
        (_with_value(valid, envelope, '"caf\xe9"'.encode("latin-1")), 400, "UTF-8"),
        (b"\xef\xbb\xbf" + good.encode(), 400, "JSON"),
        (_with_value(valid, envelope, b'"\\ud800"'), 400, field),
        (_with_value(valid, envelope, b'{"k\\udfff": 1}'), 400, field),
        (_with_value(valid, envelope, b"NaN"), 400, "NaN"),
        (_with_value(valid, envelope, b"-Infinity"), 400, "Infinity"),
        (b"[" + good.encode() + b"]", 400, envelope),
        (json.dumps(good).encode(), 400, envelope),
        (b"7", 400, envelope),
        (_with_value(valid, envelope, b"1e999"), 400, "1e999"),
        (b"null", 400, envelope),
        (b"", 400, envelope),
    ]


@st.composite
def raw_bodies(draw: st.DrawFn, valid: dict[str, Any], envelope: str) -> bytes:
    """A valid body broken as bytes: nested, re-encoded, spliced or padded."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        opener, closer = draw(st.sampled_from([(b'{"a":', b"}"), (b"[", b"]"),
                                               (b'[{"a":', b"}]")]))
        depth = draw(st.integers(1, 1500))
        return _with_value(valid, envelope, _nested(depth, opener, closer))
    if choice == 1:
        text = draw(st.text(min_size=1, max_size=20))
        codec = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32",
                                      "latin-1", "cp1252", "shift_jis"]))
        body = json.dumps({envelope: {**valid, sorted(valid)[0]: text}}, ensure_ascii=False)
        return body.encode(codec, errors="replace")
    if choice == 2:
        good = json.dumps({envelope: valid}).encode()
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.binary(min_size=1, max_size=8)) + good[at:]
    size = draw(st.integers(MAX_BODY - 64, MAX_BODY + 64))
    good = json.dumps({envelope: {**valid, sorted(valid)[0]: ""}}).encode()
    return good.replace(b'""', json.dumps("x" * max(0, size - len(good))).encode())


def _undo(api: Any, db: Database, tree: dict[str, Any], path: str, out: Any) -> None:
    """After a body that was accepted: settle the tree, remove a new load balancer."""
    api.settle(tree["id"])
    created = (out or {}).get("loadbalancer", {}).get("id")
    if path == "/v2/lbaas/loadbalancers" and created:
        api.settle(created)
        api.delete(f"/v2/lbaas/loadbalancers/{created}", cascade="true")
        api.settle(created)
    db.changed_on_purpose()


def test_fuzz_raw_bodies(api, tree):
    """Every write call refuses, as it reads them, bodies nested too deep, too large,
    not UTF-8, not JSON, or with values no database stores; then raw bodies broken at
    random."""
    calls = _write_calls(api, tree)
    db = Database(api.server.db_url)
    for method, path, envelope, valid in calls:
        for raw, expected, named in _hostile(valid, envelope):
            status, out = _refused(api, db, method, path, raw=raw)
            assert status == expected, (method, path, raw[:100], status, out)
            assert named in out["faultstring"], (method, path, raw[:100], out)
        # As deep as allowed: refused, if at all, for what the value is, not its depth.
        deepest = _with_value(valid, envelope, _nested(MAX_DEPTH - 2, b"[", b"]"))
        status, out = _refused(api, db, method, path, raw=deepest)
        assert "nested deeper" not in str(out), (method, path, out)
        if status < 400:
            _undo(api, db, tree, path, out)
        _fuzz_raw(api, db, tree, method, path, raw_bodies(valid, envelope))


def _fuzz_raw(api: Any, db: Database, tree: dict[str, Any], method: str, path: str,
              bodies: st.SearchStrategy[bytes]) -> None:
    @settings(max_examples=5, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(raw=bodies)
    def run(raw: bytes) -> None:
        status, out = _refused(api, db, method, path, raw=raw)
        if status < 400:
            _undo(api, db, tree, path, out)

    run()


# --- list filters out of their column's range ------------------------------------------


def _lists(lb: dict[str, Any]) -> list[tuple[str, listing.Collection]]:
    """Every list call with its collection (what it filters on), each resource's once."""
    policy = lb["listeners"][0]["l7policies"][0]
    main = next(p for p in lb["pools"] if p["name"] == "main")
    paths = {
        "loadbalancers": "/v2/lbaas/loadbalancers", "listeners": "/v2/lbaas/listeners",
        "pools": "/v2/lbaas/pools", "members": f"/v2/lbaas/pools/{main['id']}/members",
        "healthmonitors": "/v2/lbaas/healthmonitors", "l7policies": "/v2/lbaas/l7policies",
        "l7rules": f"/v2/lbaas/l7policies/{policy['id']}/rules",
        "quotas": "/v2/lbaas/quotas", "flavors": "/v2/lbaas/flavors",
        "flavorprofiles": "/v2/lbaas/flavorprofiles",
        "availabilityzones": "/v2/lbaas/availabilityzones",
        "availabilityzoneprofiles": "/v2/lbaas/availabilityzoneprofiles",
        "amphorae": "/v2/octavia/amphorae", "events": "/v2/octavia/events",
    }
    out = []
    for name in (*api_app.LBAAS_MODULES, *api_app.OCTAVIA_MODULES):
        coll = getattr(importlib.import_module(f"amphorae.api.v2.{name}"), "COLLECTION", None)
        if coll is not None:
            assert name in paths, f"no list path for {name}: add it here"
            out.append((paths[name], coll))
    return out


def _int_range(kind: Any) -> tuple[int, int]:
    bits = 64 if isinstance(kind, BigInteger) else 16 if isinstance(kind, SmallInteger) else 32
    return -2 ** (bits - 1), 2 ** (bits - 1) - 1


def _beyond(column: Any) -> tuple[list[str], list[str]]:
    """Values of a filter on ``column``: those just inside its range, those beyond it."""
    kind = column.type
    if isinstance(kind, Boolean):
        return ["true", "False", "0"], []
    if isinstance(kind, Integer):
        low, high = _int_range(kind)
        return [str(low), str(high)], [str(low - 1), str(high + 1), str(2 ** 64),
                                       "999999999999999999999", "-" + "9" * 40]
    if isinstance(kind, Float):
        return ["1.1", "-0"], ["nan", "inf", "-Infinity", "1e400"]
    if isinstance(kind, String) and kind.length:
        return ["x" * kind.length], ["x" * (kind.length + 1), "\u2603" * (kind.length + 1)]
    return [], []


def _too_long_for_the_server(status: int, value: str) -> bool:
    return status == URI_TOO_LONG and len(urllib.parse.quote(value)) > 3500


def test_fuzz_list_filters_beyond_their_columns(api, tree):
    """Each filter of each list: a value its column cannot hold is a 400 naming the
    filter (an integer wider than 64 bits was an OverflowError from SQLite, a 500);
    the edges of the range are still answered."""
    db = Database(api.server.db_url)
    for path, coll in _lists(tree):
        columns = dict(coll.columns)
        if coll.taggable:
            columns.update(dict.fromkeys(listing.TAG_PARAMS, m.Tag.tag))
        for name, column in columns.items():
            inside, beyond = _beyond(column)
            if name in coll.choices:  # a closed set: its values, and none other
                inside, beyond = list(coll.choices[name]), [*inside, *beyond]
            for value in inside:
                status, out = _refused(api, db, "GET", path, params={name: value})
                assert status == 200 or _too_long_for_the_server(status, value), (
                    path, name, value[:50], status, out)
            for value in beyond:
                status, out = _refused(api, db, "GET", path, params={name: value})
                if _too_long_for_the_server(status, value):
                    continue
                assert status == 400, (path, name, value[:50], status, out)
                assert name in out["faultstring"], (path, name, value[:50], out)


FILTER_VALUES = (st.text(max_size=300) | st.integers().map(str)
                 | st.floats().map(str) | INTERESTING.map(str)
                 | st.sampled_from(["1e400", "-0", "0x10", "1_000", " 1", "\u0661", "NaN",
                                    "t", "2024-02-30", "9999-12-31T23:59:59.999999"]))


@st.composite
def list_queries(draw: st.DrawFn, coll: listing.Collection) -> dict[str, str]:
    names = [*coll.columns, "limit", "marker", "page_reverse", "sort", "sort_key",
             "sort_dir", "fields", "tags", "not-tags-any", "project_id"]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    return {name: draw(FILTER_VALUES) for name in chosen}


def test_fuzz_list_queries(api, tree):
    """Arbitrary filter, paging and sorting values on every list: never a 5xx."""
    db = Database(api.server.db_url)
    for path, coll in _lists(tree):
        _fuzz_query(api, db, path, coll)


def _fuzz_query(api: Any, db: Database, path: str, coll: listing.Collection) -> None:
    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(params=list_queries(coll))
    def run(params: dict[str, str]) -> None:
        _refused(api, db, "GET", path, params=params)

    run()
