"""Providers and their flavor / availability zone capabilities."""

from __future__ import annotations

import pytest

FLAVOR_CAPS = ["loadbalancer_topology", "compute_flavor", "amp_image_tag", "sriov_vip",
               "allow_member_sriov", "amphora_count_min", "amphora_count_max"]
AZ_CAPS = ["compute_zone", "volume_zone", "management_network", "valid_vip_networks"]


def test_list_providers_matches_octavia_sample(api):
    status, body = api.get("/v2/lbaas/providers")
    assert status == 200
    assert body == {"providers": [
        {"name": "amphora", "description": "The Octavia Amphora driver."},
        {"name": "octavia", "description": "Deprecated alias of the Octavia Amphora driver."},
    ]}
    # Also without the /lbaas prefix and with field selection.
    status, body = api.get("/v2.0/providers", fields="name")
    assert status == 200 and body == {"providers": [{"name": "amphora"}, {"name": "octavia"}]}


@pytest.mark.parametrize("provider", ["amphora", "octavia"])
def test_flavor_capabilities(api, provider):
    status, body = api.get(f"/v2/lbaas/providers/{provider}/flavor_capabilities")
    assert status == 200
    caps = body["flavor_capabilities"]
    assert [c["name"] for c in caps] == FLAVOR_CAPS
    assert all(set(c) == {"name", "description"} and c["description"] for c in caps)
    topology = next(c for c in caps if c["name"] == "loadbalancer_topology")
    assert "SINGLE" in topology["description"] and "ACTIVE_STANDBY" in topology["description"]


def test_capability_filters_and_fields(api):
    base = "/v2/lbaas/providers/amphora/flavor_capabilities"
    status, body = api.get(base, name="sriov_vip")
    assert status == 200 and [c["name"] for c in body["flavor_capabilities"]] == ["sriov_vip"]
    description = body["flavor_capabilities"][0]["description"]
    status, body = api.get(base, description=description)
    assert [c["name"] for c in body["flavor_capabilities"]] == ["sriov_vip"]
    status, body = api.get(base, name="nope")
    assert status == 200 and body == {"flavor_capabilities": []}
    status, body = api.get(base, fields="name")
    assert body["flavor_capabilities"][0] == {"name": "loadbalancer_topology"}


def test_availability_zone_capabilities(api):
    status, body = api.get("/v2/lbaas/providers/amphora/availability_zone_capabilities")
    assert status == 200
    assert [c["name"] for c in body["availability_zone_capabilities"]] == AZ_CAPS
    status, body = api.get("/v2/lbaas/providers/amphora/availability_zone_capabilities",
                           name="volume_zone", fields="description")
    assert status == 200
    assert list(body["availability_zone_capabilities"][0]) == ["description"]


@pytest.mark.parametrize("kind", ["flavor_capabilities", "availability_zone_capabilities"])
def test_provider_not_enabled(api, kind):
    status, body = api.get(f"/v2/lbaas/providers/noop_driver/{kind}")
    assert status == 400
    assert body["faultstring"] == "Provider 'noop_driver' is not enabled."


def test_sdk_providers_and_capabilities(sdk):
    assert {p.name for p in sdk.providers()} == {"amphora", "octavia"}
    caps = list(sdk.provider_flavor_capabilities("amphora"))
    assert [c.name for c in caps] == FLAVOR_CAPS


def test_cli_provider_list_and_capabilities(cli):
    names = {p["name"] for p in cli("loadbalancer", "provider", "list")}
    assert names == {"amphora", "octavia"}
    rows = cli("loadbalancer", "provider", "capability", "list", "amphora")
    by_type: dict[str, set[str]] = {}
    for row in rows:
        by_type.setdefault(row["type"], set()).add(row["name"])
    assert by_type == {"flavor": set(FLAVOR_CAPS), "availability_zone": set(AZ_CAPS)}
