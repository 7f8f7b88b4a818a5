"""The fully populated load balancer create (one POST with the whole tree)."""

from __future__ import annotations

import json
import pathlib

import pytest

from amphorae.contract import nftables
from amphorae.render import haproxy
from tests.functional.test_desired import amphora_folder, read, render_checked
from tests.servers import PUBLIC_SUBNET
from tests.settle import _engine

SAMPLES = pathlib.Path(__file__).resolve().parents[3] / "shared/docs/octavia-api-samples"


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def _keys(obj: object) -> object:
    """The shape of a JSON value: dict keys (recursively), lists by their first item."""
    if isinstance(obj, dict):
        return {k: _keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_keys(obj[0])] if obj else []
    return None


def test_graph_create_matches_octavia_and_status_tree(api):
    sample = _sample("15_loadbalancer_create_graph.json")
    body = sample["request"]["body"]
    body["loadbalancer"]["vip_subnet_id"] = PUBLIC_SUBNET
    status, out = api.post("/v2/lbaas/loadbalancers", body)
    assert status == 201, out
    assert _keys(out) == _keys(sample["response"]["body"])
    lb = out["loadbalancer"]
    listener, pool = lb["listeners"][0], lb["pools"][0]
    assert listener["default_pool_id"] == pool["id"]
    assert pool["listeners"] == [{"id": listener["id"]}]
    assert {x["provisioning_status"] for x in [lb, listener, pool, pool["healthmonitor"],
                                               *pool["members"]]} == {"PENDING_CREATE"}
    api.settle(lb["id"])
    status, tree = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}/status")
    assert status == 200
    assert _keys(tree) == _keys(_sample("16_graph_status_tree.json")["response"]["body"])
    node = tree["statuses"]["loadbalancer"]["listeners"][0]["pools"][0]
    assert node["health_monitor"]["operating_status"] == "ONLINE"
    assert len(node["members"]) == 2


def test_graph_with_l7_and_references(api):
    web = {"name": "web", "protocol": "HTTP", "lb_algorithm": "LEAST_CONNECTIONS",
           "members": [{"address": "198.18.64.10", "protocol_port": 80}]}
    api_pool = {"name": "api", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                "healthmonitor": {"type": "HTTP", "delay": 2, "timeout": 1, "max_retries": 2}}
    body = {"loadbalancer": {
        "name": "k8s", "vip_subnet_id": PUBLIC_SUBNET, "pools": [web],
        "listeners": [{
            "name": "http", "protocol": "HTTP", "protocol_port": 80,
            "default_pool": {"name": "web"},
            "l7policies": [{"action": "REDIRECT_TO_POOL", "redirect_pool": api_pool,
                            "rules": [{"type": "PATH", "compare_type": "STARTS_WITH",
                                       "value": "/api"}]},
                           {"action": "REJECT", "position": 1,
                            "rules": [{"type": "HEADER", "key": "X-Bad",
                                       "compare_type": "EQUAL_TO", "value": "1"}]}],
        }],
    }}
    status, out = api.post("/v2/lbaas/loadbalancers", body)
    assert status == 201, out
    lb = out["loadbalancer"]
    pools = {p["name"]: p for p in lb["pools"]}
    assert set(pools) == {"web", "api"}
    policies = lb["listeners"][0]["l7policies"]
    assert [p["action"] for p in policies] == ["REJECT", "REDIRECT_TO_POOL"]
    assert policies[1]["redirect_pool_id"] == pools["api"]["id"]
    assert policies[1]["rules"][0]["value"] == "/api"
    api.settle(lb["id"])
    _, tree = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}/status")
    reached = tree["statuses"]["loadbalancer"]["listeners"][0]["pools"]
    assert [p["name"] for p in reached] == ["web", "api"]
    assert reached[0]["health_monitor"] is None  # as Octavia has it, not left out
    status, _ = api.delete(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert status == 400
    assert api.delete(f"/v2/lbaas/loadbalancers/{lb['id']}", cascade="true")[0] == 204
    api.settle(lb["id"])
    assert api.get(f"/v2/lbaas/pools/{pools['web']['id']}")[0] == 404


def test_graph_with_unnamed_pools(api):
    """Octavia takes inline pools without a name: each is its own place's definition."""
    unnamed = {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
               "members": [{"address": "198.18.64.11", "protocol_port": 80}]}
    status, out = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "vip_subnet_id": PUBLIC_SUBNET, "listeners": [
            {"protocol": "HTTP", "protocol_port": 80, "default_pool": dict(unnamed)},
            {"protocol": "HTTP", "protocol_port": 81, "default_pool": dict(unnamed)}]}})
    assert status == 201, out
    lb = out["loadbalancer"]
    assert len(lb["pools"]) == 2 and {p["name"] for p in lb["pools"]} == {""}
    assert {listener["default_pool_id"] for listener in lb["listeners"]} == {
        p["id"] for p in lb["pools"]}
    api.settle(lb["id"])
    assert api.delete(f"/v2/lbaas/loadbalancers/{lb['id']}", cascade="true")[0] == 204
    api.settle(lb["id"])


