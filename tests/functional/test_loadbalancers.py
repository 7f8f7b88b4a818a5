"""Load balancers through the HTTP API: shapes as Octavia answers them, status machine."""

from __future__ import annotations

from tests.servers import PROJECT, PUBLIC_NETWORK, PUBLIC_SUBNET

LB_KEYS = {
    "id", "name", "description", "provisioning_status", "operating_status", "admin_state_up",
    "project_id", "tenant_id", "created_at", "updated_at", "vip_address", "vip_port_id",
    "vip_subnet_id", "vip_network_id", "vip_sg_ids", "additional_vips", "listeners", "pools",
    "provider", "flavor_id", "vip_qos_policy_id", "tags", "availability_zone", "vip_vnic_type",
}


def test_create_matches_octavia_shape(api):
    status, body = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "name": "sample", "vip_subnet_id": PUBLIC_SUBNET, "description": "anchor"}})
    assert status == 201
    lb = body["loadbalancer"]
    assert set(lb) == LB_KEYS
    assert lb["provisioning_status"] == "PENDING_CREATE"
    assert lb["operating_status"] == "OFFLINE"
    assert lb["project_id"] == lb["tenant_id"] == PROJECT
    assert lb["vip_network_id"] == PUBLIC_NETWORK
    assert lb["vip_address"].startswith("198.18.")
    assert lb["provider"] == "amphora"
    assert lb["listeners"] == [] and lb["pools"] == [] and lb["tags"] == []
    assert lb["updated_at"] is None


def test_pending_lb_is_immutable(api):
    _, body = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "vip_subnet_id": PUBLIC_SUBNET}})
    lb_id = body["loadbalancer"]["id"]
    status, err = api.put(f"/v2/lbaas/loadbalancers/{lb_id}", {"loadbalancer": {"name": "x"}})
    assert status == 409
    assert err == {"faultcode": "Client", "debuginfo": None,
                   "faultstring": f"Invalid state PENDING_CREATE of loadbalancer resource {lb_id}"}
    api.settle(lb_id)
    status, body = api.put(f"/v2/lbaas/loadbalancers/{lb_id}", {"loadbalancer": {"name": "x"}})
    assert status == 200
    assert body["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
    assert body["loadbalancer"]["name"] == "x"


def test_missing_and_deleted_are_404(api):
    lb = api.create_lb(name="gone")
    status, _ = api.delete(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert status == 204
    status, body = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert status == 200 and body["loadbalancer"]["provisioning_status"] == "PENDING_DELETE"
    api.settle(lb["id"])
    status, body = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert status == 404
    assert body["faultstring"] == f"Load Balancer {lb['id']} not found."


def test_sdk_create_show_list_update_delete(sdk):
    lb = sdk.create_load_balancer(name="sdk-lb", vip_subnet_id=PUBLIC_SUBNET,
                                  tags=["blue", "web"])
    assert lb.provisioning_status == "PENDING_CREATE"
    assert sdk.get_load_balancer(lb.id).name == "sdk-lb"
    assert lb.id in {x.id for x in sdk.load_balancers(tags="blue")}
    assert lb.id not in {x.id for x in sdk.load_balancers(**{"not-tags": "blue"})}


def test_sdk_update_paginate_delete(sdk, api):
    made = [sdk.create_load_balancer(name=f"sdk-page-{i}", vip_subnet_id=PUBLIC_SUBNET,
                                     tags=["sdk-page"]) for i in range(3)]
    for lb in made:
        api.settle(lb.id)
    # limit=1 makes openstacksdk follow the next links page by page.
    paged = [x.id for x in sdk.load_balancers(limit=1, tags="sdk-page")]
    assert paged == [x.id for x in made]
    updated = sdk.update_load_balancer(made[0], name="sdk-renamed", description="d")
    assert updated.name == "sdk-renamed" and updated.provisioning_status == "PENDING_UPDATE"
    api.settle(made[0].id)
    assert sdk.get_load_balancer(made[0].id).description == "d"
    for lb in made:
        sdk.delete_load_balancer(lb)
        api.settle(lb.id)
    assert [x.id for x in sdk.load_balancers(tags="sdk-page")] == []


def test_cli_create_show_list_set_unset_delete(cli, api):
    lb = cli("loadbalancer", "create", "--name", "cli-lb", "--vip-subnet-id", PUBLIC_SUBNET,
             "--description", "d", "--tag", "a")
    assert lb["name"] == "cli-lb" and lb["provisioning_status"] == "PENDING_CREATE"
    api.settle(lb["id"])
    cli.run("loadbalancer", "set", "--name", "cli-lb2", "--tag", "b", lb["id"])
    shown = cli("loadbalancer", "show", lb["id"])
    assert shown["name"] == "cli-lb2" and shown["provisioning_status"] == "PENDING_UPDATE"
    assert sorted(shown["tags"].split("\n") if isinstance(shown["tags"], str)
                  else shown["tags"]) == ["a", "b"]
    api.settle(lb["id"])
    cli.run("loadbalancer", "unset", "--description", lb["id"])
    assert cli("loadbalancer", "show", lb["id"])["description"] == ""
    api.settle(lb["id"])
    names = [x["name"] for x in cli("loadbalancer", "list", "--name", "cli-lb2")]
    assert names == ["cli-lb2"]
    cli.run("loadbalancer", "delete", lb["id"])
    api.settle(lb["id"])
    assert cli.run("loadbalancer", "show", lb["id"], check=False).returncode != 0
