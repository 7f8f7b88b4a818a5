"""nftables rules for UDP listeners: slot lists, member selection, golden files, and
``nft -c`` (plus real loads) inside a throwaway network namespace."""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import shutil

import pytest

from amphorae.contract import nftables
from amphorae.contract.model import (
    HealthMonitor,
    Listener,
    LoadBalancer,
    Member,
    Pool,
    SessionPersistence,
)
from tests import golden, netns

LB_ID = "4c1b7f0e-3d2a-4e5f-8a9b-0c1d2e3f4a5b"
PROJECT = "project-a"
VIP4 = "198.18.1.10"
VIP6 = "2001:db8:1::10"


def _member(n: int, **kwargs) -> Member:
    kwargs.setdefault("address", f"198.18.200.{10 + n}")
    kwargs.setdefault("protocol_port", 5300)
    return Member(id=f"member-{n}", **kwargs)


def _lb(*, algorithm: str = "ROUND_ROBIN", members: tuple[Member, ...] | None = None,
        vips: tuple[str, ...] = (VIP4,), persistence: SessionPersistence | None = None,
        allowed_cidrs: tuple[str, ...] = (), port: int = 53) -> LoadBalancer:
    if members is None:
        members = (_member(1), _member(2))
    pool = Pool(id="pool-udp", protocol="UDP", lb_algorithm=algorithm, members=members,
                session_persistence=persistence,
                health_monitor=HealthMonitor(id="hm-1", type="UDP-CONNECT", delay=5,
                                             timeout=3, max_retries=2))
    listener = Listener(id="listener-udp", protocol="UDP", protocol_port=port,
                        default_pool_id=pool.id, allowed_cidrs=allowed_cidrs)
    return LoadBalancer(id=LB_ID, project_id=PROJECT, vips=vips, listeners=(listener,),
                        pools=(pool,))


def _mixed() -> LoadBalancer:
    """UDP listeners beside HTTP ones, a disabled one, and one whose pool is disabled."""
    udp_a = Pool(id="pool-a", protocol="UDP", lb_algorithm="ROUND_ROBIN",
                 members=(_member(1), _member(2, weight=2)))
    udp_b = Pool(id="pool-b", protocol="UDP", lb_algorithm="SOURCE_IP",
                 members=(_member(3, protocol_port=1812), _member(4, protocol_port=1812)))
    off = Pool(id="pool-off", protocol="UDP", lb_algorithm="ROUND_ROBIN",
               members=(_member(5),), enabled=False)
    http = Pool(id="pool-http", protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                members=(_member(6, protocol_port=80),))
    listeners = (
        Listener(id="listener-dns", protocol="UDP", protocol_port=53, default_pool_id="pool-a"),
        Listener(id="listener-radius", protocol="UDP", protocol_port=1812,
                 default_pool_id="pool-b", allowed_cidrs=("198.18.0.0/16",)),
        Listener(id="listener-disabled", protocol="UDP", protocol_port=5000,
                 default_pool_id="pool-a", enabled=False),
        Listener(id="listener-pool-off", protocol="UDP", protocol_port=5001,
                 default_pool_id="pool-off"),
        Listener(id="listener-nopool", protocol="UDP", protocol_port=5002),
        Listener(id="listener-http", protocol="HTTP", protocol_port=80,
                 default_pool_id="pool-http"),
    )
    return LoadBalancer(id=LB_ID, project_id=PROJECT, vips=(VIP4,), listeners=listeners,
                        pools=(udp_a, udp_b, off, http))


DUAL_MEMBERS = (
    _member(1), _member(2),
    _member(3, address="2001:db8:200::13"), _member(4, address="2001:db8:200::14", weight=3),
)

# name -> (load balancer, healthy)
CASES: dict[str, tuple[LoadBalancer, dict | None]] = {
    "round_robin.nft": (_lb(), None),
    "round_robin_weights.nft": (_lb(members=(
        _member(1, weight=3), _member(2, weight=1), _member(3, weight=0),
        _member(4, enabled=False), _member(5, backup=True), _member(6, protocol_port=5301),
    )), None),
    "least_connections.nft": (_lb(algorithm="LEAST_CONNECTIONS"), None),
    "source_ip.nft": (_lb(algorithm="SOURCE_IP"), None),
    "source_ip_port.nft": (_lb(algorithm="SOURCE_IP_PORT"), None),
    "persistence_source_ip.nft": (
        _lb(persistence=SessionPersistence(type="SOURCE_IP")), None),
    "healthy_subset.nft": (
        _lb(members=(_member(1), _member(2), _member(3))), {"pool-udp": {"member-1", "member-3"}}),
    "backup_takes_over.nft": (
        _lb(members=(_member(1), _member(2), _member(3, backup=True),
                     _member(4, backup=True))),
        {"pool-udp": {"member-3", "member-4"}}),
    "none_healthy.nft": (_lb(), {"listener-udp": set()}),
    "single_member.nft": (_lb(members=(_member(1),)), None),
    "dual_stack.nft": (
        _lb(vips=(VIP4, VIP6), members=DUAL_MEMBERS,
            allowed_cidrs=("198.18.0.0/16", "198.18.5.0/24", "2001:db8::/32")), None),
    "ipv6_single_member.nft": (
        _lb(vips=(VIP6,), members=(_member(3, address="2001:db8:200::13"),)), None),
    "allowed_other_family_only.nft": (
        _lb(vips=(VIP4, VIP6), members=DUAL_MEMBERS, allowed_cidrs=("2001:db8::/32",)), None),
    "mixed_listeners.nft": (_mixed(), None),
    "no_udp.nft": (dataclasses.replace(_mixed(), listeners=_mixed().listeners[-1:]), None),
    "lb_disabled.nft": (dataclasses.replace(_lb(), enabled=False), None),
}


