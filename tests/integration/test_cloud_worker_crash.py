"""Crash safety of the worker in cloud mode (root): SIGKILL at random moments of creates
and deletes against the real Keystone, Neutron, Nova (+ Placement, Glance) and Barbican of
tests/cloud.py, whose compute hosts boot each amphora as a namespace running our agent
(tests/nova_virt).

`amphorae api`, `amphorae worker` and `amphorae housekeeping` run as processes of their
own with Octavia's cloud drivers (tests/cloud_plane.py). Each trial cascade-deletes the
load balancers of the trial before, creates one or two new ones as project-a-member
(SINGLE or ACTIVE_STANDBY through a flavor; bare, or with an HTTP listener, a pool and a
member on the member subnet), sleeps a random 0.3 to KILL_WITHIN s (a SINGLE create takes
about 10 s here, a delete a few) and SIGKILLs the worker's process group, then starts a
new worker. Then every load balancer must be ACTIVE or ERROR (none stays PENDING_*) and
every deleted one gone within SETTLE s, and in Neutron and Nova:

- a live load balancer has exactly its VIP port, its security group ``lb-<id>`` and, per
  live amphora, one Nova server and one VRRP port (and one member port when it has a
  member) attached to that server; a pair has its server group;
- a deleted load balancer leaves no port named after it or any amphora it ever had, no
  security group, no server, no server group;
- no server of this deployment lacks a live amphora row, no port or group marked with
  this deployment (neutron_orphans.py) lacks a live owner.

The choices and kill times come from a seeded random.Random: the seed is printed, and
AMPHORAE_CRASH_SEED=<seed> replays them (timing still varies); AMPHORAE_CRASH_TRIALS=<n>
sets the number of trials: 6 by default, the share every CI run can afford (about 90 s);
the full run is ``AMPHORAE_CRASH_TRIALS=20`` (about 270 s) or more.

Addresses: management 198.19.203.0/24 (in the virt driver's gateway block; shared with
bench/cloud_e2e.py, which does not run at the same time), VIP 198.19.164.0/24, members
198.19.165.0/24 (outside it: no address on the host). Every cloud object is named
``amph-...`` or as Octavia names it, and removed at the end, also on failure.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from amphorae.db import engine
from amphorae.db import models as m
from amphorae.drivers.compute import nova as nova_mod
from amphorae.drivers.network import neutron_orphans
from tests import cloud as osdev
from tests import cloud_plane, netns
from tests import dataplane as dp
from tests.cloud_plane import Blocks, Plane
from tests.deployment import FINAL, eventually

BLOCKS = Blocks(mgmt="198.19.203.0/24", vip="198.19.164.0/24", member="198.19.165.0/24")
SEED = int(os.environ.get("AMPHORAE_CRASH_SEED") or secrets.randbits(32))
TRIALS = int(os.environ.get("AMPHORAE_CRASH_TRIALS") or 6)  # 20 or more: the full run
KILL_WITHIN = (0.3, 12.0)  # seconds after the requests the worker dies
PAIRS = 0.5  # share of creates that are ACTIVE_STANDBY
POPULATED = 0.5  # share of creates with a listener, a pool and a member
SETTLE = 240.0  # seconds for everything to settle after a restart (Nova queues boots)
WORKER_START = 60.0
# Leases short enough for the new worker to take the dead one's jobs over quickly.
EXTRA_CONFIG = "\n[controller_worker]\njob_lease_seconds = 3\n"


@pytest.fixture(scope="module")
def plane(cloud: osdev.Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    netns.require_root()
    with cloud_plane.running_plane(cloud, BLOCKS, tmp_path_factory.mktemp("amph-crash"),
                                   ("api", "worker", "housekeeping"),
                                   EXTRA_CONFIG) as made:
        yield made


def db_url(plane: Plane) -> str:
    return f"sqlite:///{plane.state}/amphorae.sqlite"


# -- the worker ------------------------------------------------------------------------


def restart_worker(plane: Plane) -> float:
    """SIGKILL the worker, start a new one; returns once it logged that it runs."""
    plane.kill("worker")
    offset = plane.log.stat().st_size
    started = time.monotonic()
    proc = plane.start("worker")
    pattern = re.compile(rf"worker \S*:{proc.pid}:\S* started".encode())

    def running() -> bool:
        assert proc.poll() is None, plane.logs()
        with open(plane.log, "rb") as fh:
            fh.seek(offset)
            return pattern.search(fh.read()) is not None

    dp.wait_for(running, "the worker starting", timeout=WORKER_START)
    return time.monotonic() - started


def jobs_in_flight(plane: Plane) -> int:
    """Jobs the running worker holds (its lease owner name carries its pid)."""
    pid = plane.processes["worker"].pid
    with engine.transaction(write=False, url=db_url(plane)) as session:
        return session.scalar(select(func.count()).select_from(m.Job).where(
            m.Job.lease_owner.like(f"%:{pid}:%"))) or 0


# -- what the cloud holds ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CloudView:
    """This deployment's objects in Neutron and Nova, as admin sees them."""

    ports: dict[str, list[Any]]  # by name
    groups: dict[str, list[Any]]  # security groups by name
    servers: dict[str, list[Any]]  # by amphora id (metadata)
    server_groups: dict[str, list[Any]]  # by name
    marked: list[Any]  # ports and groups marked with this deployment

    @classmethod
    def read(cls, plane: Plane) -> CloudView:
        admin = plane.env.admin
        mark = neutron_orphans.mark(plane.deployment_id)
        ports: dict[str, list[Any]] = collections.defaultdict(list)
        for port in admin.network.ports():
            ports[port.name].append(port)
        groups: dict[str, list[Any]] = collections.defaultdict(list)
        for group in admin.network.security_groups():
            groups[group.name].append(group)
        servers: dict[str, list[Any]] = collections.defaultdict(list)
        for server in admin.compute.servers(details=True, all_projects=True):
            meta = server.metadata or {}
            if meta.get(nova_mod.META_DEPLOYMENT) == plane.deployment_id:
                servers[meta[nova_mod.META_AMPHORA]].append(server)
        server_groups: dict[str, list[Any]] = collections.defaultdict(list)
        for sg in admin.compute.server_groups(all_projects=True):
            server_groups[sg.name].append(sg)
        marked = [o for objs in (*ports.values(), *groups.values()) for o in objs
                  if o.description == mark]
        return cls(ports, groups, servers, server_groups, marked)


