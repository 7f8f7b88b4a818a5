"""No-op drivers, as Octavia has them, for conformance runs: the API and the worker run
their whole logic with no amphora, port or agent anywhere, and any subnet id exists.

Selected with ``[controller_worker] compute_driver = compute_noop_driver``,
``network_driver = network_noop_driver``, ``amphora_driver = amphora_noop_driver``.
Never the default.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from amphorae.drivers.network import local, ports

LOG = logging.getLogger(__name__)
# Addresses handed out on made-up subnets: the shared address space, never routed here.
NOOP_CIDR = ipaddress.ip_network("100.64.0.0/10")


@dataclasses.dataclass(frozen=True)
class NoopAmphora:
    compute_id: str
    management_ip: str
    cert_expiration: dt.datetime
    boot_seconds: float = 0.0


class NoopCompute:
    def create(self, amphora_id: str) -> NoopAmphora:
        LOG.debug("noop compute: create %s", amphora_id)
        return NoopAmphora(compute_id=str(uuid.uuid5(uuid.NAMESPACE_OID, amphora_id)),
                           management_ip="192.0.2.1",
                           cert_expiration=dt.datetime(2100, 1, 1))

    def delete(self, amphora_id: str) -> None:
        LOG.debug("noop compute: delete %s", amphora_id)

    def alive(self, amphora_id: str) -> bool:
        return True


class NoopPlugger:
    def plug(self, namespace: str, ports: Sequence[ports.Port], mac_seed: str) -> None:
        LOG.debug("noop network: plug %d ports into %s", len(ports), namespace)

    def unplug_all(self, namespace: str, ifnames: Sequence[str] = ()) -> None:
        LOG.debug("noop network: unplug %s", namespace)


class NoopAmphoraDriver:
    def apply(self, amp: Any, lb: Any, tls: Any, vrrp: Any, vip_subnet: Any) -> None:
        LOG.debug("noop amphora driver: %s would serve %d listeners", amp.id,
                  len(lb.listeners))


class NoopNetworkDriver(local.LocalNetworkDriver):
    """Every subnet and network id exists; addresses come from :data:`NOOP_CIDR`."""

    def get_subnet(self, subnet_id: str) -> local.Subnet | None:
        return local.subnets().get(subnet_id) or _made_up(subnet_id)

    def get_network(self, network_id: str) -> local.Network | None:
        found = local.networks().get(network_id)
        if found is not None:
            return found
        subnet = _made_up(f"net-{network_id}")
        subnet = dataclasses.replace(subnet, network_id=network_id)
        return local.Network(id=network_id, name=network_id, subnets=(subnet,))


def _made_up(subnet_id: str) -> local.Subnet:
    return local.Subnet(id=subnet_id, name=subnet_id, network_id=local.stable_id(
        "noop-network", subnet_id), cidr=NOOP_CIDR, gateway_ip=str(NOOP_CIDR[1]))
