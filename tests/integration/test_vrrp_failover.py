"""ACTIVE_STANDBY failover: an amphora pair (tests/vrrp_pair.py) serves HTTP on a VIP
that keepalived holds on the MASTER; every process of the MASTER is killed while a client
keeps sending requests, the BACKUP takes the VIP over and the traffic goes on (root).

The clients' outage is bounded by the BACKUP's master down interval: VRRP's own is three
adverts plus a skew time (RFC 5798: 3.65 s at Octavia's 1 s adverts and priority 90); the
rendered ``down_timer_adverts 2`` makes it two adverts, 2 s at 1 s and 0.4 s at 0.2 s
(VRRPv3, which keepalived 2.2 takes in hundredths of a second). The kill lands at a random
point between two adverts, so the outage lies between one and two intervals, plus the
time the first gratuitous ARP takes.
"""

from __future__ import annotations

import pytest

from tests import netns
from tests.vrrp_pair import Subnets, fail_over, vrrp_pair

# Separate subnets per case: xdist may run both at once.
CASES = {
    1.0: Subnets("198.18.240.0/24", "198.18.241.0/24", "198.18.242.0/24"),
    0.2: Subnets("198.18.243.0/24", "198.18.244.0/24", "198.18.245.0/24"),
}
# Above VRRP's own bound: ARP update, the probe's own pace and a shared 2-core machine.
GAP_MARGIN = 1.0
GAP_TARGET = 3.0  # seconds of outage the default advert interval must beat


@pytest.mark.parametrize("advert_int", sorted(CASES, reverse=True))
def test_backup_takes_over_a_crashed_master(advert_int: float) -> None:
    netns.require_root()
    with vrrp_pair(CASES[advert_int], advert_int=advert_int) as pair:
        # keepalived put the VIP on the MASTER's eth1 only, and it serves both members.
        assert pair.holders() == ["MASTER"]
        assert {pair.get() for _ in range(6)} == {m.name for m in pair.members}

        result = fail_over(pair)

        assert pair.pids(pair.master) == []  # the MASTER is dead, not stopped politely
        assert pair.holds_vip(pair.backup)
        assert {pair.get() for _ in range(6)} == {m.name for m in pair.members}
        bound = pair.takeover_bound()
        print(f"\nVRRP failover, advert {advert_int:g} s: traffic gap {result.gap:.2f} s "
              f"(VIP on the BACKUP after {result.takeover:.2f} s; VRRP bound "
              f"{bound:.2f} s; {result.failed}/{result.requests} GETs failed)")
        # Clients saw the crash, and the BACKUP waited for the MASTER's adverts to stop
        # rather than being handed the VIP.
        assert result.failed > 0
        assert bound - advert_int <= result.gap < bound + GAP_MARGIN, result
        assert result.gap < GAP_TARGET, result
