"""Pool members through the HTTP API, openstacksdk and the openstack CLI: shapes as Octavia
answers them, validation, locking, listing and the batch update."""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import Any

import pytest

from tests.servers import MEMBER_SUBNET, PUBLIC_SUBNET

SAMPLES = pathlib.Path(__file__).resolve().parents[3] / "shared/docs/octavia-api-samples"
MEMBER_KEYS = set(json.loads((SAMPLES / "04_member1_create.json").read_text())
                  ["response"]["body"]["member"])
LISTENER_FOR_POOL = {"HTTP": "HTTP", "HTTPS": "HTTPS", "TCP": "TCP", "PROXY": "TCP",
                     "UDP": "UDP", "SCTP": "SCTP"}


def make_pool(api: Any, protocol: str = "HTTP", listener: bool = True,
              lb: dict[str, Any] | None = None, port: int = 80,
              **lb_fields: Any) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """An ACTIVE load balancer with (optionally) a listener and a pool of ``protocol``."""
    lb = lb or api.create_lb(**lb_fields)
    listener_id = None
    pool_body: dict[str, Any] = {"protocol": protocol, "lb_algorithm": "ROUND_ROBIN"}
    if listener:
        status, out = api.post("/v2/lbaas/listeners", {"listener": {
            "loadbalancer_id": lb["id"], "protocol": LISTENER_FOR_POOL[protocol],
            "protocol_port": port}})
        assert status == 201, out
        listener_id = out["listener"]["id"]
        api.settle(lb["id"])
        pool_body["listener_id"] = listener_id
    else:
        pool_body["loadbalancer_id"] = lb["id"]
    status, out = api.post("/v2/lbaas/pools", {"pool": pool_body})
    assert status == 201, out
    api.settle(lb["id"])
    return lb, out["pool"], listener_id


def members_path(pool_id: str) -> str:
    return f"/v2/lbaas/pools/{pool_id}/members"


def add_member(api: Any, pool: dict[str, Any], lb_id: str, **fields: Any) -> dict[str, Any]:
    body = {"address": "198.18.64.10", "protocol_port": 8080, **fields}
    status, out = api.post(members_path(pool["id"]), {"member": body})
    assert status == 201, out
    api.settle(lb_id)
    return out["member"]


def status_of(api: Any, kind: str, obj_id: str) -> str:
    status, out = api.get(f"/v2/lbaas/{kind}s/{obj_id}")
    assert status == 200, out
    return out[kind]["provisioning_status"]


# --- create ---------------------------------------------------------------------------


def test_create_matches_octavia_shape_and_locks_the_tree(api):
    lb, pool, listener_id = make_pool(api)
    status, body = api.post(members_path(pool["id"]), {"member": {
        "name": "sample-m1", "address": "198.18.64.11", "protocol_port": 8080, "weight": 1}})
    assert status == 201, body
    member = body["member"]
    assert set(member) == MEMBER_KEYS
    assert "pool_id" not in member
    assert member["provisioning_status"] == "PENDING_CREATE"
    assert member["operating_status"] == "NO_MONITOR"
    assert member["project_id"] == member["tenant_id"] == lb["project_id"]
    assert (member["backup"], member["subnet_id"], member["monitor_address"],
            member["monitor_port"], member["tags"], member["vnic_type"],
            member["admin_state_up"], member["updated_at"]) == (
        False, None, None, None, [], "normal", True, None)
    assert status_of(api, "loadbalancer", lb["id"]) == "PENDING_UPDATE"
    assert status_of(api, "pool", pool["id"]) == "PENDING_UPDATE"
    assert status_of(api, "listener", listener_id) == "PENDING_UPDATE"
    api.settle(lb["id"])
    status, shown = api.get(f"{members_path(pool['id'])}/{member['id']}")
    assert status == 200 and shown["member"]["provisioning_status"] == "ACTIVE"
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"
    assert status_of(api, "pool", pool["id"]) == "ACTIVE"
    assert status_of(api, "listener", listener_id) == "ACTIVE"


