"""Recording stand-ins for the compute, network and amphora drivers, for tests of the
code around them (the reconciler's decisions, the worker's fencing). They keep what a
real cloud would keep (instances, ports) in memory and write down every call."""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
import uuid
from collections.abc import Callable, Sequence

from amphorae.common.cert_manager import LocalCertManager
from amphorae.contract import model
from amphorae.drivers.amphora.base import (
    AmphoraDriver,
    AmphoraRef,
    ConfigRefused,
    TLSFiles,
    VipSubnet,
    VRRPGroup,
)
from amphorae.drivers.compute import base as compute
from amphorae.drivers.network import base as net
from amphorae.drivers.registry import Drivers

VIP_SUBNET = net.Subnet(id="vip-subnet", name="vip", network_id="vip-net",
                        cidr=ipaddress.ip_network("198.18.200.0/24"), gateway_ip="198.18.200.1")
MEMBER_SUBNET = net.Subnet(id="member-subnet", name="members", network_id="member-net",
                           cidr=ipaddress.ip_network("198.18.201.0/24"),
                           gateway_ip="198.18.201.1")


class FakeCompute(compute.ComputeDriver):
    """``building_calls``: how many build calls of an amphora answer BUILDING before it
    is ACTIVE (0: at once, as the netns driver); with ``anti_affinity``, pairs get a
    server group as Nova's driver gives them."""

    def __init__(self) -> None:
        self.instances: dict[str, str] = {}  # amphora id -> status
        self.built: list[str] = []  # every build call, repeated ones too
        self.deleted: list[str] = []
        self.fail_builds = False
        self.building_calls = 0
        self.anti_affinity = False
        self.groups: dict[str, str] = {}  # load balancer id -> group id
        self.deleted_groups: list[str] = []
        self.group_of: dict[str, str | None] = {}  # amphora id -> its build's group
        self.lock = threading.Lock()

    def build(self, amphora_id: str, server_group_id: str | None = None
              ) -> compute.Instance:
        if self.fail_builds:
            raise RuntimeError("no capacity")
        with self.lock:
            calls = self.built.count(amphora_id)
            self.built.append(amphora_id)
            self.group_of.setdefault(amphora_id, server_group_id)
            status = compute.BUILDING if calls < self.building_calls else compute.ACTIVE
            self.instances[amphora_id] = status
        return compute.Instance(amphora_id, str(uuid.uuid5(uuid.NAMESPACE_OID, amphora_id)),
                                status, "198.18.99.1" if status == compute.ACTIVE else None)

    def create_server_group(self, load_balancer_id: str) -> str | None:
        if not self.anti_affinity:
            return None
        with self.lock:
            return self.groups.setdefault(load_balancer_id, f"group-{load_balancer_id}")

    def delete_server_group(self, load_balancer_id: str) -> None:
        with self.lock:
            if self.groups.pop(load_balancer_id, None):
                self.deleted_groups.append(load_balancer_id)

    def delete(self, amphora_id: str) -> None:
        with self.lock:
            self.deleted.append(amphora_id)
            self.instances.pop(amphora_id, None)

    def status(self, amphora_id: str) -> str:
        return self.instances.get(amphora_id, compute.DELETED)

    def kill(self, amphora_id: str) -> None:
        self.instances[amphora_id] = compute.ERROR


def vrrp_port_id(amphora_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"vrrp/{amphora_id}"))


