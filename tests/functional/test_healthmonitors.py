"""Health monitors through the HTTP API, openstacksdk and the openstack CLI: shapes as
Octavia answers them, type rules per pool protocol, HTTP fields, locking and listing."""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import Any

import pytest

from tests import servers
from tests.functional.test_members import add_member, make_pool, status_of

SAMPLES = pathlib.Path(__file__).resolve().parents[3] / "shared/docs/octavia-api-samples"
HM_KEYS = set(json.loads((SAMPLES / "05_healthmonitor_create.json").read_text())
              ["response"]["body"]["healthmonitor"])
HMS = "/v2/lbaas/healthmonitors"


def create_hm(api: Any, pool: str, /, **fields: Any) -> tuple[int, Any]:
    body = {"pool_id": pool, "type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 3,
            **fields}
    return api.post(HMS, {"healthmonitor": body})


def add_hm(api: Any, pool: str, lb_id: str, /, **fields: Any) -> dict[str, Any]:
    status, out = create_hm(api, pool, **fields)
    assert status == 201, out
    api.settle(lb_id)
    return out["healthmonitor"]


# --- create ---------------------------------------------------------------------------


def test_create_matches_octavia_shape_and_locks_the_tree(api):
    lb, pool, listener_id = make_pool(api)
    status, out = create_hm(api, pool["id"], name="sample-hm", http_method="GET",
                            url_path="/healthz", expected_codes="200")
    assert status == 201, out
    hm = out["healthmonitor"]
    assert set(hm) == HM_KEYS
    assert (hm["provisioning_status"], hm["operating_status"]) == ("PENDING_CREATE", "OFFLINE")
    assert hm["pools"] == [{"id": pool["id"]}]
    assert (hm["max_retries"], hm["max_retries_down"], hm["url_path"],
            hm["http_version"], hm["domain_name"], hm["tags"], hm["admin_state_up"],
            hm["updated_at"]) == (3, 3, "/healthz", None, None, [], True, None)
    assert hm["project_id"] == hm["tenant_id"] == lb["project_id"]
    for kind, obj_id in (("loadbalancer", lb["id"]), ("pool", pool["id"]),
                         ("listener", listener_id)):
        assert status_of(api, kind, obj_id) == "PENDING_UPDATE", kind
    api.settle(lb["id"])
    status, out = api.get(f"{HMS}/{hm['id']}")
    assert status == 200
    assert (out["healthmonitor"]["provisioning_status"],
            out["healthmonitor"]["operating_status"]) == ("ACTIVE", "ONLINE")
    status, out = api.get(f"/v2/lbaas/pools/{pool['id']}")
    assert out["pool"]["healthmonitor_id"] == hm["id"]


def test_http_defaults_and_non_http_nulls(api):
    lb, pool, _ = make_pool(api, listener=False)
    hm = add_hm(api, pool["id"], lb["id"], type="HTTPS")
    assert (hm["http_method"], hm["url_path"], hm["expected_codes"]) == ("GET", "/", "200")
    _, tcp_pool, _ = make_pool(api, protocol="TCP", listener=False, lb=lb)
    hm = add_hm(api, tcp_pool["id"], lb["id"], type="TLS-HELLO", max_retries_down=10,
                admin_state_up=False, tags=["t"])
    assert (hm["http_method"], hm["url_path"], hm["expected_codes"]) == (None, None, None)
    assert (hm["max_retries_down"], hm["admin_state_up"], hm["tags"]) == (10, False, ["t"])
    _, out = api.get(f"{HMS}/{hm['id']}")
    assert out["healthmonitor"]["operating_status"] == "OFFLINE"


@pytest.mark.parametrize("field,value", [
    ("http_method", "GET"), ("url_path", "/"), ("expected_codes", "200")])
def test_http_fields_only_for_http_types(api, field, value):
    _, pool, _ = make_pool(api, protocol="TCP", listener=False)
    status, out = create_hm(api, pool["id"], type="TCP", **{field: value})
    assert status == 400
    assert out["faultstring"] == f"{field} is not a valid option for health monitors of type TCP"