def _render(name: str) -> str:
    lb, healthy = CASES[name]
    return nftables.render(lb, healthy)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    golden.check("nftables", name, _render(name))


# member_slots ------------------------------------------------------------------------------

def test_slots_equal_weights_alternate() -> None:
    assert nftables.member_slots([("a", 1), ("b", 1), ("c", 1)]) == ["a", "b", "c"]
    assert nftables.member_slots([("a", 7), ("b", 7)]) == ["a", "b"]  # gcd reduced


def test_slots_weighted_are_interleaved() -> None:
    assert nftables.member_slots([("a", 5), ("b", 1), ("c", 1)]) == [
        "a", "a", "b", "a", "c", "a", "a"]
    assert nftables.member_slots([("a", 2), ("b", 1)]) == ["a", "b", "a"]


def test_slots_skip_weight_zero_and_empty() -> None:
    assert nftables.member_slots([]) == []
    assert nftables.member_slots([("a", 0)]) == []
    assert nftables.member_slots([("a", 0), ("b", 4)]) == ["b"]


def test_slots_proportional() -> None:
    weights = [("a", 3), ("b", 5), ("c", 8)]
    counts = collections.Counter(nftables.member_slots(weights))
    assert counts == {"a": 3, "b": 5, "c": 8}


def test_slots_capped() -> None:
    weights = [(f"m{i}", 256 - i) for i in range(40)]  # coprime-ish: no common divisor
    slots = nftables.member_slots(weights, max_slots=100)
    counts = collections.Counter(slots)
    assert len(slots) <= 100 + len(weights)
    assert set(counts) == {key for key, _ in weights}  # everyone keeps a slot
    heavy, light = counts["m0"], counts["m39"]
    assert heavy >= light


def test_slots_deterministic() -> None:
    weights = [("a", 4), ("b", 3), ("c", 2)]
    assert nftables.member_slots(weights) == nftables.member_slots(list(weights))


# select_members ----------------------------------------------------------------------------

def test_select_members_rules() -> None:
    pool = Pool(id="p", protocol="UDP", lb_algorithm="ROUND_ROBIN", members=(
        _member(1), _member(2, enabled=False), _member(3, weight=0), _member(4, backup=True)))
    ids = lambda ms: [m.id for m in ms]  # noqa: E731
    assert ids(nftables.select_members(pool, None)) == ["member-1"]
    assert ids(nftables.select_members(pool, {"member-1", "member-4"})) == ["member-1"]
    assert ids(nftables.select_members(pool, {"member-4"})) == ["member-4"]
    assert ids(nftables.select_members(pool, {"member-2", "member-3"})) == []
    assert ids(nftables.select_members(pool, set())) == []


def test_healthy_keyed_by_listener_or_pool() -> None:
    lb = _lb(members=(_member(1), _member(2)))
    by_pool = nftables.render(lb, {"pool-udp": {"member-2"}})
    by_listener = nftables.render(lb, {"listener-udp": {"member-2"}})
    assert by_pool == by_listener
    assert "198.18.200.12:5300" in by_pool and "198.18.200.11" not in by_pool
    assert nftables.render(lb, {"other-pool": set()}) == nftables.render(lb)


def test_jhash_seed_stable_per_pool() -> None:
    a = nftables.render(_lb(algorithm="SOURCE_IP"))
    b = nftables.render(_lb(algorithm="SOURCE_IP"))
    assert a == b and "seed 0x" in a


# nft's own check, and real loads, in a throwaway namespace ---------------------------------

@pytest.fixture(scope="module")
def nft_ns():
    netns.require_root()
    if shutil.which("nft") is None:
        pytest.fail("nft is not installed")
    with netns.namespace("nfttest") as ns:
        yield ns


@pytest.mark.parametrize("name", sorted(CASES))
def test_nft_check(name: str, nft_ns: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / f"amphorae-{name}"
    path.write_text(_render(name))
    result = netns.run("nft", "-c", "-f", str(path), ns=nft_ns, check=False)
    assert result.returncode == 0, result.stderr


def test_load_is_atomic_replace_and_idempotent(nft_ns: str, tmp_path: pathlib.Path) -> None:
    first = tmp_path / "amphorae-first.nft"
    second = tmp_path / "amphorae-second.nft"
    first.write_text(_render("dual_stack.nft"))
    second.write_text(_render("source_ip.nft"))

    def listing() -> str:
        return netns.run("nft", "list", "table", *nftables.TABLE.split(), ns=nft_ns).stdout

    netns.run("nft", "-f", str(first), ns=nft_ns)
    once = listing()
    netns.run("nft", "-f", str(first), ns=nft_ns)
    assert listing() == once  # loading again changes nothing
    assert "numgen inc mod 2" in once and VIP6 in once

    netns.run("nft", "-f", str(second), ns=nft_ns)
    replaced = listing()
    assert "jhash ip saddr mod 2" in replaced
    assert "numgen" not in replaced and VIP6 not in replaced  # nothing of the old set left
    tables = netns.run("nft", "list", "tables", ns=nft_ns).stdout
    assert tables.strip() == f"table {nftables.TABLE}"


def test_refuses_ids_that_would_break_the_script() -> None:
    lb = _lb()
    bad = dataclasses.replace(lb.listeners[0], id='x" drop comment "y')
    with pytest.raises(ValueError):
        nftables.render(dataclasses.replace(lb, listeners=(bad,)))
