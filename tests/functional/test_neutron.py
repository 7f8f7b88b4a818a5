"""The local network driver's Neutron-shaped endpoint, as clients look things up on it:
networks and subnets by name, the VIP ports the API allocated, and (empty: there are
none here) floating IPs and security groups, with Neutron's filters, at /v2.0 and /v2.
Real `amphorae api` on SQLite and PostgreSQL; openstacksdk's network proxy as a client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import pytest

from amphorae.drivers.network.local import VIP_OWNER, vip_device
from tests import servers


@pytest.fixture
def network(server: servers.Server) -> Iterator[Any]:
    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": server.url}, network_endpoint_override=server.url)
    yield conn.network
    conn.close()


def test_the_vip_port_is_listed_with_neutron_filters(api: servers.Client) -> None:
    lb = api.create_lb(name="neutron-ports")
    port = {"id": lb["vip_port_id"], "network_id": servers.PUBLIC_NETWORK,
            "device_id": vip_device(lb["id"]), "device_owner": VIP_OWNER,
            "fixed_ips": [{"subnet_id": servers.PUBLIC_SUBNET,
                           "ip_address": lb["vip_address"]}]}
    for version in ("/v2.0", "/v2"):
        status, body = api.get(f"{version}/ports", device_id=vip_device(lb["id"]))
        assert status == 200, body
        (found,) = body["ports"]
        assert {k: found[k] for k in port} == port
        assert found["security_groups"] == []
        status, body = api.get(f"{version}/ports/{lb['vip_port_id']}")
        assert status == 200 and body["port"]["id"] == lb["vip_port_id"], body
    status, body = api.get("/v2.0/ports", fixed_ips=f"ip_address={lb['vip_address']}",
                           network_id=servers.PUBLIC_NETWORK)
    assert [p["id"] for p in body["ports"]] == [lb["vip_port_id"]], body
    # A filter no port fits, and one on an attribute ports lack, match nothing.
    assert api.get("/v2.0/ports", device_id=vip_device(str(uuid.uuid4()))) == (200, {"ports": []})
    assert api.get("/v2.0/ports", router_id="x") == (200, {"ports": []})
    status, body = api.get(f"/v2.0/ports/{uuid.uuid4()}")
    assert status == 404 and "Port" in body["faultstring"], body


def test_floating_ips_and_security_groups_are_none(api: servers.Client, network) -> None:
    lb = api.create_lb(name="neutron-fips")
    # What openstack.cloud's loadbalancer module asks after each create and on each run.
    assert list(network.ips(port_id=lb["vip_port_id"],
                            fixed_ip_address=lb["vip_address"])) == []
    assert list(network.security_groups()) == []
    for version in ("/v2.0", "/v2"):
        assert api.get(f"{version}/floatingips") == (200, {"floatingips": []})
        assert api.get(f"{version}/security-groups") == (200, {"security_groups": []})
        status, body = api.get(f"{version}/floatingips/{uuid.uuid4()}")
        assert status == 404 and "FloatingIP" in body["faultstring"], body


def test_subnets_resolve_by_name_through_the_sdk(server: servers.Server) -> None:
    # As docs/clients.md shows it: the endpoint alone, no per-service override.
    conn = openstack.connection.Connection(auth_type="none", auth={"endpoint": server.url})
    try:
        subnet = conn.network.find_subnet("public", ignore_missing=False)
        assert subnet.id == servers.PUBLIC_SUBNET and subnet.cidr == "198.18.0.0/20"
        assert conn.network.find_network("public").id == servers.PUBLIC_NETWORK
    finally:
        conn.close()


def test_the_endpoint_is_read_only(api: servers.Client) -> None:
    for path in ("/v2.0/floatingips", "/v2.0/ports", "/v2/networks"):
        status, _ = api.post(path, {"floatingip": {"floating_network_id": "x"}})
        assert status == 405, path
