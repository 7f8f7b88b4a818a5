"""The no-op network driver (``network_noop_driver``), as Octavia has it, for conformance
runs: every network, subnet and port id exists, addresses are made up from the ids
(in the shared address space, never routed here), nothing is stored or plugged."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import uuid
from collections.abc import Sequence

from amphorae.drivers.network import local
from amphorae.drivers.network.base import (
    Amphora,
    AmphoraPorts,
    Distribution,
    Network,
    NetworkDriver,
    Port,
    Subnet,
    VipPlug,
)

LOG = logging.getLogger(__name__)
NOOP_CIDR = ipaddress.ip_network("100.64.0.0/10")


def made_up_address(seed: str) -> str:
    offset = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")
    return str(NOOP_CIDR[2 + offset % (NOOP_CIDR.num_addresses - 3)])


def _made_up_subnet(subnet_id: str, network_id: str | None = None) -> Subnet:
    return Subnet(id=subnet_id, name=subnet_id,
                  network_id=network_id or local.stable_id("noop-network", subnet_id),
                  cidr=NOOP_CIDR, gateway_ip=str(NOOP_CIDR[1]))


def _port_id(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"noop-port:{seed}"))


class NoopNetworkDriver(NetworkDriver):
    serves_networks = True  # the local networks, so conformance runs can name them
    distributes = True  # a distributor that is not there, as every port here

    def ensure_distributor(self, distribution: Distribution) -> None:
        LOG.debug("noop network: distributor of %s", distribution.load_balancer_id)

    def get_subnet(self, subnet_id: str, network_id: str | None = None) -> Subnet | None:
        return local.subnets().get(subnet_id) or _made_up_subnet(subnet_id, network_id)

    def get_network(self, network_id: str) -> Network | None:
        found = local.networks().get(network_id)
        if found is not None:
            return found
        subnet = _made_up_subnet(f"net-{network_id}", network_id)
        return Network(id=network_id, name=network_id, subnets=(subnet,))

    def list_networks(self) -> list[Network]:
        return list(local.networks().values())

    def get_port(self, port_id: str) -> Port | None:
        subnet = _made_up_subnet(f"port-{port_id}")
        return Port(id=port_id, network_id=subnet.network_id, subnet_id=subnet.id,
                    ip_address=made_up_address(port_id))

    def allocate_vip(self, load_balancer_id: str, subnet: Subnet,
                     ip_address: str | None = None, project_id: str | None = None) -> Port:
        seed = f"{load_balancer_id}/{subnet.id}"
        return Port(id=_port_id(seed), network_id=subnet.network_id, subnet_id=subnet.id,
                    ip_address=ip_address or made_up_address(seed),
                    device_id=local.vip_device(load_balancer_id), device_owner="Octavia")

    def adopt_vip_port(self, load_balancer_id: str, port_id: str) -> Port:
        port = self.get_port(port_id)
        assert port is not None
        return port

    def deallocate_vip(self, load_balancer_id: str) -> None:
        LOG.debug("noop network: deallocate the VIP of %s", load_balancer_id)

    def plug(self, amphora: Amphora, vip: VipPlug,
             member_subnets: Sequence[Subnet]) -> AmphoraPorts:
        LOG.debug("noop network: plug %s", amphora.id)
        # Every amphora gets its own VIP-network port, as from Octavia's no-op driver.
        seed = f"{amphora.id}/{vip.subnet_id}"
        vrrp = Port(id=_port_id(seed), network_id="", subnet_id=vip.subnet_id,
                    ip_address=made_up_address(seed), device_id=local.amphora_device(amphora.id))
        members = {s.id: Port(id=_port_id(f"{amphora.id}/{s.id}"), network_id=s.network_id,
                              subnet_id=s.id,
                              ip_address=made_up_address(f"{amphora.id}/{s.id}"))
                   for s in member_subnets}
        return AmphoraPorts(vrrp_port=vrrp, member_ports=members)

    def unplug(self, amphora_id: str, compute_id: str | None) -> None:
        LOG.debug("noop network: unplug %s", amphora_id)
