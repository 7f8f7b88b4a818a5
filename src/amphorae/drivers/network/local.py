"""The local network driver (``network_local_driver``): networks and subnets declared
in ``[local_network] subnets``, addresses handed out from them and kept in the database
(``ip_allocation``: Neutron's ports, cut down), and amphorae plugged into the host's
bridges with veth pairs (ports.py).

Its address book writes through :func:`engine.transaction`, which joins a write
transaction its caller holds: the API's VIP allocation commits or rolls back with the
load balancer it belongs to.
"""

from __future__ import annotations

import functools
import ipaddress
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from amphorae.common import config, errors
from amphorae.db import engine
from amphorae.db.models import IPAllocation
from amphorae.drivers.network import distributor, ownership, plumbing, ports
from amphorae.drivers.network.base import (
    Amphora,
    AmphoraPorts,
    Distribution,
    Network,
    NetworkDriver,
    OwnedResource,
    Port,
    Subnet,
    VipPlug,
)

ALLOCATION_ATTEMPTS = 20
_NS = uuid.UUID("5b0a7c1e-0d2f-4a57-9c1b-6f1f8e2a9d01")


VIP_OWNER = "Octavia"  # device_owner of the VIP ports this driver made
USER_PORT = "user"  # device_owner of a user's port serving as a VIP (kept on release)
AMPHORA_OWNER = "compute:amphora"
DISTRIBUTOR_OWNER = "network:distributor"
DISTRIBUTION = "distribution"  # the distribution network's name (not a user's network)
DISTRIBUTOR_NS_PREFIX = plumbing.PREFIX + "d"
DISTRIBUTOR_KIND = "distributor"  # an OwnedResource of this driver


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


def distribution_subnet() -> Subnet:
    """The network between distributors and ACTIVE_ACTIVE amphorae (no gateway: the host
    holds no address on it)."""
    return Subnet(id=stable_id("subnet", DISTRIBUTION), name=DISTRIBUTION,
                  network_id=stable_id("network", DISTRIBUTION),
                  cidr=ipaddress.ip_network(config.CONF.local_network.distribution_cidr),
                  gateway_ip=None)


def distributor_namespace(deployment: str, load_balancer_id: str) -> str:
    """The distributor's namespace: this deployment's (so a cleanup finds its own) and
    the load balancer's."""
    return f"{DISTRIBUTOR_NS_PREFIX}{deployment}-{load_balancer_id}"


def distributor_device(load_balancer_id: str) -> str:
    return f"distributor-{load_balancer_id}"


def bridge_name(subnet: Subnet) -> str:
    """The host bridge that carries the subnet's network in this deployment."""
    return plumbing.bridge_name(ownership.local_deployment(), subnet.network_id)


def vip_device(load_balancer_id: str) -> str:
    return f"lb-{load_balancer_id}"


def amphora_device(amphora_id: str) -> str:
    return f"amphora-{amphora_id}"


def _first_free(subnet: Subnet, taken: set[str]) -> str | None:
    for host in subnet.cidr.hosts():
        if str(host) != subnet.gateway_ip and str(host) not in taken:
            return str(host)
    return None


def _port(row: IPAllocation) -> Port:
    return Port(id=row.port_id, network_id=row.network_id, subnet_id=row.subnet_id,
                ip_address=row.ip_address, device_id=row.device_id,
                device_owner=row.device_owner)


