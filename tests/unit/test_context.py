"""The request context under each auth strategy, from the headers a request carries."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from amphorae.api import context
from amphorae.common import config

CATALOG = [{"type": "load-balancer", "name": "octavia",
            "endpoints": [{"region": "RegionOne", "publicURL": "http://127.0.0.1:9876"}]}]
# What keystonemiddleware's auth_token sets for a confirmed project-scoped token
# (falcon hands the headers over upper-cased).
CONFIRMED = {"X-IDENTITY-STATUS": "Confirmed", "X-PROJECT-ID": "p1", "X-TENANT-ID": "p1",
             "X-PROJECT-NAME": "project-a", "X-USER-ID": "u1", "X-USER-NAME": "lb-member",
             "X-ROLES": "load-balancer_member,reader", "X-DOMAIN-ID": None,
             "OPENSTACK-SYSTEM-SCOPE": None, "X-SERVICE-CATALOG": json.dumps(CATALOG)}


@pytest.fixture
def strategy(request: pytest.FixtureRequest) -> Iterator[str]:
    config.CONF.set_override("auth_strategy", request.param, "api_settings")
    yield request.param
    config.CONF.clear_override("auth_strategy", "api_settings")


@pytest.mark.parametrize("strategy", ["keystone"], indirect=True)
def test_keystone_takes_the_confirmed_identity(strategy):
    ctx = context.from_headers(CONFIRMED, "req-1")
    assert (ctx.project_id, ctx.user_id, ctx.user_name, ctx.project_name) == \
        ("p1", "u1", "lb-member", "project-a")
    assert ctx.roles == ["load-balancer_member", "reader"]
    assert not ctx.is_admin and ctx.system_scope is None and ctx.domain_id is None
    assert ctx.service_catalog == CATALOG


@pytest.mark.parametrize("strategy", ["keystone"], indirect=True)
def test_keystone_ignores_an_unconfirmed_identity(strategy):
    """With delay_auth_decision an invalid token still reaches the API: it is nobody."""
    for status in ("Invalid", None):
        ctx = context.from_headers({**CONFIRMED, "X-IDENTITY-STATUS": status}, "req-1")
        assert (ctx.project_id, ctx.roles, ctx.system_scope, ctx.service_catalog) == \
            (None, [], None, [])


@pytest.mark.parametrize("strategy", ["keystone"], indirect=True)
def test_keystone_system_scope(strategy):
    headers = {**CONFIRMED, "X-PROJECT-ID": None, "X-TENANT-ID": None,
               "OPENSTACK-SYSTEM-SCOPE": "all", "X-ROLES": "reader"}
    ctx = context.from_headers(headers, "req-1")
    assert (ctx.project_id, ctx.system_scope) == (None, "all")
    assert ctx.policy_creds()["system_scope"] == "all"


@pytest.mark.parametrize("strategy", ["noauth"], indirect=True)
def test_noauth_is_admin_of_the_default_project(strategy):
    ctx = context.from_headers({}, "req-1")
    assert ctx.is_admin and ctx.project_id == config.CONF.api_settings.noauth_default_project_id


@pytest.mark.parametrize("strategy", ["keystone", "testing", "noauth"], indirect=True)
def test_only_a_confirmed_keystone_token_is_kept(strategy):
    """The Barbican certificate manager reads as the user with it; a client's header under
    the other strategies is no token anyone checked, so it is not kept."""
    headers = {**CONFIRMED, "X-AUTH-TOKEN": "gAAAA-token"}
    ctx = context.from_headers(headers, "req-1")
    assert ctx.auth_token == ("gAAAA-token" if strategy == "keystone" else None)
    assert "gAAAA" not in repr(ctx)
    unconfirmed = context.from_headers({**headers, "X-IDENTITY-STATUS": "Invalid"}, "req-1")
    assert unconfirmed.auth_token is None
