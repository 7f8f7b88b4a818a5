"""Flavor profiles and flavors, and what a flavor does to a load balancer create."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from openstack import exceptions
from sqlalchemy.orm import Session

from amphorae.db import models as m
from tests.servers import PUBLIC_SUBNET
from tests.settle import _engine

NIL = "00000000-0000-0000-0000-000000000000"
FP_KEYS = {"id", "name", "provider_name", "flavor_data"}
FLAVOR_KEYS = {"id", "name", "description", "enabled", "flavor_profile_id"}
FP = "/v2/lbaas/flavorprofiles"
FL = "/v2/lbaas/flavors"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_profile(api, data: Any = None, provider: str = "amphora") -> dict[str, Any]:
    text = data if isinstance(data, str) else json.dumps(data or {})
    status, body = api.post(FP, {"flavorprofile": {
        "name": unique("fp"), "provider_name": provider, "flavor_data": text}})
    assert status == 201, body
    return body["flavorprofile"]


def make_flavor(api, profile_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("flavor"),
            "flavor_profile_id": profile_id or make_profile(api)["id"], **fields}
    status, out = api.post(FL, {"flavor": body})
    assert status == 201, out
    return out["flavor"]


# --- flavor profiles ------------------------------------------------------------------


def test_profile_create_show_list(api):
    data = json.dumps({"loadbalancer_topology": "ACTIVE_STANDBY", "compute_flavor": "m1",
                       "amp_image_tag": "amphora", "sriov_vip": False,
                       "allow_member_sriov": True})
    profile = make_profile(api, data, provider="octavia")
    assert set(profile) == FP_KEYS
    assert profile["flavor_data"] == data and profile["provider_name"] == "octavia"
    status, body = api.get(f"{FP}/{profile['id']}")
    assert status == 200 and body == {"flavorprofile": profile}
    status, body = api.get(f"{FP}/{profile['id']}", fields="name")
    assert body == {"flavorprofile": {"name": profile["name"]}}
    status, body = api.get(FP, name=profile["name"])
    assert status == 200
    assert body == {"flavorprofiles": [profile], "flavorprofile_links": []}
    status, body = api.get(FP, provider_name="octavia", fields="id")
    assert {"id": profile["id"]} in body["flavorprofiles"]


def test_profile_pagination(api):
    data = json.dumps({"compute_flavor": unique("page")})
    ids = sorted(make_profile(api, data)["id"] for _ in range(3))
    status, body = api.get(FP, flavor_data=data, limit=2)
    assert [p["id"] for p in body["flavorprofiles"]] == ids[:2]
    [nxt] = [link for link in body["flavorprofile_links"] if link["rel"] == "next"]
    status, body = api.call("GET", nxt["href"].removeprefix(api.url))
    assert status == 200
    assert [p["id"] for p in body["flavorprofiles"]] == ids[2:]
    _, body = api.get(FP, flavor_data=data, sort="id:desc")
    assert [p["id"] for p in body["flavorprofiles"]] == ids[::-1]


# An option the provider lacks is Octavia's 501; a malformed document is a 400.
@pytest.mark.parametrize(("data", "needle"), [
    ("{not json", "{not json is not a valid option for flavor_data"),
    ("[]", "[] is not of type 'object'"),
    ("null", "null is not of type 'object'"),
    ('{"bogus": 1}', "'bogus' was unexpected"),  # 501
    ('{"loadbalancer_topology": "TRIPLE"}', 'loadbalancer_topology "TRIPLE" is not one of'),
    ('{"loadbalancer_topology": 1}', "loadbalancer_topology 1 is not of type 'string'"),
    ('{"sriov_vip": "yes"}', "sriov_vip \"yes\" is not of type 'boolean'"),
    ('{"allow_member_sriov": 1}', "allow_member_sriov 1 is not of type 'boolean'"),
    ('{"compute_flavor": null}', "compute_flavor null is not of type 'string'"),
    ('{"loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_min": "2"}',
     "amphora_count_min \"2\" is not of type 'integer'"),
    ('{"loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_max": true}',
     "amphora_count_max true is not of type 'integer'"),
    ('{"loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_min": 0}',
     "amphora_count_min 0 must be between 1 and 16"),
    ('{"loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_min": 3, '
     '"amphora_count_max": 2}', "amphora_count_max 2 must be between amphora_count_min (3)"),
    ('{"loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_max": 17}',
     "amphora_count_max 17 must be between amphora_count_min (2) and 16"),
    ('{"loadbalancer_topology": "ACTIVE_STANDBY", "amphora_count_min": 2}',
     "amphora_count_min is only valid with loadbalancer_topology ACTIVE_ACTIVE"),
    ('{"amphora_count_max": 2}',
     "amphora_count_max is only valid with loadbalancer_topology ACTIVE_ACTIVE"),
])
def test_profile_bad_flavor_data(api, data, needle):
    status, body = api.post(FP, {"flavorprofile": {
        "name": "bad", "provider_name": "amphora", "flavor_data": data}})
    assert status == (501 if "unexpected" in needle else 400), body
    assert needle in body["faultstring"]


def test_profile_active_active_counts(api):
    data = {"loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_min": 1,
            "amphora_count_max": 16}
    assert json.loads(make_profile(api, data)["flavor_data"]) == data
    profile = make_profile(api, {"loadbalancer_topology": "SINGLE"})
    status, body = api.put(f"{FP}/{profile['id']}", {"flavorprofile": {
        "flavor_data": '{"loadbalancer_topology": "SINGLE", "amphora_count_max": 3}'}})
    assert status == 400
    assert "amphora_count_max is only valid with" in body["faultstring"]


@pytest.mark.parametrize(("fields", "needle"), [
    ({"provider_name": "noop_driver"}, "Provider 'noop_driver' is not enabled."),
    ({"flavor_data": "x" * 4097}, "Invalid input for field/attribute flavor_data."),
    ({"flavor_data": {"a": 1}}, "Invalid input for field/attribute flavor_data."),
    ({"name": "n" * 256}, "Invalid input for field/attribute name."),
    ({"provider_name": None}, "Invalid input for field/attribute provider_name."),
    ({"id": str(uuid.uuid4())}, "Unknown attribute for argument flavorprofile: id"),
])
def test_profile_bad_create(api, fields, needle):
    body = {"name": "bad", "provider_name": "amphora", "flavor_data": "{}", **fields}
    status, out = api.post(FP, {"flavorprofile": body})
    assert status == 400, out
    assert needle in out["faultstring"]


@pytest.mark.parametrize("missing", ["name", "provider_name", "flavor_data"])
def test_profile_missing_field(api, missing):
    body = {"name": "bad", "provider_name": "amphora", "flavor_data": "{}"}
    del body[missing]
    status, out = api.post(FP, {"flavorprofile": body})
    assert status == 400
    assert out["faultstring"] == (f"Invalid input for field/attribute {missing}. "
                                  "Value: 'None'. Mandatory field missing.")


def test_profile_update_rules(api):
    profile = make_profile(api, {"loadbalancer_topology": "SINGLE"})
    url = f"{FP}/{profile['id']}"
    status, body = api.put(url, {"flavorprofile": {
        "flavor_data": '{"loadbalancer_topology": "ACTIVE_STANDBY"}', "name": "renamed"}})
    assert status == 200
    assert body["flavorprofile"]["flavor_data"] == '{"loadbalancer_topology": "ACTIVE_STANDBY"}'
    assert body["flavorprofile"]["name"] == "renamed"
    for field in ("name", "provider_name", "flavor_data"):
        status, body = api.put(url, {"flavorprofile": {field: None}})
        assert status == 400
        assert body["faultstring"] == f"None is not a valid option for {field}"
    status, body = api.put(url, {"flavorprofile": {"flavor_data": '{"x": 1}'}})
    assert status == 501 and "'x' was unexpected" in body["faultstring"]
    status, body = api.put(url, {"flavorprofile": {"provider_name": "noop_driver"}})
    assert status == 400 and body["faultstring"] == "Provider 'noop_driver' is not enabled."
    status, body = api.put(url, {"flavorprofile": {"id": NIL}})
    assert status == 400 and "Unknown attribute" in body["faultstring"]
    # Once a flavor uses it, only the name may change.
    make_flavor(api, profile["id"])
    status, body = api.put(url, {"flavorprofile": {"flavor_data": "{}"}})
    assert status == 409
    assert body["faultstring"] == (f"Flavor profile {profile['id']} is in use and cannot "
                                   "be modified.")
    assert api.put(url, {"flavorprofile": {"provider_name": "octavia"}})[0] == 409
    status, body = api.put(url, {"flavorprofile": {"name": "still-renamable"}})
    assert status == 200 and body["flavorprofile"]["name"] == "still-renamable"


def test_profile_delete_and_not_found(api):
    profile = make_profile(api)
    flavor = make_flavor(api, profile["id"])
    status, body = api.delete(f"{FP}/{profile['id']}")
    assert status == 409 and "is in use" in body["faultstring"]
    assert api.delete(f"{FL}/{flavor['id']}")[0] == 204
    assert api.delete(f"{FP}/{profile['id']}")[0] == 204
    for method, path in (("GET", profile["id"]), ("DELETE", profile["id"]), ("GET", NIL),
                         ("DELETE", NIL)):
        status, body = api.call(method, f"{FP}/{path}")
        assert status == 404
        assert body["faultstring"] == f"Flavor profile {path} not found."
    status, body = api.put(f"{FP}/{NIL}", {"flavorprofile": {"name": "x"}})
    assert status == 404


# --- flavors --------------------------------------------------------------------------


def test_flavor_create_show_list(api):
    flavor = make_flavor(api, description="small and cheap")
    assert set(flavor) == FLAVOR_KEYS
    assert flavor["enabled"] is True and flavor["description"] == "small and cheap"
    status, body = api.get(f"{FL}/{flavor['id']}")
    assert status == 200 and body == {"flavor": flavor}
    status, body = api.get(FL, name=flavor["name"])
    assert body == {"flavors": [flavor], "flavors_links": []}
    status, body = api.get(FL, id=flavor["id"], fields="name")
    assert body["flavors"] == [{"name": flavor["name"]}]
    bare = make_flavor(api, enabled=False)
    assert bare["description"] == "" and bare["enabled"] is False
    status, body = api.get(FL, enabled="false", name=bare["name"])
    assert [f["id"] for f in body["flavors"]] == [bare["id"]]


def test_flavor_pagination_and_sort(api):
    tag = unique("page")
    profile = make_profile(api)
    made = [make_flavor(api, profile["id"], name=f"{tag}-{i}", description=tag)
            for i in range(3)]
    status, body = api.get(FL, description=tag, sort="name:desc", limit=2)
    assert [f["name"] for f in body["flavors"]] == [f"{tag}-2", f"{tag}-1"]
    [nxt] = [link for link in body["flavors_links"] if link["rel"] == "next"]
    status, body = api.call("GET", nxt["href"].removeprefix(api.url))
    assert status == 200
    assert [f["name"] for f in body["flavors"]] == [f"{tag}-0"]
    assert [link["rel"] for link in body["flavors_links"]] == ["previous"]
    _, body = api.get(FL, flavor_profile_id=profile["id"])
    assert {f["id"] for f in body["flavors"]} == {f["id"] for f in made}
    assert api.get(FL, sort="bogus")[0] == 400
    assert api.get(FL, provisioning_status="ACTIVE")[0] == 400
    assert api.get(FL, tags="x")[0] == 400


def test_flavor_conflicts_and_refs(api):
    flavor = make_flavor(api)
    status, body = api.post(FL, {"flavor": {"name": flavor["name"],
                                            "flavor_profile_id": flavor["flavor_profile_id"]}})
    assert status == 409
    assert body["faultstring"] == f"A flavor of {flavor['name']} already exists."
    missing = str(uuid.uuid4())
    for profile_id in (missing, NIL):
        status, body = api.post(FL, {"flavor": {"name": unique("x"),
                                                "flavor_profile_id": profile_id}})
        assert status == 404
        assert body["faultstring"] == f"Flavor profile {profile_id} not found."


@pytest.mark.parametrize(("fields", "needle"), [
    ({"flavor_profile_id": "not-a-uuid"}, "flavor_profile_id"),
    ({"flavor_profile_id": None}, "flavor_profile_id"),
    ({"name": None}, "field/attribute name."),
    ({"name": 5}, "field/attribute name."),
    ({"description": "d" * 256}, "field/attribute description."),
    ({"enabled": "yes"}, "field/attribute enabled."),
    ({"provider": "amphora"}, "Unknown attribute for argument flavor: provider"),
])
def test_flavor_bad_create(api, fields, needle):
    body = {"name": unique("bad"), "flavor_profile_id": str(uuid.uuid4()), **fields}
    status, out = api.post(FL, {"flavor": body})
    assert status == 400, out
    assert needle in out["faultstring"]


def test_flavor_update(api):
    flavor = make_flavor(api, description="d")
    url = f"{FL}/{flavor['id']}"
    new_name = unique("renamed")
    status, body = api.put(url, {"flavor": {"name": new_name, "enabled": False}})
    assert status == 200
    assert body["flavor"]["name"] == new_name and body["flavor"]["enabled"] is False
    status, body = api.put(url, {"flavor": {"description": None}})
    assert status == 200 and body["flavor"]["description"] == ""
    status, body = api.put(url, {"flavor": {"flavor_profile_id": str(uuid.uuid4())}})
    assert status == 400
    assert body["faultstring"] == "Unknown attribute for argument flavor: flavor_profile_id"
    status, body = api.put(url, {"flavor": {"name": None}})
    assert status == 400 and body["faultstring"] == "None is not a valid option for name"
    other = make_flavor(api)
    status, body = api.put(url, {"flavor": {"name": other["name"]}})
    assert status == 409
    assert body["faultstring"] == f"A flavor of {other['name']} already exists."
    missing = str(uuid.uuid4())
    status, body = api.put(f"{FL}/{missing}", {"flavor": {"name": "x"}})
    assert status == 404 and body["faultstring"] == f"Flavor {missing} not found."


def test_flavor_nil_uuid_is_reserved(api):
    for method in ("GET", "DELETE"):
        status, body = api.call(method, f"{FL}/{NIL}")
        assert status == 404 and body["faultstring"] == f"Flavor {NIL} not found."
    status, body = api.put(f"{FL}/{NIL}", {"flavor": {"name": "x"}})
    assert status == 404


def test_flavor_delete_in_use(api):
    flavor = make_flavor(api)
    lb = api.create_lb(flavor_id=flavor["id"])
    assert lb["flavor_id"] == flavor["id"]
    status, body = api.delete(f"{FL}/{flavor['id']}")
    assert status == 409
    assert body["faultstring"] == f"Flavor {flavor['id']} is in use and cannot be modified."
    # A deleted load balancer (its row kept until housekeeping purges it) lets go.
    assert api.delete(f"/v2/lbaas/loadbalancers/{lb['id']}")[0] == 204
    api.settle(lb["id"])
    assert api.delete(f"{FL}/{flavor['id']}")[0] == 204
    unused = make_flavor(api)
    assert api.delete(f"{FL}/{unused['id']}")[0] == 204
    assert api.get(f"{FL}/{unused['id']}")[0] == 404


# --- flavors on load balancers --------------------------------------------------------


def stored_lb(server, lb_id: str) -> m.LoadBalancer:
    with Session(_engine(server.db_url)) as session:
        lb = session.get(m.LoadBalancer, lb_id)
        assert lb is not None
        session.expunge(lb)
        return lb


def test_flavor_topology_reaches_the_load_balancer(api, server):
    profile = make_profile(api, {"loadbalancer_topology": "ACTIVE_STANDBY"})
    flavor = make_flavor(api, profile["id"])
    lb = api.create_lb(flavor_id=flavor["id"])
    assert lb["flavor_id"] == flavor["id"] and lb["provider"] == "amphora"
    assert stored_lb(server, lb["id"]).topology == "ACTIVE_STANDBY"
    plain = api.create_lb()
    assert plain["flavor_id"] is None
    assert stored_lb(server, plain["id"]).topology == "SINGLE"


def test_flavor_provider_reaches_the_load_balancer(api):
    flavor = make_flavor(api, make_profile(api, provider="octavia")["id"])
    lb = api.create_lb(flavor_id=flavor["id"])
    assert lb["provider"] == "octavia"


def test_disabled_unknown_and_nil_flavors_are_refused(api):
    disabled = make_flavor(api, enabled=False)
    for flavor_id in (disabled["id"], str(uuid.uuid4()), NIL):
        status, body = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
            "vip_subnet_id": PUBLIC_SUBNET, "flavor_id": flavor_id}})
        assert status == 400, body
        assert "flavor" in body["faultstring"]
    status, body = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "vip_subnet_id": PUBLIC_SUBNET, "flavor_id": "nope"}})
    assert status == 400 and "flavor_id" in body["faultstring"]


# --- clients --------------------------------------------------------------------------


def test_sdk_flavor_profiles_and_flavors(sdk):
    profile = sdk.create_flavor_profile(name=unique("sdk-fp"), provider_name="amphora",
                                        flavor_data='{"loadbalancer_topology": "SINGLE"}')
    assert profile.provider_name == "amphora"
    assert profile.id in {p.id for p in sdk.flavor_profiles()}
    profile = sdk.update_flavor_profile(profile, flavor_data='{"compute_flavor": "m1"}')
    assert json.loads(sdk.get_flavor_profile(profile.id).flavor_data) == {
        "compute_flavor": "m1"}
    flavor = sdk.create_flavor(name=unique("sdk-flavor"), flavor_profile_id=profile.id,
                               description="via sdk", is_enabled=True)
    assert flavor.is_enabled is True and flavor.flavor_profile_id == profile.id
    assert sdk.find_flavor(flavor.name).id == flavor.id
    assert flavor.id in {f.id for f in sdk.flavors(name=flavor.name)}
    flavor = sdk.update_flavor(flavor, is_enabled=False, description="off")
    fetched = sdk.get_flavor(flavor.id)
    assert fetched.is_enabled is False and fetched.description == "off"
    sdk.delete_flavor(flavor)
    sdk.delete_flavor_profile(profile)
    with pytest.raises(exceptions.NotFoundException):
        sdk.get_flavor_profile(profile.id)


def test_cli_flavor_flow(cli):
    fp_name, flavor_name = unique("cli-fp"), unique("cli-flavor")
    profile = cli("loadbalancer", "flavorprofile", "create", "--name", fp_name,
                  "--provider", "amphora", "--flavor-data",
                  '{"loadbalancer_topology": "ACTIVE_STANDBY"}')
    assert profile["name"] == fp_name and profile["provider_name"] == "amphora"
    cli.run("loadbalancer", "flavorprofile", "set", "--flavor-data",
            '{"loadbalancer_topology": "SINGLE"}', fp_name)
    shown = cli("loadbalancer", "flavorprofile", "show", fp_name)
    assert json.loads(shown["flavor_data"]) == {"loadbalancer_topology": "SINGLE"}
    flavor = cli("loadbalancer", "flavor", "create", "--name", flavor_name,
                 "--flavorprofile", fp_name, "--description", "cli", "--enable")
    assert flavor["name"] == flavor_name and flavor["flavor_profile_id"] == profile["id"]
    cli.run("loadbalancer", "flavor", "set", "--disable", "--name", flavor_name + "-2",
            flavor_name)
    cli.run("loadbalancer", "flavor", "unset", "--description", flavor_name + "-2")
    shown = cli("loadbalancer", "flavor", "show", flavor_name + "-2")
    assert shown["description"] == "" and shown["enabled"] is False
    listed = cli("loadbalancer", "flavor", "list", "--name", flavor_name + "-2")
    assert [f["id"] for f in listed] == [flavor["id"]]
    cli.run("loadbalancer", "flavor", "delete", flavor["id"])
    cli.run("loadbalancer", "flavorprofile", "delete", fp_name)