def amphora_rows(plane: Plane, lb_id: str) -> list[m.Amphora]:
    """Every amphora the load balancer ever had (DELETED rows too)."""
    with engine.transaction(write=False, url=db_url(plane)) as session:
        rows = list(session.scalars(select(m.Amphora).where(
            m.Amphora.load_balancer_id == lb_id)))
        session.expunge_all()
    return rows


def live_owners(plane: Plane) -> tuple[set[str], set[str]]:
    """Ids of load balancers and amphorae with live rows."""
    with engine.transaction(write=False, url=db_url(plane)) as session:
        lbs = set(session.scalars(select(m.LoadBalancer.id).where(
            m.LoadBalancer.provisioning_status != "DELETED")))
        amps = set(session.scalars(select(m.Amphora.id).where(m.Amphora.status != "DELETED")))
    return lbs, amps


def check_live(plane: Plane, view: CloudView, lb: Any, populated: bool, pair: bool) -> None:
    """Exactly the objects of an ACTIVE load balancer."""
    amps = [a for a in amphora_rows(plane, lb.id) if a.status != "DELETED"]
    assert len(amps) == (2 if pair else 1), (lb.id, [(a.id, a.status) for a in amps])
    assert len(view.ports[f"octavia-lb-{lb.id}"]) == 1, lb.id
    assert len(view.groups[f"lb-{lb.id}"]) == 1, lb.id
    assert len(view.server_groups[f"octavia-lb-{lb.id}"]) == (1 if pair else 0), lb.id
    for amp in amps:
        servers = view.servers[amp.id]
        assert [s.id for s in servers] == [amp.compute_id], (amp.id, servers)
        assert servers[0].status == "ACTIVE", (amp.id, servers[0].status)
        vrrp = view.ports[f"octavia-lb-vrrp-{amp.id}"]
        assert [p.device_id for p in vrrp] == [amp.compute_id], (amp.id, vrrp)
        member = view.ports[f"octavia-lb-member-{amp.id}"]
        assert [p.device_id for p in member] == ([amp.compute_id] if populated else []), (
            amp.id, member)


def leftovers_of(plane: Plane, view: CloudView, lb_id: str) -> list[str]:
    """What a deleted load balancer left in the cloud."""
    amps = [a.id for a in amphora_rows(plane, lb_id)]
    names = [f"octavia-lb-{lb_id}", *(f"octavia-lb-{kind}-{a}" for a in amps
                                      for kind in ("vrrp", "member"))]
    left = [f"port {n}" for n in names if view.ports.get(n)]
    left += [f"security group lb-{lb_id}"] * bool(view.groups.get(f"lb-{lb_id}"))
    left += [f"server of amphora {a}" for a in amps if view.servers.get(a)]
    left += [f"server group octavia-lb-{lb_id}"] * bool(
        view.server_groups.get(f"octavia-lb-{lb_id}"))
    return left


def unowned(plane: Plane, view: CloudView) -> list[str]:
    """This deployment's servers and marked objects whose owner has no live row."""
    lbs, amps = live_owners(plane)
    out = [f"server {s.id} of amphora {a}" for a, servers in view.servers.items()
           for s in servers if a not in amps]
    for obj in view.marked:
        owner = neutron_orphans.port_owner(obj) if obj.name.startswith("octavia-lb-") else None
        lb_id = owner.load_balancer_id if owner else obj.name.removeprefix("lb-")
        amp_id = owner.amphora_id if owner else None
        if (amp_id or lb_id) not in (amps if amp_id else lbs):
            out.append(f"{obj.name} ({obj.id})")
    return out


# -- the trials ------------------------------------------------------------------------


@dataclasses.dataclass
class Made:
    id: str
    pair: bool
    populated: bool


