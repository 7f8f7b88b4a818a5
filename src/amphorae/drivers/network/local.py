"""The local network driver's address book: networks and subnets declared in config,
addresses handed out from them and persisted in the database.

Plugging addresses into amphora namespaces builds on this (data-plane work); the API only
needs to resolve subnets and reserve VIP addresses in its own transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from amphorae.common import config, errors
from amphorae.db.models import IPAllocation
from amphorae.drivers.network import ownership, plumbing

ALLOCATION_ATTEMPTS = 20
_NS = uuid.UUID("5b0a7c1e-0d2f-4a57-9c1b-6f1f8e2a9d01")


@dataclasses.dataclass(frozen=True)
class Subnet:
    id: str
    name: str
    network_id: str
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway_ip: str

    @property
    def ip_version(self) -> int:
        return self.cidr.version

    def first_free(self, taken: set[str]) -> str | None:
        gateway = ipaddress.ip_address(self.gateway_ip)
        for host in self.cidr.hosts():
            if host != gateway and str(host) not in taken:
                return str(host)
        return None


@dataclasses.dataclass(frozen=True)
class Network:
    id: str
    name: str
    subnets: tuple[Subnet, ...]


def stable_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{name}"))


def _parse(entry: str) -> Network:
    name, _, cidr_text = entry.partition("=")
    cidr = ipaddress.ip_network(cidr_text.strip(), strict=False)
    name = name.strip()
    net_id = stable_id("network", name)
    subnet = Subnet(id=stable_id("subnet", name), name=name, network_id=net_id, cidr=cidr,
                    gateway_ip=str(next(cidr.hosts())))
    return Network(id=net_id, name=name, subnets=(subnet,))


@functools.cache
def networks() -> dict[str, Network]:
    nets = (_parse(e) for e in config.CONF.local_network.subnets)
    return {n.id: n for n in nets}


def subnets() -> dict[str, Subnet]:
    return {s.id: s for n in networks().values() for s in n.subnets}


class LocalNetworkDriver:
    def get_subnet(self, subnet_id: str) -> Subnet | None:
        return subnets().get(subnet_id)

    def get_network(self, network_id: str) -> Network | None:
        return networks().get(network_id)

    def get_port(self, session: Session, port_id: str) -> IPAllocation | None:
        return session.get(IPAllocation, port_id)

    def allocate(self, session: Session, subnet: Subnet, device_id: str, device_owner: str,
                 ip_address: str | None = None) -> IPAllocation:
        """Reserve an address (the given one, or the first free one) in the subnet."""
        taken = set(session.scalars(
            select(IPAllocation.ip_address).where(IPAllocation.subnet_id == subnet.id)))
        if ip_address is not None:
            if ipaddress.ip_address(ip_address) not in subnet.cidr:
                raise errors.ValidationError(
                    detail=f"IP address {ip_address} is not in subnet {subnet.id}.")
            if ip_address in taken or ip_address == subnet.gateway_ip:
                raise errors.Conflict(
                    f"The VIP IP address is already in use: {ip_address} on {subnet.id}")
            return self._insert(session, subnet, ip_address, device_id, device_owner)
        # A concurrent transaction may take the same free address first: try the next.
        for _ in range(ALLOCATION_ATTEMPTS):
            candidate = subnet.first_free(taken)
            if candidate is None:
                break
            try:
                return self._insert(session, subnet, candidate, device_id, device_owner)
            except errors.Conflict:
                taken.add(candidate)
        raise errors.Conflict(f"No more IP addresses available on subnet {subnet.id}.")

    def _insert(self, session: Session, subnet: Subnet, ip_address: str, device_id: str,
                device_owner: str) -> IPAllocation:
        port = IPAllocation(subnet_id=subnet.id, network_id=subnet.network_id,
                            ip_address=ip_address, device_id=device_id,
                            device_owner=device_owner)
        try:
            with session.begin_nested():
                session.add(port)
        except IntegrityError:
            raise errors.Conflict(
                f"The VIP IP address is already in use: {ip_address} on {subnet.id}") from None
        return port

    def release_device(self, session: Session, device_id: str) -> None:
        for port in session.scalars(
                select(IPAllocation).where(IPAllocation.device_id == device_id)):
            session.delete(port)


def bridge_name(subnet: Subnet) -> str:
    """The host bridge that carries the subnet's network in this deployment."""
    return plumbing.bridge_name(ownership.local_deployment(), subnet.network_id)