def test_all_fields_and_addresses_kept_as_written(api):
    lb, pool, _ = make_pool(api, listener=False)
    member = add_member(api, pool, lb["id"], name="full", address="fd00:198:18::0010",
                        protocol_port=443, weight=0, backup=True, subnet_id=MEMBER_SUBNET,
                        monitor_address="198.18.64.99", monitor_port=9000,
                        admin_state_up=False, tags=["b", "a"])
    assert member["address"] == "fd00:198:18::0010"  # as Octavia stores it
    assert (member["weight"], member["backup"], member["subnet_id"],
            member["monitor_address"], member["monitor_port"], member["admin_state_up"],
            member["tags"]) == (0, True, MEMBER_SUBNET, "198.18.64.99", 9000, False,
                                ["a", "b"])


def test_member_is_offline_when_the_pool_has_a_monitor(api):
    lb, pool, _ = make_pool(api, listener=False)
    status, out = api.post("/v2/lbaas/healthmonitors", {"healthmonitor": {
        "pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}})
    assert status == 201, out
    api.settle(lb["id"])
    member = add_member(api, pool, lb["id"])
    assert member["operating_status"] == "OFFLINE"


@pytest.mark.parametrize("fields,needle", [
    ({"address": None}, "address"),
    ({"address": "198.18.64"}, "address"),
    ({"address": "fe80::1%eth0"}, "address"),
    ({"address": 5}, "address"),
    ({"protocol_port": 0}, "protocol_port"),
    ({"protocol_port": 65536}, "protocol_port"),
    ({"protocol_port": "eighty"}, "protocol_port"),
    ({"protocol_port": True}, "protocol_port"),
    ({"weight": -1}, "weight"),
    ({"weight": 257}, "weight"),
    ({"weight": 1.5}, "weight"),
    ({"weight": "heavy"}, "weight"),
    ({"backup": "yes"}, "backup"),
    ({"subnet_id": "not-a-uuid"}, "subnet_id"),
    ({"monitor_address": "nope"}, "monitor_address"),
    ({"monitor_port": 0}, "monitor_port"),
    ({"name": "n" * 256}, "name"),
    ({"tags": "a"}, "tags"),
    ({"tags": ["t" * 256]}, "tags"),
    ({"admin_state_up": "true"}, "admin_state_up"),
    ({"request_sriov": "x"}, "request_sriov"),
    ({"vnic_type": "direct"}, "vnic_type"),
    ({"pool_id": str(uuid.uuid4())}, "pool_id"),
    ({"color": "red"}, "color"),
])
def test_bad_input_is_400_naming_the_field(api, fields, needle):
    lb, pool, _ = make_pool(api, listener=False)
    body = {"address": "198.18.64.10", "protocol_port": 80, **fields}
    status, out = api.post(members_path(pool["id"]), {"member": body})
    assert status == 400, out
    assert needle in out["faultstring"], out
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"


def test_missing_required_fields(api):
    _, pool, _ = make_pool(api, listener=False)
    for body, needle in (({"protocol_port": 80}, "address"),
                         ({"address": "198.18.64.1"}, "protocol_port")):
        status, out = api.post(members_path(pool["id"]), {"member": body})
        assert status == 400 and needle in out["faultstring"], out
    status, out = api.post(members_path(pool["id"]), {"pool": {}})
    assert status == 400 and "member" in out["faultstring"]


def test_semantic_refusals(api):
    lb, pool, _ = make_pool(api, listener=False)
    path = members_path(pool["id"])
    status, out = api.post(path, {"member": {"address": "169.254.169.254", "protocol_port": 80}})
    assert status == 400
    assert out["faultstring"] == "169.254.169.254 is not a valid option for member address"
    missing = str(uuid.uuid4())
    status, out = api.post(path, {"member": {"address": "198.18.64.3", "protocol_port": 80,
                                             "subnet_id": missing}})
    assert (status, out["faultstring"]) == (400, f"Subnet {missing} not found.")
    status, out = api.post(path, {"member": {"address": "198.18.64.3", "protocol_port": 80,
                                             "request_sriov": True}})
    assert (status, out["faultstring"]) == (
        400, "The load balancer flavor does not allow SR-IOV member ports.")
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"


def test_request_sriov_with_a_flavor_that_allows_it(api):
    status, prof = api.post("/v2/lbaas/flavorprofiles", {"flavorprofile": {
        "name": "sriov-members", "provider_name": "amphora",
        "flavor_data": json.dumps({"allow_member_sriov": True})}})
    assert status == 201, prof
    status, flavor = api.post("/v2/lbaas/flavors", {"flavor": {
        "name": f"sriov-{uuid.uuid4().hex[:8]}",
        "flavor_profile_id": prof["flavorprofile"]["id"]}})
    assert status == 201, flavor
    lb, pool, _ = make_pool(api, listener=False, flavor_id=flavor["flavor"]["id"])
    member = add_member(api, pool, lb["id"], request_sriov=True)
    assert member["vnic_type"] == "direct"


def test_duplicate_address_and_port_is_409(api):
    lb, pool, _ = make_pool(api, listener=False)
    add_member(api, pool, lb["id"], address="198.18.64.20", protocol_port=80)
    status, out = api.post(members_path(pool["id"]), {"member": {
        "address": "198.18.64.20", "protocol_port": 80}})
    assert status == 409
    assert out["faultstring"] == ("Another member on this pool is already using ip "
                                  "198.18.64.20 on protocol_port 80")
    # Another port, or the same address in another pool, is fine.
    add_member(api, pool, lb["id"], address="198.18.64.20", protocol_port=81)
    _, other, _ = make_pool(api, listener=False, lb=lb)
    add_member(api, other, lb["id"], address="198.18.64.20", protocol_port=80)


def test_udp_pool_refuses_a_member_of_another_family_than_the_vip(api):
    lb, pool, _ = make_pool(api, protocol="UDP", port=53)
    status, out = api.post(members_path(pool["id"]), {"member": {
        "address": "fd00:198:18::20", "protocol_port": 53}})
    assert status == 501, out
    assert out["faultstring"] == (
        "Provider 'amphora' does not support a requested option: This provider doesn't "
        "support mixing IPv4 and IPv6 addresses for its VIP and members in UDP load "
        "balancers.")
    add_member(api, pool, lb["id"], address="198.18.64.20", protocol_port=53)
    # TCP pools mix families freely.
    _, tcp_pool, _ = make_pool(api, protocol="TCP", lb=lb, port=81)
    add_member(api, tcp_pool, lb["id"], address="fd00:198:18::20", protocol_port=80)
    # A UDP pool that serves no listener is not checked (Octavia checks via listeners).
    _, lone, _ = make_pool(api, protocol="UDP", listener=False, lb=lb)
    add_member(api, lone, lb["id"], address="fd00:198:18::21", protocol_port=53)


def test_locks(api):
    lb, pool, _ = make_pool(api, listener=False)
    path = members_path(pool["id"])
    body = {"member": {"address": "198.18.64.30", "protocol_port": 80}}
    assert api.post(path, body)[0] == 201
    # The pool is PENDING_UPDATE now.
    status, out = api.post(path, {"member": {"address": "198.18.64.31", "protocol_port": 80}})
    assert status == 409
    assert out["faultstring"] == f"Pool {pool['id']} is immutable and cannot be updated."
    api.settle(lb["id"])
    # A pending load balancer with an ACTIVE pool.
    assert api.put(f"/v2/lbaas/loadbalancers/{lb['id']}",
                   {"loadbalancer": {"name": "busy"}})[0] == 200
    status, out = api.post(path, {"member": {"address": "198.18.64.31", "protocol_port": 80}})
    assert status == 409
    assert out["faultstring"] == (f"Load Balancer {lb['id']} is immutable and cannot be "
                                  "updated.")
    api.settle(lb["id"])


def test_not_found(api):
    lb, pool, _ = make_pool(api, listener=False)
    _, other, _ = make_pool(api, listener=False, lb=lb)
    member = add_member(api, pool, lb["id"])
    missing = str(uuid.uuid4())
    status, out = api.post(members_path(missing), {"member": {
        "address": "198.18.64.1", "protocol_port": 80}})
    assert (status, out["description"]) == (404, f"Pool {missing} not found.")
    assert api.get(members_path(missing))[0] == 404
    status, out = api.get(f"{members_path(pool['id'])}/{missing}")
    assert (status, out["faultstring"]) == (404, f"Member {missing} not found.")
    # Through the wrong pool, a member does not exist.
    wrong = f"{members_path(other['id'])}/{member['id']}"
    for method, body in (("GET", None), ("PUT", {"member": {"name": "x"}}),
                         ("DELETE", None)):
        status, out = api.call(method, wrong, body)
        assert (status, out["faultstring"]) == (404, f"Member {member['id']} not found.")


# --- update and delete ----------------------------------------------------------------


def test_update_and_null_resets(api):
    lb, pool, _ = make_pool(api, listener=False)
    member = add_member(api, pool, lb["id"], name="m", weight=7, backup=True,
                        monitor_address="198.18.64.2", monitor_port=81, tags=["x"])
    path = f"{members_path(pool['id'])}/{member['id']}"
    status, out = api.put(path, {"member": {"name": "m2", "weight": 0, "tags": ["y", "z"],
                                            "admin_state_up": False}})
    assert status == 200, out
    updated = out["member"]
    assert set(updated) == MEMBER_KEYS
    assert (updated["name"], updated["weight"], updated["tags"], updated["admin_state_up"],
            updated["backup"], updated["provisioning_status"]) == (
        "m2", 0, ["y", "z"], False, True, "PENDING_UPDATE")
    assert updated["updated_at"] is not None
    assert status_of(api, "loadbalancer", lb["id"]) == "PENDING_UPDATE"
    assert status_of(api, "pool", pool["id"]) == "PENDING_UPDATE"
    api.settle(lb["id"])
    status, out = api.put(path, {"member": {
        "name": None, "weight": None, "backup": None, "monitor_address": None,
        "monitor_port": None, "tags": None, "admin_state_up": True}})
    assert status == 200, out
    reset = out["member"]
    assert (reset["name"], reset["weight"], reset["backup"], reset["monitor_address"],
            reset["monitor_port"], reset["tags"], reset["admin_state_up"]) == (
        "", 1, False, None, None, [], True)
    api.settle(lb["id"])


@pytest.mark.parametrize("fields,needle", [
    ({"address": "198.18.64.9"}, "address"),
    ({"protocol_port": 81}, "protocol_port"),
    ({"subnet_id": MEMBER_SUBNET}, "subnet_id"),
    ({"request_sriov": True}, "request_sriov"),
    ({"weight": 300}, "weight"),
    ({"monitor_port": 70000}, "monitor_port"),
])
def test_update_refuses_immutable_and_bad_fields(api, fields, needle):
    lb, pool, _ = make_pool(api, listener=False)
    member = add_member(api, pool, lb["id"])
    status, out = api.put(f"{members_path(pool['id'])}/{member['id']}", {"member": fields})
    assert status == 400 and needle in out["faultstring"], out
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"


def test_delete(api):
    lb, pool, listener_id = make_pool(api)
    member = add_member(api, pool, lb["id"])
    path = f"{members_path(pool['id'])}/{member['id']}"
    status, _ = api.delete(path)
    assert status == 204
    status, out = api.get(path)
    assert status == 200 and out["member"]["provisioning_status"] == "PENDING_DELETE"
    assert status_of(api, "listener", listener_id) == "PENDING_UPDATE"
    assert api.delete(path)[0] == 409
    api.settle(lb["id"])
    assert api.get(path)[0] == 404
    assert api.delete(path)[0] == 404


# --- listing --------------------------------------------------------------------------


def test_list_pagination_sorting_filters_fields_and_tags(api):
    lb, pool, _ = make_pool(api, listener=False)
    ids = []
    for i in range(5):
        ids.append(add_member(api, pool, lb["id"], address=f"198.18.64.{40 + i}",
                              protocol_port=80 + i % 2, weight=i, name=f"m{i}",
                              tags=["even"] if i % 2 == 0 else ["odd", "x"])["id"])
    _, other, _ = make_pool(api, listener=False, lb=lb)
    add_member(api, other, lb["id"], address="198.18.64.40", protocol_port=80)
    path = members_path(pool["id"])

    status, out = api.get(path)
    assert status == 200 and [x["id"] for x in out["members"]] == ids
    assert out["members_links"] == []

    seen, params = [], {"limit": 2}
    while True:
        status, out = api.get(path, **params)
        assert status == 200
        seen += [x["id"] for x in out["members"]]
        nxt = [link for link in out["members_links"] if link["rel"] == "next"]
        if not nxt:
            break
        params = {"limit": 2, "marker": out["members"][-1]["id"]}
    assert seen == ids

    status, out = api.get(path, sort="weight:desc")
    assert [x["weight"] for x in out["members"]] == [4, 3, 2, 1, 0]
    status, out = api.get(path, address="198.18.64.42")
    assert [x["name"] for x in out["members"]] == ["m2"]
    status, out = api.get(path, protocol_port="81")
    assert [x["name"] for x in out["members"]] == ["m1", "m3"]
    status, out = api.get(path, admin_state_up="true", weight="4")
    assert [x["name"] for x in out["members"]] == ["m4"]
    status, out = api.get(path, name="m3")
    assert [x["id"] for x in out["members"]] == [ids[3]]
    status, out = api.get(path, id=ids[1])
    assert [x["name"] for x in out["members"]] == ["m1"]
    status, out = api.get(path, fields=["id", "address"])
    assert all(set(x) == {"id", "address"} for x in out["members"])
    status, out = api.get(path, tags="odd,x")
    assert [x["name"] for x in out["members"]] == ["m1", "m3"]
    status, out = api.get(path, **{"tags-any": "even,x"})
    assert len(out["members"]) == 5
    status, out = api.get(path, **{"not-tags": "odd"})
    assert [x["name"] for x in out["members"]] == ["m0", "m2", "m4"]
    status, out = api.get(path, **{"not-tags-any": "even,odd"})
    assert out["members"] == []
    assert api.get(path, pool="x")[0] == 400
    assert api.get(path, sort="color")[0] == 400
    status, out = api.get(path, fields="address")
    assert all(set(x) == {"address"} for x in out["members"])


# --- batch update ---------------------------------------------------------------------


def _batch(api: Any, pool_id: str, members: list[dict[str, Any]],
           **params: Any) -> tuple[int, Any]:
    return api.put(members_path(pool_id), {"members": members}, **params)


def _by_address(api: Any, pool_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    _, out = api.get(members_path(pool_id))
    return {(x["address"], x["protocol_port"]): x for x in out["members"]}


def test_batch_update_creates_updates_and_deletes(api):
    lb, pool, listener_id = make_pool(api)
    keep = add_member(api, pool, lb["id"], address="198.18.64.50", protocol_port=80,
                      name="keep", weight=3, monitor_port=99)
    gone = add_member(api, pool, lb["id"], address="198.18.64.51", protocol_port=80)
    status, out = _batch(api, pool["id"], [
        {"address": "198.18.64.50", "protocol_port": 80, "weight": 5},
        {"address": "198.18.64.52", "protocol_port": 80, "name": "new", "tags": ["n"]},
    ])
    assert (status, out) == (202, None)
    now = _by_address(api, pool["id"])
    kept = now[("198.18.64.50", 80)]
    assert kept["id"] == keep["id"] and kept["provisioning_status"] == "PENDING_UPDATE"
    # Matched members take the request's values, POST defaults included.
    assert (kept["weight"], kept["name"], kept["monitor_port"]) == (5, "keep", None)
    assert now[("198.18.64.51", 80)]["id"] == gone["id"]
    assert now[("198.18.64.51", 80)]["provisioning_status"] == "PENDING_DELETE"
    new = now[("198.18.64.52", 80)]
    assert (new["provisioning_status"], new["name"], new["tags"]) == (
        "PENDING_CREATE", "new", ["n"])
    assert status_of(api, "loadbalancer", lb["id"]) == "PENDING_UPDATE"
    assert status_of(api, "pool", pool["id"]) == "PENDING_UPDATE"
    assert status_of(api, "listener", listener_id) == "PENDING_UPDATE"
    assert _batch(api, pool["id"], [])[0] == 409
    api.settle(lb["id"])
    assert sorted(_by_address(api, pool["id"])) == [("198.18.64.50", 80), ("198.18.64.52", 80)]
    assert {x["provisioning_status"] for x in _by_address(api, pool["id"]).values()} == {
        "ACTIVE"}


def test_batch_update_additive_only_and_no_op(api):
    lb, pool, _ = make_pool(api, listener=False)
    add_member(api, pool, lb["id"], address="198.18.64.60", protocol_port=80)
    status, _ = _batch(api, pool["id"], [{"address": "198.18.64.61", "protocol_port": 80}],
                       additive_only="true")
    assert status == 202
    now = _by_address(api, pool["id"])
    assert now[("198.18.64.60", 80)]["provisioning_status"] == "ACTIVE"
    assert now[("198.18.64.61", 80)]["provisioning_status"] == "PENDING_CREATE"
    api.settle(lb["id"])
    # Nothing new, nothing changed, nothing removed: accepted, nothing locked.
    same = [{"address": "198.18.64.60", "protocol_port": 80},
            {"address": "198.18.64.61", "protocol_port": 80}]
    assert _batch(api, pool["id"], same)[0] == 202
    assert _batch(api, pool["id"], [], additive_only="True")[0] == 202
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"
    assert status_of(api, "pool", pool["id"]) == "ACTIVE"
    # An empty list without additive_only removes every member.
    assert _batch(api, pool["id"], [])[0] == 202
    assert {x["provisioning_status"] for x in _by_address(api, pool["id"]).values()} == {
        "PENDING_DELETE"}
    api.settle(lb["id"])
    assert _by_address(api, pool["id"]) == {}


def test_batch_update_new_members_start_offline_under_a_monitor(api):
    lb, pool, _ = make_pool(api, listener=False)
    assert api.post("/v2/lbaas/healthmonitors", {"healthmonitor": {
        "pool_id": pool["id"], "type": "PING", "delay": 5, "timeout": 3,
        "max_retries": 3}})[0] == 201
    api.settle(lb["id"])
    assert _batch(api, pool["id"], [{"address": "198.18.64.70", "protocol_port": 80}])[0] == 202
    assert _by_address(api, pool["id"])[("198.18.64.70", 80)]["operating_status"] == "OFFLINE"
    api.settle(lb["id"])


@pytest.mark.parametrize("members,status,needle", [
    ([{"address": "198.18.64.80", "protocol_port": 80},
      {"address": "198.18.64.80", "protocol_port": 80, "weight": 2}], 400,
     "Member must be updated only once in the same request."),
    ([{"address": "198.18.64.82", "protocol_port": 80},
      {"address": "198.18.64.82", "protocol_port": 80}], 409,
     "Another member on this pool is already using ip 198.18.64.82 on protocol_port 80"),
    ([{"address": "198.18.64.80"}], 400, "protocol_port"),
    ([{"address": "198.18.64.80", "protocol_port": 80, "weight": 999}], 400, "weight"),
    ([{"address": "198.18.64.80", "protocol_port": 80, "color": 1}], 400, "color"),
    ([{"address": "169.254.169.254", "protocol_port": 80}], 400, "member address"),
    ([{"address": "198.18.64.80", "protocol_port": 80,
       "subnet_id": "3c3d2a4e-5d71-4fb0-9b7e-1b1c6d2f0e11"}], 400,
     "Subnet 3c3d2a4e-5d71-4fb0-9b7e-1b1c6d2f0e11 not found."),
    ([{"address": "198.18.64.81", "protocol_port": 80, "request_sriov": True}], 400,
     "SR-IOV"),
    ("x", 400, "members"),
    ([5], 400, "members"),
])
def test_batch_update_bad_input(api, members, status, needle):
    lb, pool, _ = make_pool(api, listener=False)
    add_member(api, pool, lb["id"], address="198.18.64.80", protocol_port=80)
    code, out = _batch(api, pool["id"], members)
    assert code == status, out
    assert needle in out["faultstring"], out
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"
    assert list(_by_address(api, pool["id"])) == [("198.18.64.80", 80)]


def test_batch_update_other_errors(api):
    missing = str(uuid.uuid4())
    status, out = _batch(api, missing, [])
    assert (status, out["description"]) == (404, f"Pool {missing} not found.")
    lb, pool, _ = make_pool(api, listener=False)
    status, out = api.put(members_path(pool["id"]), {"member": []})
    assert status == 400 and "members" in out["faultstring"]
    assert api.put(f"/v2/lbaas/loadbalancers/{lb['id']}",
                   {"loadbalancer": {"name": "busy"}})[0] == 200
    status, out = _batch(api, pool["id"], [{"address": "198.18.64.1", "protocol_port": 1}])
    assert status == 409 and "immutable" in out["faultstring"]
    api.settle(lb["id"])


def test_quota_counts_the_net_increase(api, server):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from amphorae.db import models as m

    project = uuid.uuid4().hex
    engine = create_engine(server.db_url)
    with Session(engine) as session, session.begin():
        session.merge(m.Quota(project_id=project, member=2))
    engine.dispose()
    lb, pool, _ = make_pool(api, listener=False, project_id=project)
    add_member(api, pool, lb["id"], address="198.18.64.90", protocol_port=80)
    add_member(api, pool, lb["id"], address="198.18.64.91", protocol_port=80)
    status, out = api.post(members_path(pool["id"]), {"member": {
        "address": "198.18.64.92", "protocol_port": 80}})
    assert (status, out["faultstring"]) == (403, "Quota has been met for resources: Member")
    # Replacing both members keeps the count: allowed.
    status, _ = _batch(api, pool["id"], [{"address": "198.18.64.93", "protocol_port": 80},
                                         {"address": "198.18.64.94", "protocol_port": 80}])
    assert status == 202
    api.settle(lb["id"])
    status, out = _batch(api, pool["id"], [
        {"address": f"198.18.64.{n}", "protocol_port": 80} for n in (93, 94, 95)])
    assert (status, out["faultstring"]) == (403, "Quota has been met for resources: Member")
    assert status_of(api, "loadbalancer", lb["id"]) == "ACTIVE"


# --- clients --------------------------------------------------------------------------


def test_sdk_create_show_list_update_delete(sdk, api):
    lb, pool, _ = make_pool(api, listener=False)
    member = sdk.create_member(pool["id"], address="198.18.64.100", protocol_port=80,
                               name="sdk-m", weight=4, tags=["sdk"])
    assert member.provisioning_status == "PENDING_CREATE"
    api.settle(lb["id"])
    got = sdk.get_member(member.id, pool["id"])
    assert (got.name, got.address, got.weight, got.tags) == ("sdk-m", "198.18.64.100", 4,
                                                             ["sdk"])
    assert [x.id for x in sdk.members(pool["id"], address="198.18.64.100")] == [member.id]
    assert [x.id for x in sdk.members(pool["id"], tags="sdk")] == [member.id]
    assert list(sdk.members(pool["id"], protocol_port=81)) == []
    updated = sdk.update_member(member, pool["id"], weight=9, backup=True)
    assert (updated.weight, updated.backup) == (9, True)
    api.settle(lb["id"])
    sdk.delete_member(member, pool["id"])
    api.settle(lb["id"])
    assert list(sdk.members(pool["id"])) == []


def test_cli_create_show_list_set_unset_delete(cli, api):
    lb, pool, _ = make_pool(api, listener=False)
    member = cli("loadbalancer", "member", "create", "--name", "cli-m", "--address",
                 "198.18.64.110", "--protocol-port", "80", "--weight", "3",
                 "--monitor-port", "9000", "--enable-backup", "--tag", "a",
                 "--subnet-id", "members", pool["id"])
    assert member["name"] == "cli-m" and member["provisioning_status"] == "PENDING_CREATE"
    assert member["subnet_id"] == MEMBER_SUBNET
    api.settle(lb["id"])
    cli.run("loadbalancer", "member", "set", "--name", "cli-m2", "--weight", "5",
            "--disable", pool["id"], member["id"])
    shown = cli("loadbalancer", "member", "show", pool["id"], "cli-m2")
    assert (shown["weight"], shown["admin_state_up"], shown["provisioning_status"]) == (
        5, False, "PENDING_UPDATE")
    api.settle(lb["id"])
    cli.run("loadbalancer", "member", "unset", "--weight", "--backup", "--monitor-port",
            pool["id"], member["id"])
    shown = cli("loadbalancer", "member", "show", pool["id"], member["id"])
    assert (shown["weight"], shown["backup"], shown["monitor_port"]) == (1, False, None)
    api.settle(lb["id"])
    listed = cli("loadbalancer", "member", "list", pool["id"])
    assert [x["id"] for x in listed] == [member["id"]]
    cli.run("loadbalancer", "member", "delete", pool["id"], member["id"])
    api.settle(lb["id"])
    assert cli("loadbalancer", "member", "list", pool["id"]) == []


def test_public_subnet_is_a_valid_member_subnet(api):
    lb, pool, _ = make_pool(api, listener=False)
    member = add_member(api, pool, lb["id"], address="198.18.0.200", subnet_id=PUBLIC_SUBNET)
    assert member["subnet_id"] == PUBLIC_SUBNET


def test_integers_sent_as_strings_are_taken_as_octavia_does(api):
    lb, pool, _ = make_pool(api, listener=False)
    member = add_member(api, pool, lb["id"], protocol_port="8081", weight="2",
                        monitor_port="9001")
    assert (member["protocol_port"], member["weight"], member["monitor_port"]) == (
        8081, 2, 9001)


# --- fuzzing: no input gets a 5xx, a rejected call changes nothing ----------------------


def test_fuzz_member_create_and_update(api):
    from tests.functional.test_fuzz import _fuzz

    lb, pool, _ = make_pool(api, listener=False)
    path = members_path(pool["id"])
    _fuzz(api, "POST", path, "member",
          {"address": "198.18.64.7", "protocol_port": 80, "weight": 2, "backup": False,
           "subnet_id": MEMBER_SUBNET, "monitor_address": "198.18.64.8",
           "monitor_port": 81, "name": "f", "tags": ["a"], "admin_state_up": True},
          lambda out: api.settle(lb["id"]))
    member = add_member(api, pool, lb["id"], address="198.18.64.6")
    _fuzz(api, "PUT", f"{path}/{member['id']}", "member",
          {"name": "g", "weight": 3, "backup": True, "monitor_address": "198.18.64.9",
           "monitor_port": 82, "tags": ["b"], "admin_state_up": False},
          lambda out: api.settle(lb["id"]))


def test_fuzz_member_batch_update(api):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.functional.test_fuzz import VALUES, _snapshot

    lb, pool, _ = make_pool(api, listener=False)
    valid = {"address": "198.18.64.5", "protocol_port": 80, "weight": 2, "name": "b",
             "subnet_id": MEMBER_SUBNET, "tags": ["t"]}

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(key=st.sampled_from([*sorted(valid), "extra"]), value=VALUES,
           count=st.integers(0, 3), additive=st.sampled_from(["", "true", "x"]))
    def run(key: str, value: Any, count: int, additive: str) -> None:
        item = {**valid, key: value}
        members = [item] + [{"address": f"198.18.64.{20 + i}", "protocol_port": 80}
                            for i in range(count)]
        before = _snapshot(api.server.db_url)
        params = {"additive_only": additive} if additive else {}
        status, out = api.put(members_path(pool["id"]), {"members": members}, **params)
        assert status < 500, (members, status, out)
        if status >= 400:
            assert out.get("faultstring"), out
            assert _snapshot(api.server.db_url) == before, (members, status, out)
        else:
            api.settle(lb["id"])

    run()