class LocalNetworkDriver(NetworkDriver):
    serves_networks = True
    joins_transaction = True  # engine.transaction joins the API's

    def __init__(self, url: str | None = None,
                 plugger: ports.PortPlugger | None = None) -> None:
        self.url = url
        self._plugger = plugger

    @property
    def plugger(self) -> ports.PortPlugger:
        if self._plugger is None:  # the API process never plugs: no plumbing there
            self._plugger = ports.PortPlugger()
        return self._plugger

    # -- lookups -----------------------------------------------------------------------

    def get_subnet(self, subnet_id: str, network_id: str | None = None) -> Subnet | None:
        return subnets().get(subnet_id)

    def get_network(self, network_id: str) -> Network | None:
        return networks().get(network_id)

    def list_networks(self) -> list[Network]:
        return list(networks().values())

    def get_port(self, port_id: str) -> Port | None:
        with engine.transaction(write=False, url=self.url) as session:
            row = session.get(IPAllocation, port_id)
            return None if row is None else _port(row)

    def list_ports(self) -> list[Port]:
        with engine.transaction(write=False, url=self.url) as session:
            return [_port(row) for row in session.scalars(
                select(IPAllocation).order_by(IPAllocation.port_id))]

    @property
    def _owner(self) -> str:
        """The deployment whose bridges and distributors these are."""
        return self.plugger.owner or ownership.local_deployment()

    def release_host(self) -> None:
        """The bridges of this deployment's networks (one another deployment made under
        the same name stays: its alias names its owner)."""
        owner = self._owner
        for network in networks().values():
            for subnet in network.subnets:
                self.plugger.plumbing.delete_bridge(bridge_name(subnet), owner=owner)
        self.plugger.plumbing.delete_bridge(bridge_name(distribution_subnet()), owner=owner)

    # -- VIPs --------------------------------------------------------------------------

    def allocate_vip(self, load_balancer_id: str, subnet: Subnet,
                     ip_address: str | None = None, project_id: str | None = None) -> Port:
        with engine.transaction(url=self.url) as session:
            return self._allocate(session, subnet, vip_device(load_balancer_id), VIP_OWNER,
                                  ip_address)

    def adopt_vip_port(self, load_balancer_id: str, port_id: str) -> Port:
        with engine.transaction(url=self.url) as session:
            row = session.get(IPAllocation, port_id)
            if row is None:
                raise errors.InvalidSubresource(resource="Port", id=port_id)
            if row.device_id:
                raise errors.BadRequest(
                    f"Port {port_id} is already used by device {row.device_id}.")
            row.device_id, row.device_owner = vip_device(load_balancer_id), USER_PORT
            return _port(row)

    def deallocate_vip(self, load_balancer_id: str) -> None:
        with engine.transaction(url=self.url) as session:
            for row in session.scalars(select(IPAllocation).where(
                    IPAllocation.device_id == vip_device(load_balancer_id))):
                if row.device_owner == USER_PORT:
                    row.device_id = row.device_owner = None
                else:
                    session.delete(row)

    def _allocate(self, session: Session, subnet: Subnet, device_id: str, device_owner: str,
                  ip_address: str | None = None) -> Port:
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
            candidate = _first_free(subnet, taken)
            if candidate is None:
                break
            try:
                return self._insert(session, subnet, candidate, device_id, device_owner)
            except errors.Conflict:
                taken.add(candidate)
        raise errors.Conflict(f"No more IP addresses available on subnet {subnet.id}.")

    @staticmethod
    def _insert(session: Session, subnet: Subnet, ip_address: str, device_id: str,
                device_owner: str) -> Port:
        row = IPAllocation(subnet_id=subnet.id, network_id=subnet.network_id,
                           ip_address=ip_address, device_id=device_id,
                           device_owner=device_owner)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            raise errors.Conflict(
                f"The VIP IP address is already in use: {ip_address} on {subnet.id}") from None
        return _port(row)

    # -- amphorae ----------------------------------------------------------------------

    def plug(self, amphora: Amphora, vip: VipPlug,
             member_subnets: Sequence[Subnet]) -> AmphoraPorts:
        vip_subnet = self.get_subnet(vip.subnet_id)
        if vip_subnet is None:
            raise errors.ValidationError(detail=f"subnet {vip.subnet_id} is unknown")
        own_vip_port = vip.vrrp or vip.distributed
        extra = [distribution_subnet()] if vip.distributed else []
        device = amphora_device(amphora.id)
        with engine.transaction(url=self.url) as session:
            own = {row.subnet_id: _port(row) for row in session.scalars(
                select(IPAllocation).where(IPAllocation.device_id == device))}
            for subnet in (*([vip_subnet] if own_vip_port else []), *member_subnets,
                           *extra):
                if subnet.id not in own:
                    own[subnet.id] = self._allocate(session, subnet, device, AMPHORA_OWNER)
        vrrp_port = own.get(vip_subnet.id) if own_vip_port else None
        vip_addresses = [vrrp_port.ip_address] if vrrp_port else list(vip.addresses)
        plan = [_plan(ports.VIP_IFNAME, vip_subnet, vip_addresses, gateway=True,
                      mac_seed=None if own_vip_port else f"lb-{vip.load_balancer_id}")]
        plan += [_plan(ports.member_ifname(s.id), s, [own[s.id].ip_address])
                 for s in sorted(member_subnets, key=lambda s: s.id)]
        plan += [_plan(ports.DIST_IFNAME, s, [own[s.id].ip_address]) for s in extra]
        if vip.distributed:  # before any port: no interface may answer ARP for a VIP
            distributor.serve_without_arp(self.plugger.plumbing, amphora.compute_id,
                                          vip.addresses)
        self.plugger.plug(amphora.compute_id, plan, mac_seed=amphora.id)
        return AmphoraPorts(vrrp_port=vrrp_port,
                            member_ports={s.id: own[s.id] for s in member_subnets})

    def unplug(self, amphora_id: str, compute_id: str | None) -> None:
        device = amphora_device(amphora_id)
        with engine.transaction(write=False, url=self.url) as session:
            subnet_ids = list(session.scalars(select(IPAllocation.subnet_id).where(
                IPAllocation.device_id == device)))
        if compute_id:  # the interfaces first: a crash leaves addresses for the next run
            self.plugger.unplug_all(compute_id, [
                ports.VIP_IFNAME, ports.DIST_IFNAME,
                *(ports.member_ifname(s) for s in subnet_ids)])
        with engine.transaction(url=self.url) as session:
            session.execute(delete(IPAllocation).where(IPAllocation.device_id == device))

    # -- ACTIVE_ACTIVE distributors -----------------------------------------------------

    distributes = True

    @property
    def _distributor(self) -> distributor.Distributor:
        return distributor.Distributor(self.plugger.plumbing)

    def _namespace(self, load_balancer_id: str) -> str:
        return distributor_namespace(self._owner, load_balancer_id)

    def _amphora_addresses(self, d: Distribution) -> dict[str, str]:
        """The serving amphorae's addresses on the distribution network, by id."""
        with engine.transaction(write=False, url=self.url) as session:
            found = dict(session.execute(
                select(IPAllocation.device_id, IPAllocation.ip_address).where(
                    IPAllocation.subnet_id == distribution_subnet().id,
                    IPAllocation.device_id.in_([amphora_device(a) for a in d.serving]))
            ).tuples().all())
        missing = [a for a in d.serving if amphora_device(a) not in found]
        if missing:
            raise errors.ValidationError(
                detail=f"amphorae {', '.join(missing)} have no distribution port")
        return {a: found[amphora_device(a)] for a in d.serving}

    def _distribution(self, d: Distribution) -> distributor.Distribution:
        """Our Distribution as the namespace's: the distributor's two addresses (made on
        first use, with the bridges) and the amphorae's on the distribution network."""
        vip_subnet = self.get_subnet(d.subnet_id)
        if vip_subnet is None:
            raise errors.ValidationError(detail=f"subnet {d.subnet_id} is unknown")
        back = distribution_subnet()
        device = distributor_device(d.load_balancer_id)
        with engine.transaction(url=self.url) as session:
            own = {row.subnet_id: row.ip_address for row in session.scalars(
                select(IPAllocation).where(IPAllocation.device_id == device))}
            for subnet in (vip_subnet, back):
                if subnet.id not in own:
                    own[subnet.id] = self._allocate(session, subnet, device,
                                                    DISTRIBUTOR_OWNER).ip_address
        address = self._amphora_addresses(d)
        for subnet in (vip_subnet, back):
            self.plugger.plumbing.ensure_bridge(bridge_name(subnet), owner=self._owner)
        return distributor.Distribution(
            namespace=self._namespace(d.load_balancer_id),
            front=distributor.Leg(bridge_name(vip_subnet),
                                  f"{own[vip_subnet.id]}/{vip_subnet.cidr.prefixlen}"),
            back=distributor.Leg(bridge_name(back), f"{own[back.id]}/{back.cidr.prefixlen}"),
            vips=d.vips, amphorae=tuple(sorted(address.values())),
            draining=tuple(sorted(address[a] for a in d.draining if a in address)))

    def ensure_distributor(self, distribution: Distribution) -> None:
        self._distributor.ensure(self._distribution(distribution))

    def remove_distributor(self, load_balancer_id: str) -> None:
        self._distributor.remove(self._namespace(load_balancer_id))
        with engine.transaction(url=self.url) as session:
            session.execute(delete(IPAllocation).where(
                IPAllocation.device_id == distributor_device(load_balancer_id)))

    def owned_resources(self) -> list[OwnedResource]:
        """This deployment's distributors: one whose load balancer has no live row (a
        worker stopped between deleting the rows and the namespace) is an orphan."""
        prefix = self._namespace("")
        p = self.plugger.plumbing
        return [OwnedResource(kind=DISTRIBUTOR_KIND, id=ns, name=ns,
                              created_at=p.netns_created(ns),
                              load_balancer_id=ns[len(prefix):])
                for ns in p.netns_list() if ns.startswith(prefix)]

    def remove_resource(self, resource: OwnedResource) -> None:
        if resource.kind == DISTRIBUTOR_KIND and resource.load_balancer_id:
            self.remove_distributor(resource.load_balancer_id)

    def distributor_idle(self, load_balancer_id: str, amphora_id: str) -> float:
        with engine.transaction(write=False, url=self.url) as session:
            address = session.scalar(select(IPAllocation.ip_address).where(
                IPAllocation.device_id == amphora_device(amphora_id),
                IPAllocation.subnet_id == distribution_subnet().id))
        if address is None:
            return float("inf")
        return self._distributor.idle_seconds(self._namespace(load_balancer_id), address)

    def distributor_drift(self, distribution: Distribution) -> list[str]:
        # Read-only: what ensure_distributor would make is only looked up, not made.
        namespace = self._namespace(distribution.load_balancer_id)
        found: list[str] = []
        if self._distributor.serving(namespace) != sorted(
                self._amphora_addresses(distribution).values()):
            found.append("distributor: nexthops differ")
        if sorted(self._distributor.proxied(namespace)) != sorted(distribution.vips):
            found.append("distributor: VIPs differ")
        return found


def _plan(ifname: str, subnet: Subnet, addresses: list[str], gateway: bool = False,
          mac_seed: str | None = None) -> ports.Port:
    prefix = subnet.cidr.prefixlen
    return ports.Port(ifname=ifname, bridge=bridge_name(subnet),
                      host_cidr=f"{subnet.gateway_ip}/{prefix}" if subnet.gateway_ip else None,
                      addresses=tuple(f"{a}/{prefix}" for a in addresses),
                      gateway=subnet.gateway_ip if gateway else None, mac_seed=mac_seed)
