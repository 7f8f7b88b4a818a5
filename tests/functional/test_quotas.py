"""Quotas: raw rows, filled-in views, both spellings, enforcement, and the policy of
the operator-facing resources under a role-checking auth strategy."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from amphorae.db import models as m
from tests import servers
from tests.settle import _engine

QUOTA_KEYS = {"project_id", "tenant_id", "loadbalancer", "load_balancer", "listener", "member",
              "pool", "healthmonitor", "health_monitor", "l7policy", "l7rule"}
LIMITS = QUOTA_KEYS - {"project_id", "tenant_id"}


def project() -> str:
    return uuid.uuid4().hex


def test_show_without_row_is_all_defaults(api):
    pid = project()
    status, body = api.get(f"/v2/lbaas/quotas/{pid}")
    assert status == 200
    quota = body["quota"]
    assert set(quota) == QUOTA_KEYS
    assert quota["project_id"] == quota["tenant_id"] == pid
    assert all(quota[k] == -1 for k in LIMITS)
    # Reading does not create a row.
    status, body = api.get("/v2/lbaas/quotas", project_id=pid)
    assert status == 200 and body == {"quotas": [], "quotas_links": []}


def test_put_both_spellings_and_reset_with_null(api):
    pid = project()
    status, body = api.put(f"/v2/lbaas/quotas/{pid}", {"quota": {
        "loadbalancer": 5, "health_monitor": 7, "member": 0, "l7rule": 2000000000}})
    assert status == 202
    quota = body["quota"]
    assert set(quota) == QUOTA_KEYS
    assert quota["loadbalancer"] == quota["load_balancer"] == 5
    assert quota["healthmonitor"] == quota["health_monitor"] == 7
    assert quota["member"] == 0 and quota["l7rule"] == 2000000000 and quota["listener"] == -1
    status, body = api.put(f"/v2/lbaas/quotas/{pid}", {"quota": {
        "load_balancer": 3, "healthmonitor": -1}})
    assert body["quota"]["loadbalancer"] == 3 and body["quota"]["health_monitor"] == -1
    assert body["quota"]["member"] == 0  # untouched
    # The current spelling wins when both are sent.
    status, body = api.put(f"/v2/lbaas/quotas/{pid}", {"quota": {
        "loadbalancer": 9, "load_balancer": 8}})
    assert body["quota"]["load_balancer"] == 9
    # null goes back to the configured default; the raw row shows null.
    status, body = api.put(f"/v2/lbaas/quotas/{pid}", {"quota": {"member": None}})
    assert status == 202 and body["quota"]["member"] == -1
    status, body = api.get("/v2/lbaas/quotas", project_id=pid)
    assert status == 200
    [row] = body["quotas"]
    assert set(row) == QUOTA_KEYS
    assert row["member"] is None and row["listener"] is None
    assert row["loadbalancer"] == row["load_balancer"] == 9
    assert row["healthmonitor"] == row["health_monitor"] == -1


@pytest.mark.parametrize(("field", "value"), [
    ("loadbalancer", -2), ("listener", 2000000001), ("pool", "5"), ("member", True),
    ("l7policy", 1.5), ("health_monitor", [1]),
])
def test_put_bad_values(api, field, value):
    status, body = api.put(f"/v2/lbaas/quotas/{project()}", {"quota": {field: value}})
    assert status == 400, body
    assert f"Invalid input for field/attribute {field}." in body["faultstring"]


@pytest.mark.parametrize(("payload", "needle"), [
    ({"quota": {"project_id": "x"}}, "Unknown attribute for argument quota: project_id"),
    ({"quota": {"loadbalancers": 1}}, "Unknown attribute for argument quota: loadbalancers"),
    ({"quotas": {}}, "Invalid input for field/attribute quota."),
    ({"quota": [1]}, "Invalid input for field/attribute quota."),
])
def test_put_bad_bodies(api, payload, needle):
    status, body = api.put(f"/v2/lbaas/quotas/{project()}", payload)
    assert status == 400
    assert needle in body["faultstring"]


def test_put_project_id_too_long(api):
    status, body = api.put(f"/v2/lbaas/quotas/{'x' * 37}", {"quota": {"pool": 1}})
    assert status == 400 and "project_id" in body["faultstring"]


def test_delete_resets_and_missing_row_is_404(api):
    pid = project()
    status, body = api.delete(f"/v2/lbaas/quotas/{pid}")
    assert status == 404
    assert body["faultstring"] == f"Quotas {pid} not found."
    api.put(f"/v2/lbaas/quotas/{pid}", {"quota": {"pool": 4, "loadbalancer": 1}})
    status, body = api.delete(f"/v2/lbaas/quotas/{pid}")
    assert status == 202 and body is None
    status, body = api.get(f"/v2/lbaas/quotas/{pid}")
    assert body["quota"]["pool"] == -1 and body["quota"]["loadbalancer"] == -1
    # Octavia keeps the (now all-default) row, so a second delete still finds it.
    status, body = api.get("/v2/lbaas/quotas", project_id=pid)
    assert all(body["quotas"][0][k] is None for k in LIMITS)
    assert api.delete(f"/v2/lbaas/quotas/{pid}")[0] == 202


def test_defaults_routes(api):
    pid = project()
    api.put(f"/v2/lbaas/quotas/{pid}", {"quota": {"pool": 4}})
    status, body = api.get(f"/v2/lbaas/quotas/{pid}/default")
    assert status == 200 and set(body["quota"]) == QUOTA_KEYS
    assert body["quota"]["project_id"] == pid and body["quota"]["pool"] == -1
    status, body = api.get("/v2/lbaas/quotas/defaults")
    assert status == 200 and set(body["quota"]) == QUOTA_KEYS
    assert body["quota"]["project_id"] == "defaults"  # as Octavia answers
    assert all(body["quota"][k] == -1 for k in LIMITS)


def test_list_pagination_sorting_and_filters(api):
    mine = sorted(project() for _ in range(3))
    for i, pid in enumerate(mine):
        api.put(f"/v2/lbaas/quotas/{pid}", {"quota": {"l7policy": 100 + i}})
    # Walk every row one page at a time, following the next links.
    seen: list[str] = []
    status, body = api.get("/v2/lbaas/quotas", limit=1)
    while True:
        assert status == 200 and len(body["quotas"]) <= 1
        seen += [q["project_id"] for q in body["quotas"]]
        nxt = [link["href"] for link in body["quotas_links"] if link["rel"] == "next"]
        if not nxt:
            break
        status, body = api.call("GET", nxt[0].removeprefix(api.url))
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert set(mine) <= set(seen)
    status, body = api.get("/v2/lbaas/quotas", l7policy="101")
    assert [q["project_id"] for q in body["quotas"]] == [mine[1]]
    status, body = api.get("/v2/lbaas/quotas", sort="project_id:desc")
    ids = [q["project_id"] for q in body["quotas"]]
    assert ids == sorted(ids, reverse=True)
    status, body = api.get("/v2/lbaas/quotas", project_id=mine[2], fields="l7policy")
    assert body["quotas"] == [{"l7policy": 102}]
    status, body = api.get("/v2/lbaas/quotas", bogus="1")
    assert status == 400
    assert body["faultstring"] == "One or more arguments are either duplicate or invalid"
    status, body = api.get("/v2/lbaas/quotas", marker="no-such-project")
    assert status == 400 and "marker" in body["faultstring"]


def test_load_balancer_quota_is_enforced(server):
    """Enforced under noauth too (Octavia skips quota checks there)."""
    pid = project()
    client = servers.Client(server, project=pid)
    status, _ = client.put(f"/v2/lbaas/quotas/{pid}", {"quota": {"loadbalancer": 1}})
    assert status == 202
    first = client.create_lb(name="first")
    status, body = client.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "name": "second", "vip_subnet_id": servers.PUBLIC_SUBNET}})
    assert status == 403
    assert body["faultstring"] == "Quota has been met for resources: Load Balancer"
    status, body = client.get("/v2/lbaas/loadbalancers", project_id=pid)
    assert [lb["id"] for lb in body["loadbalancers"]] == [first["id"]]
    with Session(_engine(server.db_url)) as session:
        assert session.scalar(select(func.count()).select_from(m.LoadBalancer)
                              .where(m.LoadBalancer.project_id == pid)) == 1
        # The refused create left no VIP address behind either.
        assert session.scalar(select(func.count()).select_from(m.IPAllocation)
                              .where(m.IPAllocation.device_id.like("lb-%"),
                                     m.IPAllocation.device_id.not_in(
                                         select("lb-" + m.LoadBalancer.id)))) == 0
    # Raising the limit lets the next one through.
    client.put(f"/v2/lbaas/quotas/{pid}", {"quota": {"loadbalancer": 2}})
    status, _ = client.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "name": "second", "vip_subnet_id": servers.PUBLIC_SUBNET}})
    assert status == 201


def test_sdk_quotas(sdk, server):
    pid = project()
    quota = sdk.update_quota(pid, load_balancers=4, listeners=5, pools=6,
                             health_monitors=7, members=8)
    assert (quota.load_balancers, quota.listeners, quota.pools, quota.health_monitors,
            quota.members) == (4, 5, 6, 7, 8)
    fetched = sdk.get_quota(pid)
    assert fetched.project_id == pid and fetched.load_balancers == 4
    assert pid in {q.project_id for q in sdk.quotas()}
    assert sdk.get_quota_default().load_balancers == -1
    sdk.delete_quota(pid)
    assert sdk.get_quota(pid).load_balancers == -1


def test_cli_quota_flow(cli, sdk):
    # quota set/unset/reset/list --project resolve the project through Keystone, which
    # `--os-auth-type none` does not have: those writes go through openstacksdk here.
    pid = str(uuid.uuid4())
    shown = cli("loadbalancer", "quota", "show", pid)
    assert shown["load_balancer"] == -1 and shown["member"] == -1
    defaults = cli("loadbalancer", "quota", "defaults", "show")
    assert defaults["listener"] == -1
    sdk.update_quota(pid, load_balancers=3, members=9)
    shown = cli("loadbalancer", "quota", "show", pid)
    assert shown["load_balancer"] == 3 and shown["member"] == 9
    rows = {r["project_id"]: r for r in cli("loadbalancer", "quota", "list")}
    assert rows[pid]["load_balancer"] == 3
    sdk.delete_quota(pid)
    assert cli("loadbalancer", "quota", "show", pid)["load_balancer"] == -1


# --- policy, with roles checked (auth_strategy = testing) ----------------------------


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api("sqlite", tmp_path_factory.mktemp("api-rbac"), f"rbac{worker}",
                             "[api_settings]\nauth_strategy = testing\n") as srv:
        yield srv


def as_role(server: servers.Server, project_id: str, *roles: str) -> servers.Client:
    client = servers.Client(server, project=project_id)
    client.http.headers["X-Roles"] = ",".join(roles)
    return client


def test_policy_quotas(secure_server):
    pid, other = project(), project()
    member = as_role(secure_server, pid, "member")
    reader = as_role(secure_server, pid, "reader")
    admin = as_role(secure_server, project(), "admin")
    assert admin.put(f"/v2/lbaas/quotas/{pid}", {"quota": {"pool": 3}})[0] == 202
    assert admin.put(f"/v2/lbaas/quotas/{other}", {"quota": {"pool": 4}})[0] == 202
    # Owners read their own quota, never another project's, and cannot change it.
    for client in (member, reader):
        assert client.get(f"/v2/lbaas/quotas/{pid}")[1]["quota"]["pool"] == 3
        assert client.get(f"/v2/lbaas/quotas/{pid}/default")[0] == 200
        assert client.get("/v2/lbaas/quotas/defaults")[0] == 200
        status, body = client.get(f"/v2/lbaas/quotas/{other}")
        assert status == 403
        assert body["faultstring"] == "Policy does not allow this request to be performed."
        assert client.put(f"/v2/lbaas/quotas/{pid}", {"quota": {"pool": 9}})[0] == 403
        assert client.delete(f"/v2/lbaas/quotas/{pid}")[0] == 403
        status, body = client.get("/v2/lbaas/quotas")
        assert status == 200 and [q["project_id"] for q in body["quotas"]] == [pid]
        assert client.get("/v2/lbaas/quotas", project_id=other)[0] == 403
    # An admin lists everything.
    status, body = admin.get("/v2/lbaas/quotas")
    assert {pid, other} <= {q["project_id"] for q in body["quotas"]}
    assert admin.delete(f"/v2/lbaas/quotas/{pid}")[0] == 202


def test_policy_operator_resources(secure_server):
    """Flavors and zones are readable by members; profiles, capabilities and amphorae
    are admin only."""
    member = as_role(secure_server, project(), "member")
    admin = as_role(secure_server, project(), "admin")
    name = f"rbac-{uuid.uuid4().hex[:8]}"
    fp = {"flavorprofile": {"name": name, "provider_name": "amphora", "flavor_data": "{}"}}
    assert member.post("/v2/lbaas/flavorprofiles", fp)[0] == 403
    status, body = admin.post("/v2/lbaas/flavorprofiles", fp)
    assert status == 201
    fp_id = body["flavorprofile"]["id"]
    flavor = {"flavor": {"name": name, "flavor_profile_id": fp_id}}
    assert member.post("/v2/lbaas/flavors", flavor)[0] == 403
    status, body = admin.post("/v2/lbaas/flavors", flavor)
    assert status == 201
    flavor_id = body["flavor"]["id"]
    assert member.get(f"/v2/lbaas/flavors/{flavor_id}")[0] == 200
    assert name in {f["name"] for f in member.get("/v2/lbaas/flavors")[1]["flavors"]}
    assert member.put(f"/v2/lbaas/flavors/{flavor_id}", {"flavor": {"enabled": False}})[0] \
        == 403
    assert member.delete(f"/v2/lbaas/flavors/{flavor_id}")[0] == 403
    assert member.get("/v2/lbaas/flavorprofiles")[0] == 403
    assert member.get(f"/v2/lbaas/flavorprofiles/{fp_id}")[0] == 403
    azp = {"availability_zone_profile": {"name": name, "provider_name": "amphora",
                                         "availability_zone_data": "{}"}}
    assert member.post("/v2/lbaas/availabilityzoneprofiles", azp)[0] == 403
    assert member.get("/v2/lbaas/availabilityzoneprofiles")[0] == 403
    assert member.get("/v2/lbaas/availabilityzones")[0] == 200
    assert member.get("/v2/lbaas/providers")[0] == 200
    assert member.get("/v2/lbaas/providers/amphora/flavor_capabilities")[0] == 403
    assert member.get("/v2/lbaas/providers/amphora/availability_zone_capabilities")[0] == 403
    assert admin.get("/v2/lbaas/providers/amphora/flavor_capabilities")[0] == 200
    assert member.get("/v2/octavia/amphorae")[0] == 403
    assert admin.get("/v2/octavia/amphorae")[0] == 200
    assert admin.delete(f"/v2/lbaas/flavors/{flavor_id}")[0] == 204
    assert admin.delete(f"/v2/lbaas/flavorprofiles/{fp_id}")[0] == 204


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/v2/lbaas/quotas/a%00b"), ("GET", "/v2/lbaas/quotas/a%00b"),
    ("DELETE", "/v2/lbaas/quotas/a%00b"), ("GET", "/v2/lbaas/quotas?project_id=a%00b"),
    ("GET", "/v2/lbaas/availabilityzones/a%00b"), ("GET", "/v2/lbaas/flavors?name=a%00b"),
    ("GET", "/v2/octavia/amphorae/a%00b"),
])
def test_nul_in_url_is_a_400(api, method, path):
    """PostgreSQL cannot compare a NUL: refused before any lookup, on every backend."""
    status, body = api.call(method, path, {"quota": {}} if method == "PUT" else None)
    assert status == 400
    assert "NUL characters are not allowed." in body["faultstring"]
