"""``[networking] allow_invisible_resource_usage`` against the real Keystone and Neutron of
tests/cloud.py: `amphorae api` with Keystone auth and the Neutron driver (no worker: only
the API's lookups and VIP allocation matter), two projects' members with real tokens.

False (Octavia's default): a member of project-b naming project-a's private network,
subnet or port for a VIP gets Octavia's ``400 <Kind> <id> not found.``, while a shared
network and project-a's own member's requests are accepted. True: the service user's
lookups only, so project-b's member may use project-a's subnet (a port of another
project stays refused either way).

Networks: project-a's private 198.19.168.0/24, an admin's shared 198.19.169.0/24
(Neutron objects only, no packet is sent), named ``amph-vis-<hex>``; the VIP ports the
API made and the networks are removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
import requests

from tests import cloud as osdev
from tests import servers


@pytest.fixture(scope="module")
def nets(cloud: osdev.Cloud) -> Iterator[dict[str, Any]]:
    """project-a's private network, subnet and port, and an admin's shared network."""
    tag = secrets.token_hex(3)
    owner, admin = cloud.connect(), cloud.admin()
    made: list[Any] = []
    try:
        private = owner.network.create_network(name=f"amph-vis-{tag}-a")
        made.append(private)
        subnet = owner.network.create_subnet(name=f"amph-vis-{tag}-a", network_id=private.id,
                                             ip_version=4, cidr="198.19.168.0/24")
        port = owner.network.create_port(name=f"amph-vis-{tag}-a", network_id=private.id)
        shared = admin.network.create_network(name=f"amph-vis-{tag}-shared", shared=True)
        made.append(shared)
        shared_subnet = admin.network.create_subnet(
            name=f"amph-vis-{tag}-shared", network_id=shared.id, ip_version=4,
            cidr="198.19.169.0/24")
        yield {"network": private.id, "subnet": subnet.id, "port": port.id,
               "shared_subnet": shared_subnet.id}
    finally:
        for net in made:
            for p in admin.network.ports(network_id=net.id):
                with contextlib.suppress(openstack.exceptions.SDKException):
                    admin.network.delete_port(p)
            admin.network.delete_network(net, ignore_missing=True)


@contextlib.contextmanager
def _api(cloud: osdev.Cloud, state: Path, allow_invisible: bool) -> Iterator[str]:
    login = cloud.service_login()
    extra = f"""
[api_settings]
auth_strategy = keystone

[keystone_authtoken]
www_authenticate_uri = {cloud.auth_url}
{login}service_token_roles_required = true

[service_auth]
{login}
[neutron]
region_name = {osdev.REGION}
valid_interfaces = internal

[controller_worker]
network_driver = allowed_address_pairs_driver
compute_driver = compute_noop_driver
amphora_driver = amphora_noop_driver

[networking]
allow_invisible_resource_usage = {allow_invisible}
"""
    with servers.running_api("sqlite", state, "vis", extra) as server:
        yield server.url


@pytest.fixture(scope="module")
def apis(cloud: osdev.Cloud, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[bool, str]]:
    """allow_invisible_resource_usage -> the URL of an API run with it."""
    with _api(cloud, tmp_path_factory.mktemp("amph-vis-f"), False) as strict, \
            _api(cloud, tmp_path_factory.mktemp("amph-vis-t"), True) as lenient:
        yield {False: strict, True: lenient}


def _post(cloud: osdev.Cloud, url: str, user: str, **vip: str) -> tuple[int, dict[str, Any]]:
    """POST a load balancer as ``user`` (a member of the project in its name)."""
    project = "project-a" if user.startswith("project-a") else "project-b"
    token = cloud.connect(user, project).auth_token
    resp = requests.post(f"{url}/v2/lbaas/loadbalancers", json={"loadbalancer": vip},
                         headers={"X-Auth-Token": token}, timeout=60)
    return resp.status_code, resp.json()


def test_another_projects_network_subnet_and_port_are_not_found(
        cloud: osdev.Cloud, apis: dict[bool, str], nets: dict[str, Any]) -> None:
    for field, kind in (("vip_network_id", "Network"), ("vip_subnet_id", "Subnet"),
                        ("vip_port_id", "Port")):
        resource = nets[kind.lower()]
        status, body = _post(cloud, apis[False], "project-b-member", **{field: resource})
        assert (status, body["faultstring"]) == (400, f"{kind} {resource} not found."), body


def test_own_and_shared_networks_are_accepted(
        cloud: osdev.Cloud, apis: dict[bool, str], nets: dict[str, Any]) -> None:
    status, body = _post(cloud, apis[False], "project-a-member", vip_subnet_id=nets["subnet"])
    assert status == 201, body
    assert body["loadbalancer"]["vip_subnet_id"] == nets["subnet"]
    status, body = _post(cloud, apis[False], "project-b-member",
                         vip_subnet_id=nets["shared_subnet"])
    assert status == 201, body


def test_with_invisible_usage_allowed_the_service_user_looks_up(
        cloud: osdev.Cloud, apis: dict[bool, str], nets: dict[str, Any]) -> None:
    status, body = _post(cloud, apis[True], "project-b-member", vip_subnet_id=nets["subnet"])
    assert status == 201, body
    # A port stays its project's: adopted only by a load balancer of that project.
    status, body = _post(cloud, apis[True], "project-b-member", vip_port_id=nets["port"])
    assert (status, body["faultstring"]) == (400, f"Port {nets['port']} not found."), body
