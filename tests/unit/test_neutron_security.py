"""The Neutron driver's VIP security group rules as values (neutron_security.wanted_rules):
a rule per IP version of the VIPs, a CIDR only under its own version, the pair's own
traffic only from the group itself. The rules on a real Neutron:
tests/functional/test_neutron_driver.py."""

from __future__ import annotations

from amphorae.drivers.network.base import Opening, VipSecurity
from amphorae.drivers.network.neutron_security import SELF, wanted_rules


def test_each_listener_port_for_each_vip_version_and_cidrs_under_their_own() -> None:
    security = VipSecurity("lb", ("198.19.160.5", "fd00:198:19::5"), (
        Opening("tcp", 80), Opening("udp", 53, "198.19.0.1/16"),
        Opening("udp", 53, "fd00:198:19::/64")), vrrp=False, peer_ports=(1025,))
    assert wanted_rules(security) == {
        ("IPv4", "tcp", 80, 80, None, None), ("IPv6", "tcp", 80, 80, None, None),
        ("IPv4", "udp", 53, 53, "198.19.0.0/16", None),
        ("IPv6", "udp", 53, 53, "fd00:198:19::/64", None)}


def test_a_pair_also_talks_vrrp_and_peers_within_the_group() -> None:
    security = VipSecurity("lb", ("fd00:198:19::5",), (Opening("sctp", 9000),), vrrp=True,
                           peer_ports=(1025, 1026))
    assert wanted_rules(security) == {
        ("IPv6", "sctp", 9000, 9000, None, None),
        ("IPv6", "112", None, None, None, SELF), ("IPv6", "51", None, None, None, SELF),
        ("IPv6", "tcp", 1025, 1025, None, SELF), ("IPv6", "tcp", 1026, 1026, None, SELF)}


def test_a_listener_cidr_of_the_other_version_opens_nothing() -> None:
    security = VipSecurity("lb", ("198.19.160.5",), (Opening("tcp", 443, "fd00::/8"),),
                           vrrp=False)
    assert wanted_rules(security) == set()
