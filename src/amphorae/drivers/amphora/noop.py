"""The no-op amphora driver (``amphora_noop_driver``), as Octavia has it: no agent
anywhere; every configuration is taken and nothing ever drifts."""

from __future__ import annotations

import logging

from amphorae.contract import model
from amphorae.drivers.amphora.base import (
    AmphoraDriver,
    AmphoraRef,
    TLSFiles,
    VipSubnet,
    VRRPGroup,
)

LOG = logging.getLogger(__name__)


class NoopAmphoraDriver(AmphoraDriver):
    carries_sctp = True  # nothing is carried, so nothing is refused (Octavia's no-op too)

    def apply(self, amp: AmphoraRef, lb: model.LoadBalancer, tls: TLSFiles,
              vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> None:
        LOG.debug("noop amphora driver: %s would serve %d listeners", amp.id,
                  len(lb.listeners))

    def drifted(self, amp: AmphoraRef, lb: model.LoadBalancer, tls: TLSFiles,
                vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> list[str]:
        return []