def test_http_version_and_domain_name(api):
    lb, pool, _ = make_pool(api, listener=False)
    status, out = create_hm(api, pool["id"], domain_name="example.com")
    assert (status, out["faultstring"]) == (
        400, "Validation failure: health monitors domain_name requires http_version.")
    status, out = create_hm(api, pool["id"], domain_name="example.com", http_version=1.0)
    assert status == 400
    assert out["faultstring"] == ("http_version 1.0 is not a valid option for health "
                                  "monitors HTTP 1.1 domain name health check")
    hm = add_hm(api, pool["id"], lb["id"], domain_name="www.example-1.com", http_version=1.1,
                http_method="HEAD", url_path="/status?full=1", expected_codes="200-204")
    assert (hm["http_version"], hm["domain_name"], hm["http_method"], hm["url_path"],
            hm["expected_codes"]) == (1.1, "www.example-1.com", "HEAD", "/status?full=1",
                                      "200-204")


@pytest.mark.parametrize("pool_protocol,hm_type,delay,ok", [
    ("HTTP", "HTTP", 5, True), ("HTTP", "PING", 5, True), ("TCP", "TLS-HELLO", 5, True),
    ("PROXY", "TCP", 5, True), ("HTTP", "UDP-CONNECT", 5, False), ("TCP", "SCTP", 5, False),
    ("UDP", "UDP-CONNECT", 3, True), ("UDP", "UDP-CONNECT", 2, False),
    ("UDP", "HTTP", 1, True), ("UDP", "TCP", 5, True), ("UDP", "SCTP", 5, True),
    ("UDP", "PING", 5, False), ("UDP", "HTTPS", 5, False), ("UDP", "TLS-HELLO", 5, False),
])
def test_type_per_pool_protocol(api, pool_protocol, hm_type, delay, ok):
    lb, pool, _ = make_pool(api, protocol=pool_protocol, listener=False)
    status, out = create_hm(api, pool["id"], type=hm_type, delay=delay)
    if ok:
        assert status == 201, out
        api.settle(lb["id"])
        return
    assert status == 400, out
    if pool_protocol in ("UDP", "SCTP") and hm_type == "UDP-CONNECT":
        assert out["faultstring"] == (
            f"Validation failure: The request delay value {delay} should be larger than 3 "
            "for UDP-CONNECT health monitor type.")
    elif pool_protocol in ("UDP", "SCTP"):
        assert out["faultstring"] == (
            f"Validation failure: The associated pool protocol is {pool_protocol}, so only "
            "a UDP-CONNECT/SCTP/TCP/HTTP health monitor is supported.")
    else:
        assert out["faultstring"] == (
            f"Validation failure: The {hm_type} type is only supported for pools of type "
            "UDP/SCTP.")
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"


