"""What the control plane needs from a network driver, in plain values.

The shape of Octavia's network driver, cut to what a reconcile uses: look up networks,
subnets and ports; allocate and deallocate a load balancer's VIP ports (the API, before it
writes the load balancer); plug an amphora into the VIP subnet and its member subnets, and
unplug it (the worker). No ORM session and no interface name crosses this seam: the local
driver keeps its address book in the database and makes veths, a Neutron driver would
make ports and allowed-address pairs, and the callers cannot tell.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Sequence

from oslo_config import cfg


@dataclasses.dataclass(frozen=True)
class Subnet:
    id: str
    name: str
    network_id: str
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway_ip: str | None

    @property
    def ip_version(self) -> int:
        return self.cidr.version


@dataclasses.dataclass(frozen=True)
class Network:
    id: str
    name: str
    subnets: tuple[Subnet, ...]


@dataclasses.dataclass(frozen=True)
class Port:
    """One address on one subnet, owned by a device (Neutron's port, cut down)."""

    id: str
    network_id: str
    subnet_id: str
    ip_address: str
    device_id: str | None = None
    device_owner: str | None = None
    project_id: str | None = None  # whose it is, where ports have owners (Neutron)


@dataclasses.dataclass(frozen=True)
class Amphora:
    """Where to plug: the amphora and its compute instance."""

    id: str
    compute_id: str


@dataclasses.dataclass(frozen=True)
class VipPlug:
    """What an amphora must answer for on the VIP subnet: the load balancer's VIP
    addresses (the first is the primary), and whether the amphora is one of a VRRP pair
    (then it holds an address of its own and keepalived moves the VIPs)."""

    load_balancer_id: str
    subnet_id: str
    addresses: tuple[str, ...]
    vrrp: bool
    # An ACTIVE_ACTIVE amphora behind the load balancer's distributor: an address of its
    # own on the VIP subnet (it replies to clients through it), the VIPs held without
    # answering ARP for them, and a port on the distribution network.
    distributed: bool = False
    # The user's own security groups for the VIP (vip_sg_ids), which a driver with
    # security groups puts on the amphora's VIP-network port next to its own.
    security_groups: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Opening:
    """One port the VIP answers on: a listener's, from ``cidr`` (None: from anywhere)."""

    protocol: str  # "tcp", "udp" or "sctp"
    port: int
    cidr: str | None = None


@dataclasses.dataclass(frozen=True)
class VipSecurity:
    """What may reach a load balancer's VIP and amphorae: its listeners' ports (none
    when the user's own ``security_groups`` take their place, as in Octavia), and for a
    VRRP pair the pair's own traffic (VRRP adverts, HAProxy's ``peer_ports``)."""

    load_balancer_id: str
    vips: tuple[str, ...]  # every VIP address: which IP versions to open
    openings: tuple[Opening, ...]
    vrrp: bool
    peer_ports: tuple[int, ...] = ()
    security_groups: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class AmphoraPorts:
    """The result of plugging one amphora: its own port on the VIP subnet (for pairs
    always; for a single amphora where the driver makes one) and its port on each member
    subnet."""

    vrrp_port: Port | None
    member_ports: dict[str, Port]  # subnet id -> port


@dataclasses.dataclass(frozen=True)
class Distribution:
    """What an ACTIVE_ACTIVE load balancer's distributor should be: its ``vips`` (on the
    VIP subnet ``subnet_id``) spread over the amphorae ``serving`` (ids, plugged with
    ``VipPlug.distributed``); those also in ``draining`` get no new share, only the
    flows they already carry."""

    load_balancer_id: str
    subnet_id: str
    vips: tuple[str, ...]
    serving: tuple[str, ...]
    draining: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class OwnedResource:
    """Something a driver made outside our database (a Neutron port or security group,
    a local distributor namespace),
    for the orphan sweep: whose it is (a load balancer's or an amphora's) and since when
    (the service's own clock, naive UTC, so an object being made is never taken for an
    orphan)."""

    kind: str  # "port", "security_group" (Neutron) or "distributor" (local)
    id: str
    name: str
    created_at: dt.datetime
    load_balancer_id: str | None = None
    amphora_id: str | None = None


class NetworkDriver(abc.ABC):
    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts) -> NetworkDriver:
        """The driver for ``conf`` (the registry's way in)."""
        return cls()

    """Raises :class:`amphorae.common.errors.ValidationError` (bad address) or
    :class:`amphorae.common.errors.Conflict` (address taken, subnet full) from the
    VIP calls, which the API answers as such."""

    # The driver's networks are served read-only at Neutron's paths on our API (the
    # embedded default has no Neutron the clients could ask instead).
    serves_networks = False

    @abc.abstractmethod
    def get_network(self, network_id: str) -> Network | None: ...

    @abc.abstractmethod
    def get_subnet(self, subnet_id: str, network_id: str | None = None) -> Subnet | None:
        """The subnet; ``network_id`` is where the caller expects it, which only a
        driver that makes subnets up (no-op) uses."""

    @abc.abstractmethod
    def get_port(self, port_id: str) -> Port | None: ...

    def list_networks(self) -> list[Network]:
        return []

    def visible_to(self, token: str, kind: str, resource_id: str) -> bool:
        """Whether the user of Keystone ``token`` can see the ``kind`` ("network",
        "subnet", "port") ``resource_id``; a driver whose objects have no owners shows
        everything to everyone."""
        return True

    def list_ports(self) -> list[Port]:
        """The ports the driver keeps (served at Neutron's paths with the networks);
        a driver that stores none has none to list."""
        return []

    def release_host(self) -> None:
        """No amphora of this deployment is left: give back what the driver holds on
        this host for them (the local driver's bridges)."""
        return None  # most drivers hold nothing on the host

    # -- VIPs (the API) ----------------------------------------------------------------

    @abc.abstractmethod
    def allocate_vip(self, load_balancer_id: str, subnet: Subnet,
                     ip_address: str | None = None, project_id: str | None = None) -> Port:
        """A port for one VIP of the load balancer: the given address, or a free one
        (``project_id``: the load balancer's, whose the port is where ports have owners).
        """

    @abc.abstractmethod
    def adopt_vip_port(self, load_balancer_id: str, port_id: str) -> Port:
        """A user's port becomes the load balancer's VIP (it stays the user's: it is
        released, not deleted, with the load balancer)."""

    @abc.abstractmethod
    def deallocate_vip(self, load_balancer_id: str) -> None:
        """Release every VIP port of the load balancer; fine when there is none."""

    # Whether the VIP calls write through the caller's database transaction (and so roll
    # back with it); otherwise the API deallocates when its transaction fails.
    joins_transaction = False

    # -- amphorae (the worker) -----------------------------------------------------------

    def secure_vip(self, security: VipSecurity) -> None:
        """Let exactly ``security`` reach the VIP and the amphorae (before they are
        plugged, then at every reconcile, so listener changes follow); removed with
        ``deallocate_vip``. A driver without security groups has nothing to do."""
        return None

    @abc.abstractmethod
    def plug(self, amphora: Amphora, vip: VipPlug,
             member_subnets: Sequence[Subnet]) -> AmphoraPorts:
        """Make the amphora hold exactly the VIP port and the member subnets' ports
        (ports no longer wanted are removed). Idempotent: a plug killed half-way is
        finished by the next one, with the same addresses."""

    # -- ACTIVE_ACTIVE distributors (the worker) ------------------------------------------

    # Whether the driver can put a distributor in front of ACTIVE_ACTIVE amphorae; the
    # worker puts such a load balancer on a driver that cannot into ERROR.
    distributes = False

    def ensure_distributor(self, distribution: Distribution) -> None:
        """Make the load balancer's distributor match ``distribution``; idempotent."""
        raise NotImplementedError(f"{type(self).__name__} has no distributor")

    def remove_distributor(self, load_balancer_id: str) -> None:
        """The load balancer's distributor and its addresses are gone; fine when there
        is none."""
        return None

    def distributor_idle(self, load_balancer_id: str, amphora_id: str) -> float:
        """Seconds since the distributor last sent a packet to the amphora (infinite
        when it sends it nothing, or has no distributor)."""
        return float("inf")

    def distributor_drift(self, distribution: Distribution) -> list[str]:
        """How the running distributor differs from ``distribution`` (read-only)."""
        return []

    # -- orphans (housekeeping) ---------------------------------------------------------

    def owned_resources(self) -> list[OwnedResource]:
        """What this deployment made outside our database; a driver whose state is in
        the database (or nowhere) has none."""
        return []

    def remove_resource(self, resource: OwnedResource) -> None:
        """Delete one of :meth:`owned_resources` (detached first); fine when gone."""
        return None

    @abc.abstractmethod
    def unplug(self, amphora_id: str, compute_id: str | None) -> None:
        """Remove the amphora's ports and release their addresses; fine when half-made,
        already gone, or when the compute instance never existed."""
