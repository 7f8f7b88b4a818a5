"""Host resources belong to the deployment that made them (drivers/network/ownership.py):
names derived from the deployment id, the id in bridge aliases and amphora state files,
and no cleanup ever removes another deployment's. No root: the kernel's links are a fake
that keeps names and aliases; the housekeeping sweep runs on a real SQLite database."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from amphorae.db import engine, migrate
from amphorae.drivers.compute import amphora_boot as boot
from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import local, ownership, plumbing, ports
from amphorae.housekeeping.service import Housekeeper

OURS, THEIRS = "0a0a0a0a0a0a", "0b0b0b0b0b0b"
NETWORK = "3f1c2e7a-0000-5000-8000-000000000001"  # the same network id in both


class FakeLinks:
    """An ``ip`` runner over a table of links (name -> alias); namespaces are empty."""

    def __init__(self) -> None:
        self.links: dict[str, str | None] = {}
        self.deleted: list[str] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        args = [a for a in argv[1:] if a not in ("-json", "-details")]
        out, rc, err = "", 0, ""
        if args[:2] == ["link", "show"] and len(args) == 4:
            name = args[3]
            if name in self.links:
                entry = {"ifname": name, "linkinfo": {"info_kind": "bridge"}}
                if self.links[name]:
                    entry["ifalias"] = self.links[name]
                out = json.dumps([entry])
            else:
                rc, err = 1, f'Device "{name}" does not exist.'
        elif args[:2] == ["link", "add"]:
            self.links.setdefault(args[2], None)
        elif args[:3] == ["link", "set", "dev"] and args[4:5] == ["alias"]:
            self.links[args[3]] = args[5]
        elif args[:3] == ["link", "delete", "dev"]:
            self.deleted.append(args[3])
            self.links.pop(args[3], None)
        elif args[:2] == ["netns", "list"]:
            out = "[]"
        return subprocess.CompletedProcess(list(argv), rc, out, err)


def test_the_deployment_id_is_made_once_per_state_path(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:  # concurrent first starts agree
        ids = set(pool.map(lambda _: ownership.deployment_id(tmp_path / "a"), range(16)))
    assert len(ids) == 1
    assert ownership.deployment_id(tmp_path / "a") in ids  # stable across restarts
    assert ownership.deployment_id(tmp_path / "b") not in ids


def test_a_network_gets_a_bridge_of_its_own_in_each_deployment() -> None:
    ours, theirs = (plumbing.bridge_name(d, NETWORK) for d in (OURS, THEIRS))
    assert ours != theirs
    assert ours == plumbing.bridge_name(OURS, NETWORK)
    assert len(ours) <= plumbing.IFNAMSIZ and ours.startswith(plumbing.BRIDGE_PREFIX)


def test_a_bridge_carries_its_deployment_and_another_refuses_it() -> None:
    links = FakeLinks()
    pl = plumbing.Plumbing(links)
    pl.ensure_bridge("amph-brx", owner=OURS)
    assert pl.link_owner("amph-brx") == OURS
    pl.ensure_bridge("amph-brx", owner=OURS)  # again: still ours
    with pytest.raises(plumbing.PlumbingError, match="belongs to someone else"):
        pl.ensure_bridge("amph-brx", owner=THEIRS)
    assert links.links["amph-brx"] == ownership.alias(OURS)
    links.links["amph-bry"] = None  # made, then a crash before its alias was set
    pl.ensure_bridge("amph-bry", owner=OURS)
    assert pl.link_owner("amph-bry") == OURS


def test_a_bridge_of_another_deployment_is_never_removed() -> None:
    links = FakeLinks()
    pl = plumbing.Plumbing(links)
    links.links.update({"amph-brtheirs": ownership.alias(THEIRS), "amph-brbare": None,
                        "amph-brother": "someone's", "amph-brours": ownership.alias(OURS)})
    for name in ("amph-brtheirs", "amph-brbare", "amph-brother"):
        assert pl.delete_bridge(name, owner=OURS) is False
    assert pl.delete_bridge("amph-brours", owner=OURS) is True
    assert pl.delete_bridge("amph-brgone", owner=OURS) is True  # absent: nothing to do
    assert links.deleted == ["amph-brours"]


def test_released_bridges_are_only_ours(tmp_path: Path) -> None:
    links = FakeLinks()
    driver = compute.NetnsComputeDriver(plumbing=plumbing.Plumbing(links),
                                        state_dir=str(tmp_path), deployment=OURS,
                                        management_cidr="198.19.9.0/24")
    network_id = next(iter(local.networks()))
    ours = ownership.local_deployment()  # the network driver's: the configured one
    mine, theirs = (plumbing.bridge_name(d, network_id) for d in (ours, THEIRS))
    links.links.update({mine: ownership.alias(ours), theirs: ownership.alias(THEIRS),
                        driver.bridge: ownership.alias(THEIRS)})
    # A management bridge of another deployment under our name (a hash collision, or
    # one given the same name by config) stays.
    boot.AmphoraBooter(driver, tmp_path / "ca").release_host()
    local.LocalNetworkDriver(plugger=ports.PortPlugger(driver.plumbing)).release_host()
    assert links.deleted == [mine]
    links.links[driver.bridge] = ownership.alias(OURS)
    boot.AmphoraBooter(driver, tmp_path / "ca").release_host()
    assert links.deleted == [mine, driver.bridge]


def _state(state_dir: Path, amphora_id: str, deployment: str | None) -> None:
    short = compute.short_id(amphora_id)
    (state_dir / short).mkdir(parents=True)
    state = {"amphora_id": amphora_id, "namespace": compute.namespace_name(short),
             "management_ip": "198.19.9.2"}
    if deployment:
        state["deployment"] = deployment
    (state_dir / short / compute.STATE_FILE).write_text(json.dumps(state))


def test_the_orphan_sweep_removes_only_its_own_deployments_amphorae(tmp_path: Path) -> None:
    state_dir = tmp_path / "amphorae"
    mine, legacy, other = ("1a1a1a1a-0000-4000-8000-000000000001",
                           "2b2b2b2b-0000-4000-8000-000000000002",
                           "3c3c3c3c-0000-4000-8000-000000000003")
    _state(state_dir, mine, OURS)
    _state(state_dir, legacy, None)  # written before states named their deployment
    _state(state_dir, other, THEIRS)  # e.g. two deployments given one amphora_state_dir
    driver = compute.NetnsComputeDriver(plumbing=plumbing.Plumbing(FakeLinks()),
                                        state_dir=str(state_dir), deployment=OURS,
                                        management_cidr="198.19.9.0/24")
    assert {a.short_id: a.amphora_id for a in driver.list_amphorae()} == {
        "1a1a1a1a": mine, "2b2b2b2b": legacy, "3c3c3c3c": None}
    url = f"sqlite:///{tmp_path}/amphorae.sqlite"
    migrate.upgrade(url)
    try:
        # No row claims any of them: only the two of this deployment are orphans.
        network = local.LocalNetworkDriver(url, ports.PortPlugger(driver.plumbing, OURS))
        keeper = Housekeeper(boot.AmphoraBooter(driver, tmp_path / "ca"), network, url=url)
        assert sorted(keeper.remove_orphans()) == [mine, legacy]
    finally:
        engine.get_engine(url).dispose()
    assert sorted(p.name for p in state_dir.iterdir() if p.is_dir()) == ["3c3c3c3c"]