def test_graph_with_source_ip_port_pools_renders_them(api):
    # (listener, pool) protocols: every pool protocol the amphora balances.
    pairs = [("HTTP", "HTTP"), ("TCP", "TCP"), ("HTTPS", "HTTPS"), ("TCP", "PROXY"),
             ("HTTP", "PROXYV2"), ("UDP", "UDP")]
    listeners = [{
        "protocol": listener_protocol, "protocol_port": port,
        "default_pool": {"name": f"sip-{port}", "protocol": pool_protocol,
                         "lb_algorithm": "SOURCE_IP_PORT",
                         "members": [{"address": f"198.18.64.{host}", "protocol_port": 80}
                                     for host in (10, 11)]},
    } for port, (listener_protocol, pool_protocol) in enumerate(pairs, start=8001)]
    status, out = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "name": "sip-graph", "vip_subnet_id": PUBLIC_SUBNET, "listeners": listeners}})
    assert status == 201, out
    lb_id = out["loadbalancer"]["id"]
    assert [p["lb_algorithm"] for p in out["loadbalancer"]["pools"]] == ["SOURCE_IP_PORT"] * 6
    api.settle(lb_id)
    lb = read(_engine(api.server.db_url), lb_id)
    with amphora_folder() as folder:
        text = render_checked(lb, folder)
    # One backend per HAProxy listener, each hashing client address and port.
    backends = text.split("\nbackend ")[1:]
    assert len(backends) == 5, text
    for backend in backends:
        assert f"    balance {haproxy.SOURCE_IP_PORT_BALANCE}\n" in backend, backend
        assert "    tcp-request content set-var(txn.src_port) src_port\n" in backend, backend
    assert " jhash ip saddr . udp sport mod 2 " in nftables.render(lb)


@pytest.mark.parametrize("listeners,pools,needle", [
    ([{"protocol": "HTTP", "protocol_port": 80, "default_pool": {"protocol": "HTTP"}}],
     [], "pool (unnamed).lb_algorithm"),
    ([{"protocol": "HTTP", "protocol_port": 80, "default_pool": {"name": "ghost"}}], [],
     "ghost"),
    ([], [{"name": "p"}], "p"),
    ([], [{"name": "p", "protocol": "HTTP"}], "lb_algorithm"),
    ([], [{"name": "p", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
           "members": [{"address": "198.18.64.1", "protocol_port": 0}]}], "protocol_port"),
    ([], [{"name": "p", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
           "healthmonitor": {"type": "UDP-CONNECT", "delay": 5, "timeout": 3,
                             "max_retries": 3}}], "UDP-CONNECT"),
    ([{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
        "name": "t", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}}], [], "TCP"),
    ([{"protocol": "HTTP", "protocol_port": 70000}], [], "protocol_port"),
    ([{"protocol": "HTTP", "protocol_port": 80, "colour": 1}], [], "colour"),
])
def test_bad_graphs_are_400_and_store_nothing(api, listeners, pools, needle):
    _, before = api.get("/v2/lbaas/loadbalancers", name="bad-graph")
    status, out = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "name": "bad-graph", "vip_subnet_id": PUBLIC_SUBNET, "listeners": listeners,
        "pools": pools}})
    assert status == 400, out
    assert needle in out["faultstring"], out
    _, after = api.get("/v2/lbaas/loadbalancers", name="bad-graph")
    assert after["loadbalancers"] == before["loadbalancers"]