@pytest.mark.parametrize("fields,needle", [
    ({"type": "BOGUS"}, "type"),
    ({"type": None}, "type"),
    ({"delay": -1}, "delay"),
    ({"delay": "five"}, "delay"),
    ({"delay": 1.5}, "delay"),
    ({"delay": 2**31}, "delay"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": None}, "timeout"),
    ({"max_retries": 0}, "max_retries"),
    ({"max_retries": 11}, "max_retries"),
    ({"max_retries_down": 0}, "max_retries_down"),
    ({"max_retries_down": 11}, "max_retries_down"),
    ({"http_method": "FETCH"}, "http_method"),
    ({"url_path": "healthz"}, "url_path"),
    ({"url_path": "http://example.com/"}, "url_path"),
    ({"url_path": "//example.com/x"}, "url_path"),
    ({"url_path": "/a b"}, "url_path"),
    ({"url_path": "/a\nb"}, "url_path"),
    ({"url_path": "/" + "a" * 2048}, "url_path"),
    ({"expected_codes": "20"}, "expected_codes"),
    ({"expected_codes": "200-"}, "expected_codes"),
    ({"expected_codes": "abc"}, "expected_codes"),
    ({"expected_codes": "200\n201"}, "expected_codes"),
    ({"expected_codes": 200}, "expected_codes"),
    ({"http_version": 2.0}, "http_version"),
    ({"http_version": "1.1"}, "http_version"),
    ({"http_version": True}, "http_version"),
    ({"domain_name": "-bad.example.com"}, "domain_name"),
    ({"domain_name": "a b"}, "domain_name"),
    ({"domain_name": "under_score.example.com"}, "domain_name"),
    ({"domain_name": ""}, "domain_name"),
    ({"name": "n" * 256}, "name"),
    ({"admin_state_up": "no"}, "admin_state_up"),
    ({"tags": [1]}, "tags"),
    ({"pool_id": "nope"}, "pool_id"),
    ({"pool_id": None}, "pool_id"),
    ({"color": "red"}, "color"),
])
def test_bad_input_is_400_naming_the_field(api, fields, needle):
    lb, pool, _ = make_pool(api, listener=False)
    status, out = create_hm(api, pool["id"], **fields)
    assert status == 400, out
    assert needle in out["faultstring"], out
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"


@pytest.mark.parametrize("codes", ["200", "200,201", "200, 202,204", "200-299"])
def test_expected_codes_formats(api, codes):
    lb, pool, _ = make_pool(api, listener=False)
    assert add_hm(api, pool["id"], lb["id"], expected_codes=codes)["expected_codes"] == codes


def test_missing_fields_pool_not_found_and_duplicate(api):
    lb, pool, _ = make_pool(api, listener=False)
    for name in ("pool_id", "type", "delay", "timeout", "max_retries"):
        body = {"pool_id": pool["id"], "type": "HTTP", "delay": 5, "timeout": 3,
                "max_retries": 3}
        body.pop(name)
        status, out = api.post(HMS, {"healthmonitor": body})
        assert status == 400 and name in out["faultstring"], out
    missing = str(uuid.uuid4())
    status, out = create_hm(api, missing)
    assert (status, out["faultstring"]) == (404, f"Pool {missing} not found.")
    add_hm(api, pool["id"], lb["id"])
    status, out = create_hm(api, pool["id"], type="PING")
    assert (status, out["faultstring"]) == (409, "This pool already has a health monitor")


def test_locks(api):
    lb, pool, _ = make_pool(api, listener=False)
    add_member(api, pool, lb["id"])
    status, out = api.post(f"/v2/lbaas/pools/{pool['id']}/members", {"member": {
        "address": "198.18.64.5", "protocol_port": 80}})
    assert status == 201
    status, out = create_hm(api, pool["id"])
    assert (status, out["faultstring"]) == (
        409, f"Pool {pool['id']} is immutable and cannot be updated.")
    api.settle(lb["id"])
    assert api.put(f"/v2/lbaas/loadbalancers/{lb['id']}",
                   {"loadbalancer": {"name": "busy"}})[0] == 200
    status, out = create_hm(api, pool["id"])
    assert (status, out["faultstring"]) == (
        409, f"Load Balancer {lb['id']} is immutable and cannot be updated.")
    api.settle(lb["id"])


# --- update and delete ----------------------------------------------------------------


def test_update_and_null_resets(api):
    lb, pool, listener_id = make_pool(api)
    hm = add_hm(api, pool["id"], lb["id"], name="h", http_method="POST", url_path="/x",
                expected_codes="201", max_retries_down=5, http_version=1.1,
                domain_name="example.com", tags=["a"])
    path = f"{HMS}/{hm['id']}"
    status, out = api.put(path, {"healthmonitor": {
        "delay": 10, "timeout": 8, "max_retries": 9, "name": "h2", "admin_state_up": False}})
    assert status == 200, out
    got = out["healthmonitor"]
    assert set(got) == HM_KEYS
    assert (got["delay"], got["timeout"], got["max_retries"], got["name"],
            got["admin_state_up"], got["provisioning_status"]) == (
        10, 8, 9, "h2", False, "PENDING_UPDATE")
    for kind, obj_id in (("loadbalancer", lb["id"]), ("pool", pool["id"]),
                         ("listener", listener_id)):
        assert status_of(api, kind, obj_id) == "PENDING_UPDATE", kind
    api.settle(lb["id"])
    status, out = api.put(path, {"healthmonitor": {
        "http_method": None, "url_path": None, "expected_codes": None,
        "max_retries_down": None, "name": None, "tags": None, "domain_name": None,
        "http_version": None}})
    assert status == 200, out
    got = out["healthmonitor"]
    assert (got["http_method"], got["url_path"], got["expected_codes"],
            got["max_retries_down"], got["name"], got["tags"], got["domain_name"],
            got["http_version"]) == ("GET", "/", "200", 3, "", [], None, None)
    api.settle(lb["id"])
    status, out = api.get(path)
    assert out["healthmonitor"]["operating_status"] == "OFFLINE"


@pytest.mark.parametrize("fields,needle", [
    ({"delay": None}, "delay"),
    ({"timeout": None}, "timeout"),
    ({"max_retries": None}, "max_retries"),
    ({"max_retries": 11}, "max_retries"),
    ({"type": "TCP"}, "type"),
    ({"pool_id": str(uuid.uuid4())}, "pool_id"),
    ({"url_path": "x"}, "url_path"),
    ({"domain_name": "example.com"}, "domain_name"),
])
def test_update_refusals(api, fields, needle):
    lb, pool, _ = make_pool(api, listener=False)
    hm = add_hm(api, pool["id"], lb["id"])
    status, out = api.put(f"{HMS}/{hm['id']}", {"healthmonitor": fields})
    assert status == 400 and needle in out["faultstring"], out
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"


def test_update_rules_of_the_type(api):
    lb, pool, _ = make_pool(api, protocol="UDP", listener=False)
    hm = add_hm(api, pool["id"], lb["id"], type="UDP-CONNECT", delay=3)
    path = f"{HMS}/{hm['id']}"
    status, out = api.put(path, {"healthmonitor": {"delay": 1}})
    assert status == 400 and "delay value 1" in out["faultstring"]
    status, out = api.put(path, {"healthmonitor": {"http_method": None}})
    assert (status, out["faultstring"]) == (
        400, "http_method is not a valid option for health monitors of type UDP-CONNECT")
    assert api.put(path, {"healthmonitor": {"delay": 4}})[0] == 200
    api.settle(lb["id"])


def test_delete_resets_members_to_no_monitor(api):
    lb, pool, listener_id = make_pool(api)
    hm = add_hm(api, pool["id"], lb["id"])
    member = add_member(api, pool, lb["id"])
    assert member["operating_status"] == "OFFLINE"
    path = f"{HMS}/{hm['id']}"
    assert api.delete(path)[0] == 204
    status, out = api.get(path)
    assert out["healthmonitor"]["provisioning_status"] == "PENDING_DELETE"
    assert status_of(api, "listener", listener_id) == "PENDING_UPDATE"
    assert api.delete(path)[0] == 409
    api.settle(lb["id"])
    status, out = api.get(path)
    assert (status, out["faultstring"]) == (404, f"Health Monitor {hm['id']} not found.")
    status, out = api.get(f"/v2/lbaas/pools/{pool['id']}/members/{member['id']}")
    assert out["member"]["operating_status"] == "NO_MONITOR"
    assert api.put(path, {"healthmonitor": {"name": "x"}})[0] == 404
    assert api.delete(path)[0] == 404
    # The pool takes a new monitor.
    add_hm(api, pool["id"], lb["id"], type="TCP")


# --- listing --------------------------------------------------------------------------


def test_list_pagination_sorting_filters_fields_and_tags(api):
    lb = api.create_lb(name="hm-list")
    made = []
    for i, hm_type in enumerate(("HTTP", "TCP", "PING", "HTTP")):
        _, pool, _ = make_pool(api, listener=False, lb=lb)
        made.append(add_hm(api, pool["id"], lb["id"], type=hm_type, delay=10 + i,
                           max_retries=1 + i, name=f"hm-list-{i}",
                           tags=["even"] if i % 2 == 0 else ["odd"]))
    ids = [x["id"] for x in made]

    def names(**params: Any) -> list[str]:
        status, out = api.get(HMS, **params)
        assert status == 200, out
        return [x["name"] for x in out["healthmonitors"] if x["id"] in ids]

    assert names() == [f"hm-list-{i}" for i in range(4)]
    assert names(type="HTTP") == ["hm-list-0", "hm-list-3"]
    assert names(pool_id=made[2]["pools"][0]["id"]) == ["hm-list-2"]
    assert names(max_retries="3") == ["hm-list-2"]
    assert names(delay="11", admin_state_up="true") == ["hm-list-1"]
    assert names(http_method="GET", expected_codes="200") == ["hm-list-0", "hm-list-3"]
    assert names(sort="delay:desc") == [f"hm-list-{i}" for i in (3, 2, 1, 0)]
    assert names(tags="odd") == ["hm-list-1", "hm-list-3"]
    assert names(**{"not-tags-any": "odd"}) == ["hm-list-0", "hm-list-2"]
    assert names(name="hm-list-2") == ["hm-list-2"]
    assert names(project_id=lb["project_id"], id=ids[0]) == ["hm-list-0"]

    _, out = api.get(HMS, limit=2, sort="delay:desc")
    assert len(out["healthmonitors"]) == 2
    assert [link["rel"] for link in out["healthmonitors_links"]] == ["next"]
    marker = out["healthmonitors"][-1]["id"]
    _, out = api.get(HMS, limit=2, sort="delay:desc", marker=marker)
    assert {link["rel"] for link in out["healthmonitors_links"]} >= {"previous"}
    _, out = api.get(HMS, fields=["id", "pools"], id=ids[1])
    assert out["healthmonitors"] == [{"id": ids[1], "pools": made[1]["pools"]}]
    _, out = api.get(f"{HMS}/{ids[1]}", fields="type")
    assert out == {"healthmonitor": {"type": "TCP"}}
    assert api.get(HMS, color="red")[0] == 400
    assert api.get(HMS, sort="color")[0] == 400


# --- configuration --------------------------------------------------------------------


def test_ping_disabled_and_udp_minimum_by_configuration(server, tmp_path):
    extra = ("[api_settings]\nallow_ping_health_monitors = false\n"
             "udp_connect_min_interval_health_monitor = 10\n")
    tag = f"hmconf{uuid.uuid4().hex[:6]}"
    with servers.running_api(server.backend, tmp_path, tag, extra_config=extra) as srv:
        api = servers.Client(srv)
        lb, pool, _ = make_pool(api, listener=False)
        status, out = create_hm(api, pool["id"], type="PING")
        assert (status, out["faultstring"]) == (
            400, "The selected type is not allowed in this deployment: PING")
        _, udp_pool, _ = make_pool(api, protocol="UDP", listener=False, lb=lb)
        status, out = create_hm(api, udp_pool["id"], type="UDP-CONNECT", delay=9)
        assert status == 400 and "larger than 10" in out["faultstring"]
        add_hm(api, udp_pool["id"], lb["id"], type="UDP-CONNECT", delay=10)


# --- clients --------------------------------------------------------------------------


def test_sdk_create_show_list_update_delete(sdk, api):
    lb, pool, _ = make_pool(api, listener=False)
    hm = sdk.create_health_monitor(pool_id=pool["id"], type="HTTP", delay=5, timeout=3,
                                   max_retries=2, url_path="/ok", name="sdk-hm")
    assert hm.provisioning_status == "PENDING_CREATE" and hm.pools == [{"id": pool["id"]}]
    api.settle(lb["id"])
    got = sdk.get_health_monitor(hm.id)
    assert (got.name, got.url_path, got.max_retries_down, got.expected_codes) == (
        "sdk-hm", "/ok", 3, "200")
    assert [x.id for x in sdk.health_monitors(pool_id=pool["id"])] == [hm.id]
    assert [x.id for x in sdk.health_monitors(name="sdk-hm", type="HTTP")] == [hm.id]
    updated = sdk.update_health_monitor(hm, delay=7, expected_codes="200-202")
    assert (updated.delay, updated.expected_codes) == (7, "200-202")
    api.settle(lb["id"])
    sdk.delete_health_monitor(hm)
    api.settle(lb["id"])
    assert sdk.find_health_monitor(hm.id) is None


def test_cli_create_show_list_set_unset_delete(cli, api):
    lb, pool, _ = make_pool(api, listener=False)
    hm = cli("loadbalancer", "healthmonitor", "create", "--name", "cli-hm", "--delay", "5",
             "--timeout", "3", "--max-retries", "3", "--type", "HTTP", "--url-path", "/hc",
             "--http-version", "1.1", "--domain-name", "example.com", "--expected-codes",
             "200,202", "--tag", "a", pool["id"])
    assert hm["name"] == "cli-hm" and hm["provisioning_status"] == "PENDING_CREATE"
    api.settle(lb["id"])
    cli.run("loadbalancer", "healthmonitor", "set", "--delay", "9", "--max-retries-down", "7",
            "--http-method", "HEAD", "--disable", "cli-hm")
    shown = cli("loadbalancer", "healthmonitor", "show", hm["id"])
    assert (shown["delay"], shown["max_retries_down"], shown["http_method"],
            shown["admin_state_up"], shown["provisioning_status"]) == (
        9, 7, "HEAD", False, "PENDING_UPDATE")
    api.settle(lb["id"])
    cli.run("loadbalancer", "healthmonitor", "unset", "--domain-name", "--http-method",
            "--expected-codes", "--max-retries-down", "--name", hm["id"])
    shown = cli("loadbalancer", "healthmonitor", "show", hm["id"])
    assert (shown["domain_name"], shown["http_method"], shown["expected_codes"],
            shown["max_retries_down"], shown["name"]) == (None, "GET", "200", 3, "")
    api.settle(lb["id"])
    listed = cli("loadbalancer", "healthmonitor", "list", "--tags", "a")
    assert hm["id"] in [x["id"] for x in listed]
    cli.run("loadbalancer", "healthmonitor", "delete", hm["id"])
    api.settle(lb["id"])
    assert cli.run("loadbalancer", "healthmonitor", "show", hm["id"],
                   check=False).returncode != 0


# --- fuzzing: no input gets a 5xx, a rejected call changes nothing ----------------------


@pytest.mark.parametrize("hm_type", ["HTTP", "UDP-CONNECT"])
def test_fuzz_healthmonitor_create_and_update(api, hm_type):
    from tests.functional.test_fuzz import _fuzz

    protocol = "UDP" if hm_type == "UDP-CONNECT" else "HTTP"
    lb, pool, _ = make_pool(api, protocol=protocol, listener=False)
    valid: dict[str, Any] = {
        "pool_id": pool["id"], "type": hm_type, "delay": 5, "timeout": 3, "max_retries": 3,
        "max_retries_down": 4, "name": "f", "tags": ["a"], "admin_state_up": True}
    if hm_type == "HTTP":
        valid.update(http_method="GET", url_path="/x", expected_codes="200",
                     http_version=1.1, domain_name="example.com")
    state: dict[str, Any] = {}

    def created(out: Any) -> None:
        state["hm"] = out["healthmonitor"]["id"]
        api.settle(lb["id"])
        assert api.delete(f"{HMS}/{state['hm']}")[0] == 204
        api.settle(lb["id"])

    _fuzz(api, "POST", HMS, "healthmonitor", valid, created)
    hm = add_hm(api, pool["id"], lb["id"], **{k: v for k, v in valid.items()
                                            if k != "pool_id"})
    update = {k: v for k, v in valid.items() if k not in ("pool_id", "type")}
    _fuzz(api, "PUT", f"{HMS}/{hm['id']}", "healthmonitor", update,
          lambda out: api.settle(lb["id"]))
