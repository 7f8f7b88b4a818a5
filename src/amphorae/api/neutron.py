"""The network driver's networks and subnets, served read-only at Neutron's paths when
the driver says so (the local and no-op drivers: there is no Neutron the clients could
ask), so clients that resolve `--vip-subnet-id public` against the endpoint find them."""

from __future__ import annotations

from typing import Any

import falcon

from amphorae.common import errors
from amphorae.drivers import registry
from amphorae.drivers.network import base as net


def subnet_view(subnet: net.Subnet) -> dict[str, Any]:
    cidr = subnet.cidr
    # Never enumerate hosts: an IPv6 /64 has 2**64 of them.
    start, end = cidr.network_address + 2, cidr.broadcast_address - (cidr.version == 4)
    return {
        "id": subnet.id, "name": subnet.name, "network_id": subnet.network_id,
        "cidr": str(subnet.cidr), "ip_version": subnet.ip_version,
        "gateway_ip": subnet.gateway_ip, "enable_dhcp": False,
        "allocation_pools": [{"start": str(start), "end": str(end)}] if start <= end else [],
        "host_routes": [], "dns_nameservers": [], "description": "", "tags": [],
        "project_id": "", "tenant_id": "",
    }


def network_view(network: net.Network) -> dict[str, Any]:
    return {
        "id": network.id, "name": network.name, "subnets": [s.id for s in network.subnets],
        "status": "ACTIVE", "admin_state_up": True, "shared": True, "router:external": True,
        "mtu": 1500, "description": "", "tags": [], "project_id": "", "tenant_id": "",
    }


def _matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
    for key in ("id", "name", "network_id"):
        if key in params:
            wanted = params[key] if isinstance(params[key], list) else [params[key]]
            if key not in item or item[key] not in wanted:
                return False
    return True


class _Collection:
    key = ""

    def items(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {self.key: [i for i in self.items() if _matches(i, req.params)]}


class _Item:
    key = ""
    label = ""
    collection: _Collection

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        for item in self.collection.items():
            if item["id"] == item_id:
                resp.media = {self.key: item}
                return
        raise errors.NotFound(resource=self.label, id=item_id)


class Subnets(_Collection):
    key = "subnets"

    def items(self) -> list[dict[str, Any]]:
        return [subnet_view(s) for n in registry.shared_network().list_networks()
                for s in n.subnets]


class Networks(_Collection):
    key = "networks"

    def items(self) -> list[dict[str, Any]]:
        return [network_view(n) for n in registry.shared_network().list_networks()]


class Subnet(_Item):
    key, label, collection = "subnet", "Subnet", Subnets()


class Network(_Item):
    key, label, collection = "network", "Network", Networks()


def add_routes(app: falcon.App) -> None:
    if not registry.shared_network().serves_networks:
        return
    # openstackclient asks the endpoint at /v2.0/... or, given a bare endpoint, /v2/...
    for version in ("/v2.0", "/v2"):
        app.add_route(f"{version}/subnets", Subnets())
        app.add_route(f"{version}/subnets/{{item_id}}", Subnet())
        app.add_route(f"{version}/networks", Networks())
        app.add_route(f"{version}/networks/{{item_id}}", Network())