@dataclasses.dataclass
class Chaos:
    plane: Plane
    rng: random.Random
    pair_flavor: str
    alive: list[Made] = dataclasses.field(default_factory=list)
    deleted: list[str] = dataclasses.field(default_factory=list)
    ops: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    kills_in_flight: int = 0
    restarts: list[float] = dataclasses.field(default_factory=list)
    settled: list[float] = dataclasses.field(default_factory=list)
    errors: set[str] = dataclasses.field(default_factory=set)

    @property
    def lbs(self) -> Any:
        return self.plane.member.load_balancer

    def create(self) -> Made:
        pair = self.rng.random() < PAIRS
        populated = self.rng.random() < POPULATED
        kwargs: dict[str, Any] = {"flavor_id": self.pair_flavor} if pair else {}
        if populated:
            kwargs["listeners"] = [{
                "name": "http", "protocol": "HTTP", "protocol_port": 80,
                "default_pool": {"name": "web", "protocol": "HTTP",
                                 "lb_algorithm": "ROUND_ROBIN",
                                 "members": [{"address": self.plane.members["m1"],
                                              "protocol_port": dp.HTTP.port,
                                              "subnet_id": self.plane.member_subnet.id}]}}]
        lb = self.lbs.create_load_balancer(
            name=f"amph-crash-{len(self.deleted) + len(self.alive)}",
            vip_subnet_id=self.plane.vip_subnet.id, **kwargs)
        self.ops[f"create {'pair' if pair else 'single'}"
                 f"{' populated' if populated else ''}"] += 1
        return Made(lb.id, pair, populated)

    def trial(self) -> None:
        """Delete the last trial's load balancers, create new ones, kill the worker."""
        for made in self.alive:
            self.lbs.delete_load_balancer(made.id, cascade=True)
            self.deleted.append(made.id)
            self.ops["delete"] += 1
        self.alive = [self.create() for _ in range(self.rng.randint(1, 2))]
        time.sleep(self.rng.uniform(*KILL_WITHIN))
        self.kills_in_flight += jobs_in_flight(self.plane) > 0
        restarted = time.monotonic()
        self.restarts.append(restart_worker(self.plane))
        self.settle(restarted)

    def settle(self, restarted: float) -> None:
        """Nothing pending, the deleted ones gone; then the cloud holds what it must."""
        def final() -> bool:
            lbs = {lb.id: lb.provisioning_status for lb in self.lbs.load_balancers()}
            return (all(status in FINAL for status in lbs.values())
                    and not set(self.deleted) & set(lbs))

        try:
            dp.wait_for(final, "every load balancer ACTIVE or ERROR, the deleted gone",
                        timeout=SETTLE)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.plane.logs(120)}") from None
        self.settled.append(time.monotonic() - restarted)
        status = {lb.id: lb.provisioning_status for lb in self.lbs.load_balancers()}
        self.errors |= {i for i, s in status.items() if s == "ERROR"}

        def holds() -> None:
            view = CloudView.read(self.plane)
            for made in self.alive:
                if status[made.id] == "ACTIVE":
                    check_live(self.plane, view, self.lbs.get_load_balancer(made.id),
                               made.populated, made.pair)
            left = [x for lb_id in self.deleted for x in leftovers_of(self.plane, view, lb_id)]
            assert not left, left
            assert not unowned(self.plane, view), unowned(self.plane, view)

        # A deleted server or detached port may take Nova a few seconds to let go of.
        eventually(holds, "the cloud holding exactly the live load balancers' objects",
                   timeout=60)


# -- the test --------------------------------------------------------------------------


def test_worker_killed_during_creates_and_deletes_leaves_nothing_behind(
        plane: Plane) -> None:
    print(f"\nCLOUD CRASH seed {SEED} (replay: AMPHORAE_CRASH_SEED={SEED})")
    began = time.monotonic()
    chaos = Chaos(plane, random.Random(SEED), cloud_plane.pair_flavor(plane))
    try:
        for _ in range(TRIALS):
            chaos.trial()
    finally:
        for made in chaos.alive:
            chaos.lbs.delete_load_balancer(made.id, cascade=True, ignore_missing=True)
            chaos.deleted.append(made.id)
        chaos.alive = []
    chaos.settle(time.monotonic())
    print(f"CLOUD CRASH {TRIALS} trials, {len(chaos.deleted)} load balancers, "
          f"{chaos.kills_in_flight} kills with a job in flight, in "
          f"{time.monotonic() - began:.0f} s")
    print(f"CLOUD CRASH changes: {dict(sorted(chaos.ops.items()))}; "
          f"{len(chaos.errors)} went ERROR")
    print(f"CLOUD CRASH worker restart {max(chaos.restarts):.1f} s at most; settled "
          f"{', '.join(f'{s:.0f}' for s in chaos.settled)} s after the restart "
          f"(max {max(chaos.settled):.0f} s)")
    assert chaos.kills_in_flight >= TRIALS // 2, "too few kills hit a reconcile"
    assert not chaos.errors, f"load balancers went ERROR: {sorted(chaos.errors)}"
