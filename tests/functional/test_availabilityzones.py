"""Availability zone profiles and availability zones (keyed by name)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from openstack import exceptions

from tests.servers import PUBLIC_SUBNET

NIL = "00000000-0000-0000-0000-000000000000"
AZP_KEYS = {"id", "name", "provider_name", "availability_zone_data"}
AZ_KEYS = {"name", "description", "enabled", "availability_zone_profile_id"}
AZP = "/v2/lbaas/availabilityzoneprofiles"
AZ = "/v2/lbaas/availabilityzones"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_profile(api, data: Any = None, provider: str = "amphora") -> dict[str, Any]:
    text = data if isinstance(data, str) else json.dumps(data or {})
    status, body = api.post(AZP, {"availability_zone_profile": {
        "name": unique("azp"), "provider_name": provider, "availability_zone_data": text}})
    assert status == 201, body
    return body["availability_zone_profile"]


def make_zone(api, profile_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("az"),
            "availability_zone_profile_id": profile_id or make_profile(api)["id"], **fields}
    status, out = api.post(AZ, {"availability_zone": body})
    assert status == 201, out
    return out["availability_zone"]


# --- availability zone profiles -------------------------------------------------------


def test_profile_create_show_list(api):
    data = json.dumps({"compute_zone": "nova", "volume_zone": "cinder",
                       "management_network": str(uuid.uuid4()),
                       "valid_vip_networks": [str(uuid.uuid4())]})
    profile = make_profile(api, data)
    assert set(profile) == AZP_KEYS and profile["availability_zone_data"] == data
    status, body = api.get(f"{AZP}/{profile['id']}")
    assert status == 200 and body == {"availability_zone_profile": profile}
    status, body = api.get(AZP, name=profile["name"])
    assert body == {"availability_zone_profiles": [profile],
                    "availability_zone_profile_links": []}
    status, body = api.get(AZP, id=profile["id"], fields="provider_name")
    assert body["availability_zone_profiles"] == [{"provider_name": "amphora"}]


def test_profile_pagination(api):
    data = json.dumps({"compute_zone": unique("page")})
    ids = sorted(make_profile(api, data)["id"] for _ in range(3))
    status, body = api.get(AZP, availability_zone_data=data, limit=2)
    assert status == 200 and [p["id"] for p in body["availability_zone_profiles"]] == ids[:2]
    [nxt] = body["availability_zone_profile_links"]
    assert nxt["rel"] == "next"
    status, body = api.call("GET", nxt["href"].removeprefix(api.url))
    assert status == 200 and [p["id"] for p in body["availability_zone_profiles"]] == ids[2:]


@pytest.mark.parametrize(("data", "needle"), [
    ("nope", "nope is not a valid option for availability_zone_data"),
    ('"zone"', "\"zone\" is not of type 'object'"),
    ('{"compute_flavor": "m1"}', "'compute_flavor' was unexpected"),
    ('{"compute_zone": 1}', "compute_zone 1 is not of type 'string'"),
    ('{"valid_vip_networks": "net"}', "valid_vip_networks \"net\" is not of type 'array'"),
    ('{"management_network": false}', "management_network false is not of type 'string'"),
])
def test_profile_bad_data(api, data, needle):
    status, body = api.post(AZP, {"availability_zone_profile": {
        "name": "bad", "provider_name": "amphora", "availability_zone_data": data}})
    # An option the provider lacks is Octavia's 501; a malformed document is a 400.
    assert status == (501 if "unexpected" in needle else 400), body
    assert needle in body["faultstring"]


@pytest.mark.parametrize(("fields", "needle"), [
    ({"provider_name": "noop_driver"}, "Provider 'noop_driver' is not enabled."),
    ({"availability_zone_data": "x" * 4097}, "field/attribute availability_zone_data."),
    ({"name": None}, "field/attribute name."),
    ({"flavor_data": "{}"}, "Unknown attribute for argument availability_zone_profile: "
                            "flavor_data"),
])
def test_profile_bad_create(api, fields, needle):
    body = {"name": "bad", "provider_name": "amphora", "availability_zone_data": "{}",
            **fields}
    status, out = api.post(AZP, {"availability_zone_profile": body})
    assert status == 400, out
    assert needle in out["faultstring"]


def test_profile_update_and_delete_rules(api):
    profile = make_profile(api)
    url = f"{AZP}/{profile['id']}"
    status, body = api.put(url, {"availability_zone_profile": {
        "availability_zone_data": '{"compute_zone": "az9"}', "provider_name": "octavia"}})
    assert status == 200
    assert body["availability_zone_profile"]["provider_name"] == "octavia"
    assert body["availability_zone_profile"]["availability_zone_data"] == \
        '{"compute_zone": "az9"}'
    status, body = api.put(url, {"availability_zone_profile": {"availability_zone_data": None}})
    assert status == 400
    assert body["faultstring"] == "None is not a valid option for availability_zone_data"
    status, body = api.put(url, {"availability_zone_profile": {
        "availability_zone_data": "[1]"}})
    assert status == 400 and "not of type 'object'" in body["faultstring"]
    zone = make_zone(api, profile["id"])
    status, body = api.put(url, {"availability_zone_profile": {
        "availability_zone_data": "{}"}})
    assert status == 409
    assert body["faultstring"] == (f"Availability Zone Profile {profile['id']} is in use "
                                   "and cannot be modified.")
    status, body = api.put(url, {"availability_zone_profile": {"name": "renamed"}})
    assert status == 200 and body["availability_zone_profile"]["name"] == "renamed"
    assert api.delete(url)[0] == 409
    assert api.delete(f"{AZ}/{zone['name']}")[0] == 204
    assert api.delete(url)[0] == 204
    for path in (profile["id"], NIL):
        status, body = api.get(f"{AZP}/{path}")
        assert status == 404
        assert body["faultstring"] == f"Availability Zone Profile {path} not found."


# --- availability zones ---------------------------------------------------------------


def test_zone_create_show_list(api):
    zone = make_zone(api, description="rack 1")
    assert set(zone) == AZ_KEYS and zone["enabled"] is True
    status, body = api.get(f"{AZ}/{zone['name']}")
    assert status == 200 and body == {"availability_zone": zone}
    status, body = api.get(f"{AZ}/{zone['name']}", fields="enabled")
    assert body == {"availability_zone": {"enabled": True}}
    status, body = api.get(AZ, name=zone["name"])
    assert body == {"availability_zones": [zone], "availability_zones_links": []}
    off = make_zone(api, enabled=False)
    assert off["description"] == ""
    status, body = api.get(AZ, enabled="0", name=off["name"])
    assert [z["name"] for z in body["availability_zones"]] == [off["name"]]
    assert api.get(AZ, id="x")[0] == 400


def test_zone_pagination_by_name(api):
    tag = unique("page")
    profile = make_profile(api)
    names = [make_zone(api, profile["id"], name=f"{tag}-{i}", description=tag)["name"]
             for i in range(3)]
    status, body = api.get(AZ, description=tag, limit=2)
    assert status == 200
    assert [z["name"] for z in body["availability_zones"]] == names[:2]
    [nxt] = body["availability_zones_links"]
    assert nxt["rel"] == "next" and f"marker={names[1]}" in nxt["href"]
    status, body = api.call("GET", nxt["href"].removeprefix(api.url))
    assert [z["name"] for z in body["availability_zones"]] == names[2:]
    [prev] = body["availability_zones_links"]
    assert prev["rel"] == "previous"
    status, body = api.call("GET", prev["href"].removeprefix(api.url))
    assert [z["name"] for z in body["availability_zones"]] == names[:2]
    status, body = api.get(AZ, description=tag, sort="name:desc")
    assert [z["name"] for z in body["availability_zones"]] == names[::-1]
    status, body = api.get(AZ, availability_zone_profile_id=profile["id"])
    assert [z["name"] for z in body["availability_zones"]] == names
    status, body = api.get(AZ, marker="no-such-zone")
    assert status == 400 and "marker" in body["faultstring"]


def test_zone_conflicts_refs_and_bad_input(api):
    zone = make_zone(api)
    status, body = api.post(AZ, {"availability_zone": {
        "name": zone["name"],
        "availability_zone_profile_id": zone["availability_zone_profile_id"]}})
    assert status == 409
    assert body["faultstring"] == f"A availability zone of {zone['name']} already exists."
    missing = str(uuid.uuid4())
    status, body = api.post(AZ, {"availability_zone": {
        "name": unique("x"), "availability_zone_profile_id": missing}})
    assert status == 404
    assert body["faultstring"] == f"Availability Zone Profile {missing} not found."
    for fields, needle in (
            ({"availability_zone_profile_id": "bad"}, "availability_zone_profile_id"),
            ({"name": "n" * 256}, "field/attribute name."),
            ({"enabled": 1}, "field/attribute enabled.")):
        body = {"name": unique("x"), "availability_zone_profile_id": missing, **fields}
        status, out = api.post(AZ, {"availability_zone": body})
        assert status == 400 and needle in out["faultstring"]


def test_zone_update(api):
    zone = make_zone(api, description="d")
    url = f"{AZ}/{zone['name']}"
    status, body = api.put(url, {"availability_zone": {"enabled": False, "description": None}})
    assert status == 200
    assert body["availability_zone"] == {**zone, "enabled": False, "description": ""}
    for field in ("name", "availability_zone_profile_id"):
        status, body = api.put(url, {"availability_zone": {field: "x"}})
        assert status == 400
        assert body["faultstring"] == ("Unknown attribute for argument availability_zone: "
                                       f"{field}")
    status, body = api.put(f"{AZ}/{NIL}", {"availability_zone": {"enabled": True}})
    assert status == 404
    assert body["faultstring"] == f"Availability Zone {NIL} not found."


def test_zone_on_load_balancers(api):
    zone = make_zone(api)
    lb = api.create_lb(availability_zone=zone["name"])
    assert lb["availability_zone"] == zone["name"]
    status, body = api.delete(f"{AZ}/{zone['name']}")
    assert status == 409
    assert body["faultstring"] == (f"Availability Zone {zone['name']} is in use and cannot "
                                   "be modified.")
    off = make_zone(api, enabled=False)
    for name in (off["name"], unique("missing")):
        status, body = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
            "vip_subnet_id": PUBLIC_SUBNET, "availability_zone": name}})
        assert status == 400, body
        assert "availability" in body["faultstring"]
    assert api.delete(f"{AZ}/{off['name']}")[0] == 204
    assert api.get(f"{AZ}/{off['name']}")[0] == 404


# --- clients --------------------------------------------------------------------------


def test_sdk_availability_zones(sdk):
    profile = sdk.create_availability_zone_profile(
        name=unique("sdk-azp"), provider_name="amphora",
        availability_zone_data='{"compute_zone": "nova"}')
    assert profile.id in {p.id for p in sdk.availability_zone_profiles()}
    renamed = unique("sdk-azp")
    sdk.update_availability_zone_profile(profile, name=renamed)
    assert sdk.get_availability_zone_profile(profile.id).name == renamed
    zone = sdk.create_availability_zone(name=unique("sdk-az"),
                                        availability_zone_profile_id=profile.id,
                                        description="via sdk")
    assert zone.is_enabled is True
    assert zone.name in {z.name for z in sdk.availability_zones()}
    # openstacksdk's zone has no id attribute: it addresses zones by name strings.
    sdk.update_availability_zone(zone.name, is_enabled=False)
    assert sdk.get_availability_zone(zone.name).is_enabled is False
    sdk.delete_availability_zone(zone.name)
    with pytest.raises(exceptions.NotFoundException):
        sdk.get_availability_zone(zone.name)
    sdk.delete_availability_zone_profile(profile)


def test_cli_availability_zone_flow(cli):
    azp_name, az_name = unique("cli-azp"), unique("cli-az")
    profile = cli("loadbalancer", "availabilityzoneprofile", "create", "--name", azp_name,
                  "--provider", "amphora", "--availability-zone-data",
                  '{"compute_zone": "nova"}')
    assert profile["name"] == azp_name
    cli.run("loadbalancer", "availabilityzoneprofile", "set", "--availability-zone-data",
            '{"compute_zone": "zone2"}', azp_name)
    shown = cli("loadbalancer", "availabilityzoneprofile", "show", azp_name)
    assert json.loads(shown["availability_zone_data"]) == {"compute_zone": "zone2"}
    zone = cli("loadbalancer", "availabilityzone", "create", "--name", az_name,
               "--availabilityzoneprofile", azp_name, "--description", "cli")
    assert zone["availability_zone_profile_id"] == profile["id"]
    cli.run("loadbalancer", "availabilityzone", "set", "--disable", az_name)
    cli.run("loadbalancer", "availabilityzone", "unset", "--description", az_name)
    shown = cli("loadbalancer", "availabilityzone", "show", az_name)
    assert shown["enabled"] is False and shown["description"] == ""
    listed = cli("loadbalancer", "availabilityzone", "list", "--name", az_name)
    assert [z["name"] for z in listed] == [az_name]
    cli.run("loadbalancer", "availabilityzone", "delete", az_name)
    cli.run("loadbalancer", "availabilityzoneprofile", "delete", azp_name)
