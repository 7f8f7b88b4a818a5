"""What the control plane needs from an amphora driver: one amphora's data plane brought
to a load balancer's desired state (Octavia's amphora driver, cut to one call), and a cheap
question whether it still runs that state (drift)."""

from __future__ import annotations

import abc
import dataclasses

from oslo_config import cfg

from amphorae.contract import model
from amphorae.drivers.compute.base import ComputeDriver


class ConfigRefused(Exception):
    """The agent refused a configuration (HAProxy's or keepalived's check failed)."""

    def __init__(self, what: str, details: str) -> None:
        super().__init__(f"{what} refused: {details}".strip())
        self.details = details


@dataclasses.dataclass(frozen=True)
class AmphoraRef:
    """What the controller knows about one running amphora."""

    id: str
    role: str  # STANDALONE, MASTER, BACKUP
    management_ip: str
    vrrp_ip: str | None = None  # ACTIVE_STANDBY: its own address on the VIP subnet


@dataclasses.dataclass
class TLSFiles:
    """Certificate files for one load balancer (worker/certificates.py collects them)."""

    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    # crt-list file name -> certificate file names, the default certificate first
    crt_lists: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # object id -> why


@dataclasses.dataclass(frozen=True)
class VRRPGroup:
    """The pair's shared keepalived settings (Octavia's vrrp_group row)."""

    auth_pass: str
    virtual_router_id: int = 1
    advert_int: float = 1


@dataclasses.dataclass(frozen=True)
class VipSubnet:
    prefixlen: int
    gateway: str | None


class AmphoraDriver(abc.ABC):
    # Whether the amphorae can carry SCTP listeners and pools (ours have no SCTP data path).
    carries_sctp = False

    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts, compute: ComputeDriver) -> AmphoraDriver:
        """The driver for ``conf``, talking to amphorae that ``compute`` builds."""
        return cls()

    @abc.abstractmethod
    def apply(self, amp: AmphoraRef, lb: model.LoadBalancer, tls: TLSFiles,
              vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> None:
        """Make the amphora serve ``lb``; raises :class:`ConfigRefused` when it refuses
        the configuration (and keeps serving the previous one)."""

    def holds(self, amp: AmphoraRef, address: str) -> bool:
        """Whether the amphora holds ``address`` now (of a pair, the MASTER holds the
        VIP). A driver that cannot tell answers True: nothing then waits on it."""
        return True

    @abc.abstractmethod
    def drifted(self, amp: AmphoraRef, lb: model.LoadBalancer, tls: TLSFiles,
                vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> list[str]:
        """What the amphora runs differently from what :meth:`apply` would give it
        (empty when nothing): read-only and cheap, for the periodic resync."""