class FakeNetwork(net.NetworkDriver):
    """``distributors``: each ACTIVE_ACTIVE load balancer's distributor as last ensured
    (``distributed`` every call in order); ``idle``: what ``distributor_idle`` answers
    per amphora (default: infinite)."""

    distributes = True

    def __init__(self) -> None:
        self.distributors: dict[str, net.Distribution] = {}
        self.distributed: list[net.Distribution] = []
        self.removed_distributors: list[str] = []
        self.idle: dict[str, float] = {}
        self.subnets = {s.id: s for s in (VIP_SUBNET, MEMBER_SUBNET)}
        self.plugged: dict[str, tuple[net.VipPlug, tuple[str, ...]]] = {}
        self.unplugged: list[str] = []
        self.deallocated: list[str] = []
        self.secured: list[net.VipSecurity] = []
        self.vrrp_ips: dict[str, str] = {}
        self.lock = threading.Lock()

    def get_network(self, network_id: str) -> net.Network | None:
        return None

    def get_subnet(self, subnet_id: str, network_id: str | None = None
                   ) -> net.Subnet | None:
        return self.subnets.get(subnet_id)

    def get_port(self, port_id: str) -> net.Port | None:
        return None

    def allocate_vip(self, load_balancer_id: str, subnet: net.Subnet,
                     ip_address: str | None = None, project_id: str | None = None
                     ) -> net.Port:
        return net.Port(str(uuid.uuid4()), subnet.network_id, subnet.id,
                        ip_address or "198.18.200.5")

    def adopt_vip_port(self, load_balancer_id: str, port_id: str) -> net.Port:
        raise NotImplementedError

    def deallocate_vip(self, load_balancer_id: str) -> None:
        self.deallocated.append(load_balancer_id)

    def secure_vip(self, security: net.VipSecurity) -> None:
        self.secured.append(security)

    def plug(self, amphora: net.Amphora, vip: net.VipPlug,
             member_subnets: Sequence[net.Subnet]) -> net.AmphoraPorts:
        with self.lock:
            self.plugged[amphora.id] = (vip, tuple(s.id for s in member_subnets))
            own = vip.vrrp or vip.distributed
            if own and amphora.id not in self.vrrp_ips:
                self.vrrp_ips[amphora.id] = f"198.18.200.{10 + len(self.vrrp_ips)}"
        vrrp = (net.Port(vrrp_port_id(amphora.id), VIP_SUBNET.network_id, vip.subnet_id,
                         self.vrrp_ips[amphora.id]) if own else None)
        return net.AmphoraPorts(vrrp_port=vrrp, member_ports={})

    def unplug(self, amphora_id: str, compute_id: str | None) -> None:
        with self.lock:
            self.unplugged.append(amphora_id)
            self.plugged.pop(amphora_id, None)

    def ensure_distributor(self, distribution: net.Distribution) -> None:
        unplugged = [a for a in distribution.serving if a not in self.plugged]
        if unplugged:
            raise ValueError(f"{unplugged} have no distribution port")
        with self.lock:
            self.distributors[distribution.load_balancer_id] = distribution
            self.distributed.append(distribution)

    def remove_distributor(self, load_balancer_id: str) -> None:
        with self.lock:
            self.distributors.pop(load_balancer_id, None)
            self.removed_distributors.append(load_balancer_id)

    def distributor_idle(self, load_balancer_id: str, amphora_id: str) -> float:
        return self.idle.get(amphora_id, float("inf"))

    def distributor_drift(self, distribution: net.Distribution) -> list[str]:
        found = self.distributors.get(distribution.load_balancer_id)
        if found is None or set(found.serving) != set(distribution.serving):
            return ["distributor: nexthops differ"]
        return []


@dataclasses.dataclass(frozen=True)
class Applied:
    amphora_id: str
    role: str
    vrrp_ip: str | None
    object_ids: frozenset[str]  # listeners, pools and members in the pushed model
    vrrp: bool
    peers: tuple[str, ...]  # the pair's peer addresses in the pushed model


def object_ids(lb: model.LoadBalancer) -> frozenset[str]:
    found = {li.id for li in lb.listeners} | {p.id for p in lb.pools}
    return frozenset(found | {mb.id for p in lb.pools for mb in p.members})


class FakeAmphora(AmphoraDriver):
    """Refuses any model holding one of ``refused`` (as HAProxy refuses a bad config);
    ``hook`` runs before each apply (a test holds a reconcile there); the pair's
    MASTER holds the VIP after ``election`` more questions (keepalived electing it)."""

    def __init__(self) -> None:
        self.applied: list[Applied] = []
        self.running: dict[str, frozenset[str]] = {}  # amphora id -> objects it serves
        self.refused: set[str] = set()
        self.hook: Callable[[AmphoraRef], None] | None = None
        self.election = 0
        self.asked: list[tuple[str, str]] = []  # (amphora id, address) of each holds()
        self.lock = threading.Lock()

    def holds(self, amp: AmphoraRef, address: str) -> bool:
        with self.lock:
            self.asked.append((amp.id, address))
            if amp.role != "MASTER":
                return False
            self.election -= 1
            return self.election < 0

    def apply(self, amp: AmphoraRef, lb: model.LoadBalancer, tls: TLSFiles,
              vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> None:
        if self.hook is not None:
            self.hook(amp)
        ids = object_ids(lb)
        if ids & self.refused:
            raise ConfigRefused("HAProxy configuration", f"bad: {sorted(ids & self.refused)}")
        with self.lock:
            self.applied.append(Applied(amp.id, amp.role, amp.vrrp_ip, ids, vrrp is not None,
                                        tuple(p.address for p in lb.peers)))
            self.running[amp.id] = ids

    def drifted(self, amp: AmphoraRef, lb: model.LoadBalancer, tls: TLSFiles,
                vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> list[str]:
        return [] if self.running.get(amp.id) == object_ids(lb) else ["haproxy"]


@dataclasses.dataclass
class FakeCloud:
    compute: FakeCompute = dataclasses.field(default_factory=FakeCompute)
    network: FakeNetwork = dataclasses.field(default_factory=FakeNetwork)
    amphora: FakeAmphora = dataclasses.field(default_factory=FakeAmphora)

    def drivers(self, cert_dir: str) -> Drivers:
        return Drivers(compute=self.compute, network=self.network, amphora=self.amphora,
                       cert_manager=LocalCertManager(cert_dir))
