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

    @settings(max_examples=60, deadline=None,
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
