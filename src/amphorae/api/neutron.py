"""The network driver's networks, subnets and ports, served read-only at Neutron's paths
when the driver says so (the local and no-op drivers: there is no Neutron the clients
could ask), so clients that resolve `--vip-subnet-id public` against the endpoint find
them. What else common clients look up on the way (openstack.cloud's load balancer module
lists the VIP's floating IPs) is answered with what exists here: nothing, as empty
lists."""

from __future__ import annotations

from collections.abc import Callable
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


def port_view(port: net.Port) -> dict[str, Any]:
    return {
        "id": port.id, "name": "", "network_id": port.network_id,
        "fixed_ips": [{"subnet_id": port.subnet_id, "ip_address": port.ip_address}],
        "device_id": port.device_id or "", "device_owner": port.device_owner or "",
        "status": "ACTIVE", "admin_state_up": True, "allowed_address_pairs": [],
        "security_groups": [], "port_security_enabled": False, "description": "",
        "tags": [], "project_id": "", "tenant_id": "",
    }


# Query parameters that shape the answer rather than filter it (Neutron's paging, sorting
# and field selection): ignored, as every item fits in one page.
_NOT_FILTERS = {"fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir"}


def _as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _same(have: Any, want: str) -> bool:
    return str(have).lower() == want.lower() if isinstance(have, bool) else str(have) == want


def _matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
    """Neutron's filters: each parameter names an attribute and the values it may have
    (a list attribute must hold all of them; ``fixed_ips=ip_address=…`` matches a port's
    addresses). A filter on an attribute the item lacks matches nothing."""
    for key, value in params.items():
        wanted = _as_list(value)
        if key in _NOT_FILTERS:
            continue
        if key == "fixed_ips" and key in item:
            if not all(any(_same(ip.get(k), v) for ip in item[key])
                       for k, _, v in (w.partition("=") for w in wanted)):
                return False
        elif key not in item:
            return False
        elif isinstance(item[key], list):
            if not all(w in item[key] for w in wanted):
                return False
        elif not any(_same(item[key], w) for w in wanted):
            return False
    return True


class _Collection:
    """A list resource: ``items`` gives every item, the query filters them."""

    def __init__(self, key: str, items: Callable[[], list[dict[str, Any]]]) -> None:
        self.key, self.items = key, items

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {self.key: [i for i in self.items() if _matches(i, req.params)]}


class _Item:
    """One item of a collection, by id."""

    def __init__(self, key: str, label: str, collection: _Collection) -> None:
        self.key, self.label, self.collection = key, label, collection

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        for item in self.collection.items():
            if item["id"] == item_id:
                resp.media = {self.key: item}
                return
        raise errors.NotFound(resource=self.label, id=item_id)


def _subnets() -> list[dict[str, Any]]:
    return [subnet_view(s) for n in registry.shared_network().list_networks()
            for s in n.subnets]


def _networks() -> list[dict[str, Any]]:
    return [network_view(n) for n in registry.shared_network().list_networks()]


def _ports() -> list[dict[str, Any]]:
    return [port_view(p) for p in registry.shared_network().list_ports()]


def _nothing() -> list[dict[str, Any]]:
    """What does not exist here (floating IPs, security groups): an empty list is the
    true answer to any query."""
    return []


# path, collection key, item key, resource name in a 404, items
RESOURCES = (
    ("networks", "networks", "network", "Network", _networks),
    ("subnets", "subnets", "subnet", "Subnet", _subnets),
    ("ports", "ports", "port", "Port", _ports),
    ("floatingips", "floatingips", "floatingip", "FloatingIP", _nothing),
    ("security-groups", "security_groups", "security_group", "SecurityGroup", _nothing),
)


def add_routes(app: falcon.App) -> None:
    if not registry.shared_network().serves_networks:
        return
    for path, key, item_key, label, items in RESOURCES:
        collection = _Collection(key, items)
        item = _Item(item_key, label, collection)
        # openstackclient asks at /v2.0/... or, given a bare endpoint, /v2/...
        for version in ("/v2.0", "/v2"):
            app.add_route(f"{version}/{path}", collection)
            app.add_route(f"{version}/{path}/{{item_id}}", item)
