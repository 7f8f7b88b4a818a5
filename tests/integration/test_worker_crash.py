"""Crash safety of the controller worker (root): SIGKILL at random moments.

`amphorae api`, one `amphorae worker` and `amphorae housekeeping` run as separate
processes on SQLite, booting real netns amphorae. Each trial sends one to three changes
through openstacksdk (creates, SINGLE or ACTIVE_STANDBY through a flavor, fully populated
or bare; member added or removed, pool algorithm changed, listener or pool added, a load
balancer or one of its amphorae failed over; cascade deletes), sleeps a random 0 to 2.5 s
(an amphora boots in 0.35 to 0.9 s, a reconcile takes up to about two seconds) and, in
four trials out of five, SIGKILLs the worker's process group, then starts a new worker.
Every few trials every load balancer must reach ACTIVE, ERROR or be gone within 30 s of
the last restart; each ACTIVE one must run on exactly its topology's live amphorae (one
STANDALONE, or one MASTER and one BACKUP of which exactly one holds the VIP once the
load balancer has a listener) and serve traffic from its members; and no amphora may be
left without a live row. At the end everything is cascade-deleted and nothing may be
left: no amphora namespace, state, port, process, address or row.

The changes and kill times come from a seeded random.Random: the seed is printed, and
AMPHORAE_CRASH_SEED=<seed> replays the same choices (timing still varies);
AMPHORAE_CRASH_TRIALS=<n> runs more trials than the default 24 (the soak: 200).

Addresses: VIPs on 198.18.96.0/24, members on 198.18.97.0/24, amphora management on
198.18.98.0/24 (fixed: the module holds one test, so it needs one deployment only).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import openstack
import pytest
from sqlalchemy import func, select

from amphorae.db import engine
from amphorae.db import models as m
from amphorae.drivers.compute import netns as compute
from tests import dataplane as dp
from tests import netns
from tests.deployment import FINAL, WAIT, Deployment, deployment, eventually
from tests.integration.test_netns_compute import netns_names

MARKER = secrets.token_hex(3)
VIP_CIDR, MEMBER_CIDR, MGMT_CIDR = "198.18.96.0/24", "198.18.97.0/24", "198.18.98.0/24"
SEED = int(os.environ.get("AMPHORAE_CRASH_SEED") or secrets.randbits(32))
MEMBERS = ("m1", "m2", "m3")
TRIALS = int(os.environ.get("AMPHORAE_CRASH_TRIALS") or 24)  # more for a soak run
ROUND = 6  # trials between two checks that everything settled
MAX_LBS = 4  # load balancers alive at a time (each one an amphora running HAProxy)
KILL_WITHIN = 2.5  # seconds after the changes the worker dies, at most (a pair: ~1.8 s)
KILL_SHARE = 0.8  # of the trials; a target killed MAX_ATTEMPTS times in a row goes ERROR
HTTP_PORT = 80
FIRST_VIP_HOST = 10  # VIPs .10, .11, ... in creation order, never reused
EXTRA_PORTS = (81, 82)  # listeners without a pool, added by updates
ALGORITHMS = ("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP")
PAIRS = 0.4  # share of creates that are ACTIVE_STANDBY
PAIR_ROLES = [("BACKUP", "ALLOCATED"), ("MASTER", "ALLOCATED")]
VRRP_ELECTION = 20.0  # seconds a pair may take to agree on one VIP holder
WORKER_START = 30.0  # seconds a restarted worker may take to log that it started


@pytest.fixture(scope="module")
def plant() -> Iterator[Deployment]:
    extra = f"\n[netns_compute]\nmanagement_cidr = {MGMT_CIDR}\n"
    with deployment(MARKER, VIP_CIDR, MEMBER_CIDR, extra_config=extra) as d:
        for i, name in enumerate(MEMBERS, start=1):
            d.members.add(name, 20 + i)
        d.start("api")
        d.start("housekeeping")
        start_worker(d)
        yield d


@pytest.fixture(scope="module")
def pair_flavor(plant: Deployment) -> str:
    return plant.pair_flavor()


# -- the worker ------------------------------------------------------------------------


def start_worker(d: Deployment) -> float:
    """Start `amphorae worker`; returns once it logged that it runs (the seconds taken)."""
    log = d.state / "worker.log"
    offset = log.stat().st_size if log.exists() else 0
    started = time.monotonic()
    service = d.start("worker")

    def running() -> bool:
        assert service.process.poll() is None, log.read_text()[-3000:]
        with open(log, "rb") as fh:
            fh.seek(offset)
            return re.search(rb"worker \S+ started", fh.read()) is not None

    dp.wait_for(running, "the worker starting", timeout=WORKER_START)
    return time.monotonic() - started


def jobs_in_flight(d: Deployment) -> int:
    """Jobs the running worker holds (its lease owner name carries its pid)."""
    pid = d.services["worker"].process.pid
    with engine.transaction(write=False, url=d.db_url) as session:
        return session.scalar(select(func.count()).select_from(m.Job).where(
            m.Job.lease_owner.like(f"%:{pid}:%"))) or 0


# -- what a load balancer holds --------------------------------------------------------


@dataclasses.dataclass
class LbView:
    id: str
    status: str
    vip: str
    listeners: dict[int, str]  # port -> listener id
    pool: Any | None  # the default pool of the HTTP_PORT listener
    members: dict[str, Any]  # member name -> member, in that pool


def view(d: Deployment, lb: Any) -> LbView:
    listeners: dict[int, str] = {}
    pool = None
    for ref in lb.listeners or []:
        listener = d.lb.get_listener(ref["id"])
        listeners[listener.protocol_port] = listener.id
        if listener.protocol_port == HTTP_PORT and listener.default_pool_id:
            pool = d.lb.get_pool(listener.default_pool_id)
    members = {mem.name: mem for mem in d.lb.members(pool.id)} if pool is not None else {}
    return LbView(lb.id, lb.provisioning_status, lb.vip_address, listeners, pool, members)


def member_spec(d: Deployment, name: str) -> dict[str, Any]:
    return {"name": name, "address": d.members.addresses[name],
            "protocol_port": dp.HTTP.port, "subnet_id": d.member_subnet_id}


# -- the trials ------------------------------------------------------------------------


@dataclasses.dataclass
class Chaos:
    d: Deployment
    rng: random.Random
    pair_flavor: str
    created: list[str] = dataclasses.field(default_factory=list)
    ops: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    kills_in_flight: int = 0
    restart_seconds: list[float] = dataclasses.field(default_factory=list)
    recoveries: list[float] = dataclasses.field(default_factory=list)
    restarted_at: float = 0.0
    served: int = 0  # traffic checks through a VIP that passed
    pairs_checked: int = 0  # pairs with listeners found with one amphora holding the VIP

    # -- changes ---------------------------------------------------------------------

    def create(self, pair_alive: bool) -> None:
        """A random create; a fully populated pair while no pair is alive and none has
        been checked yet, so that every run checks one (0.6**8 of runs drew none)."""
        name = f"crash-{len(self.created)}"
        kwargs: dict[str, Any] = {}
        owed = not pair_alive and not self.pairs_checked
        if owed or self.rng.random() < 0.8:  # fully populated: listener, pool and members
            chosen = self.rng.sample(MEMBERS, self.rng.randint(1, 2))
            kwargs["listeners"] = [{
                "name": "http", "protocol": "HTTP", "protocol_port": HTTP_PORT,
                "default_pool": {"name": "web", "protocol": "HTTP",
                                 "lb_algorithm": self.rng.choice(ALGORITHMS),
                                 "members": [member_spec(self.d, n) for n in chosen]}}]
        pair = owed or self.rng.random() < PAIRS
        if pair:
            kwargs["flavor_id"] = self.pair_flavor
        lb = self.d.lb.create_load_balancer(vip_subnet_id=self.d.vip_subnet_id, name=name,
                                            **kwargs)
        self.created.append(lb.id)
        self.ops[f"create {'full' if 'listeners' in kwargs else 'bare'}"
                 f"{' pair' if pair else ''}"] += 1

    def update(self, v: LbView) -> None:
        """One change that fits what the load balancer holds."""
        lb = self.d.lb
        if HTTP_PORT not in v.listeners:
            self._op("add listener", lb.create_listener, loadbalancer_id=v.id,
                     protocol="HTTP", protocol_port=HTTP_PORT)
            return
        if v.pool is None:
            self._op("add pool", lb.create_pool, listener_id=v.listeners[HTTP_PORT],
                     protocol="HTTP", lb_algorithm=self.rng.choice(ALGORITHMS))
            return
        absent = [n for n in MEMBERS if n not in v.members]
        free_ports = [p for p in EXTRA_PORTS if p not in v.listeners]
        choices: list[Callable[[], None]] = [lambda: self._op(
            "change algorithm", lb.update_pool, v.pool.id, lb_algorithm=self.rng.choice(
                [a for a in ALGORITHMS if a != v.pool.lb_algorithm]))]
        if absent:
            choices.append(lambda: self._op(
                "add member", lb.create_member, v.pool.id,
                **member_spec(self.d, self.rng.choice(absent))))
        if v.members:
            choices.append(lambda: self._op(
                "remove member", lb.delete_member,
                v.members[self.rng.choice(sorted(v.members))].id, v.pool.id))
        if free_ports:
            choices.append(lambda: self._op(
                "add listener", lb.create_listener, loadbalancer_id=v.id, protocol="HTTP",
                protocol_port=self.rng.choice(free_ports)))
        choices.append(lambda: self._op("failover lb", lb.failover_load_balancer, v.id))
        amps = [a.id for a in lb.amphorae(loadbalancer_id=v.id)]
        if amps:
            choices.append(lambda: self._op("failover amphora", lb.failover_amphora,
                                            self.rng.choice(amps)))
        self.rng.choice(choices)()

    def delete(self, v: LbView) -> None:
        self._op("delete", self.d.lb.delete_load_balancer, v.id, cascade=True)

    def _op(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except openstack.exceptions.ConflictException:
            # Only load balancers just seen ACTIVE or ERROR are changed, and nothing
            # else changes them: a 409 is a bug. Counted; the test fails on it at the
            # end, once everything is cleaned up.
            self.ops[f"409 on {what}"] += 1
            return
        self.ops[what] += 1

    # -- one trial -------------------------------------------------------------------

    def trial(self) -> None:
        lbs = list(self.d.lb.load_balancers())
        settled = [lb for lb in lbs if lb.provisioning_status in FINAL]
        self.rng.shuffle(settled)
        alive = len(lbs)
        pair_alive = any(lb.flavor_id == self.pair_flavor for lb in lbs)
        for _ in range(self.rng.randint(1, 3)):
            kind = self.rng.choices(("create", "update", "delete"), (0.3, 0.5, 0.2))[0]
            if kind == "create" and alive >= MAX_LBS:
                kind = "update"
            if kind != "create" and not settled:
                kind = "create"
            if kind == "create":
                if alive < MAX_LBS:
                    self.create(pair_alive)
                    pair_alive = True  # at most one owed pair per trial
                    alive += 1
                continue
            lb = settled.pop()
            if kind == "update" and lb.provisioning_status == "ACTIVE":
                self.update(view(self.d, lb))
            else:
                self.delete(view(self.d, lb))
                alive -= 1
        time.sleep(self.rng.uniform(0.0, KILL_WITHIN))
        if self.rng.random() >= KILL_SHARE:
            self.restarted_at = time.monotonic()  # settle() counts from here
            return
        self.kills_in_flight += jobs_in_flight(self.d) > 0
        self.d.stop("worker", signal.SIGKILL)
        self.restarted_at = time.monotonic()
        self.restart_seconds.append(start_worker(self.d))

    # -- checks ----------------------------------------------------------------------

    def settle(self) -> list[Any]:
        """Every load balancer ACTIVE, ERROR or gone within WAIT of the last restart."""
        def final() -> bool:
            return all(lb.provisioning_status in FINAL for lb in self.d.lb.load_balancers())

        wait = WAIT - (time.monotonic() - self.restarted_at)
        dp.wait_for(final, "every load balancer ACTIVE, ERROR or gone", timeout=wait)
        self.recoveries.append(time.monotonic() - self.restarted_at)
        return list(self.d.lb.load_balancers())

    def check_active(self, lb: Any) -> None:
        """The topology's live amphorae (a pair: exactly one holds the VIP), and the VIP
        answers from one of the pool's members."""
        amps = sorted(self.d.lb.amphorae(loadbalancer_id=lb.id), key=lambda a: a.role)
        roles = [(a.role, a.status) for a in amps]
        v = view(self.d, lb)
        if lb.flavor_id == self.pair_flavor:
            assert roles == PAIR_ROLES, (lb.id, roles)
            # Serving nothing, neither claims the VIP (render/keepalived.py's check).
            holders = 1 if v.listeners else 0
            eventually(lambda: _vip_holders(lb.vip_address, [a.id for a in amps], holders),
                       f"{lb.id}: {holders} amphora of the pair holding the VIP",
                       timeout=VRRP_ELECTION)
            self.pairs_checked += bool(holders)
        else:
            assert roles == [("STANDALONE", "ALLOCATED")], (lb.id, roles)
        serving = {name for name, mem in v.members.items()
                   if mem.provisioning_status == "ACTIVE"}
        if HTTP_PORT not in v.listeners or not serving:
            return
        try:
            eventually(lambda: _answer_from(v.vip, serving), f"{lb.id} serving", timeout=10)
        except (AssertionError, OSError) as exc:
            raise AssertionError(f"load balancer {lb.id}: VIP {v.vip} does not serve "
                                 f"({exc!r})\n{vip_holders(self.d, v.vip)}\n"
                                 f"{self.d.logs()}") from exc
        self.served += 1


def _vip_holders(vip: str, amphora_ids: list[str], expected: int) -> None:
    holders = [a for a in amphora_ids if f" {vip}/" in netns.run(
        "ip", "-br", "address", ns=compute.namespace_name(a), check=False).stdout]
    assert len(holders) == expected, f"VIP {vip} held by {holders} of {amphora_ids}"


def _answer_from(vip: str, names: set[str]) -> None:
    reply = dp.http_request(vip, HTTP_PORT)
    assert reply.status == 200 and reply.text in names, (vip, reply.status, reply.text)


# -- what is on the host ---------------------------------------------------------------


def live_amphorae(d: Deployment) -> set[str]:
    """Short ids of amphora rows not DELETED."""
    with engine.transaction(write=False, url=d.db_url) as session:
        return {compute.short_id(i) for i in session.scalars(
            select(m.Amphora.id).where(m.Amphora.status != "DELETED"))}


def every_amphora(d: Deployment) -> set[str]:
    """Short ids of every amphora the worker ever wrote a row for (it writes the row
    before it boots; DELETED rows stay a week)."""
    with engine.transaction(write=False, url=d.db_url) as session:
        return {compute.short_id(i) for i in session.scalars(select(m.Amphora.id))}


def assert_no_orphans(d: Deployment) -> None:
    namespaces = {n[len(compute.NAMESPACE_PREFIX):] for n in netns_names()
                  if n.startswith(compute.NAMESPACE_PREFIX)}
    on_host = set(d.amphora_dirs()) | (namespaces & every_amphora(d))
    orphans = on_host - live_amphorae(d)
    assert not orphans, f"amphorae on the host without a live row: {sorted(orphans)}"


def vip_holders(d: Deployment, vip: str) -> str:
    """For a failure message: which amphorae of this deployment hold the address, what
    the host's neighbour table says about it, and for the one holding it its HAProxy
    configuration, server states, neighbours and log."""
    out = [netns.run("ip", "neigh", "show", vip, check=False).stdout.strip()]
    for short in d.amphora_dirs():
        ns = compute.NAMESPACE_PREFIX + short
        found = netns.run("ip", "-br", "address", ns=ns, check=False).stdout
        out.append(f"{ns}: {' | '.join(found.splitlines())}")
        if f" {vip}/" in found:
            out.append(_amphora_report(d, short, ns))
    return "\n".join(out)


def _amphora_report(d: Deployment, short: str, ns: str) -> str:
    out = [f"--- neighbours in {ns}",
           netns.run("ip", "neigh", ns=ns, check=False).stdout.strip(),
           f"--- routes in {ns}", netns.run("ip", "route", ns=ns, check=False).stdout.strip()]
    for cfg in (d.state / "amphorae" / short).glob("lb/*/haproxy.cfg"):
        out += [f"--- {cfg}", cfg.read_text(errors="replace")]
        sock = cfg.with_name("haproxy.sock")
        stat = netns.run("socat", "-", f"UNIX-CONNECT:{sock}", check=False,
                         input="show stat\n")
        out += ["--- show stat", (stat.stdout or stat.stderr).strip()]
        log = cfg.with_name("haproxy.log")
        if log.exists():
            out += ["--- haproxy.log", "\n".join(log.read_text(
                errors="replace").splitlines()[-30:])]
    return "\n".join(out)


def worker_errors(d: Deployment) -> list[str]:
    """Why load balancers went to ERROR, as the workers logged it."""
    text = (d.state / "worker.log").read_text(errors="replace")
    return [line for line in text.splitlines()
            if "cannot be built" in line or "giving up" in line]


# -- the test --------------------------------------------------------------------------


def test_worker_killed_at_random_moments(plant: Deployment, pair_flavor: str) -> None:
    d = plant
    print(f"\nCRASH seed {SEED} (replay: AMPHORAE_CRASH_SEED={SEED})")
    began = time.monotonic()
    chaos = Chaos(d, random.Random(SEED), pair_flavor)
    seen: set[str] = set()
    went_error: set[str] = set()  # load balancers found in ERROR at a check
    for trial in range(1, TRIALS + 1):
        chaos.trial()
        seen |= set(d.amphora_dirs())
        if trial % ROUND and trial != TRIALS:
            continue
        for lb in chaos.settle():
            if lb.provisioning_status == "ACTIVE":
                chaos.check_active(lb)
            else:
                went_error.add(lb.id)
        eventually(lambda: assert_no_orphans(d), "orphaned amphorae removed", timeout=10)

    outcome = collections.Counter(
        lb.provisioning_status for lb in d.lb.load_balancers())
    outcome["gone"] = len(chaos.created) - sum(outcome.values())
    for lb in list(d.lb.load_balancers()):
        d.lb.delete_load_balancer(lb.id, cascade=True)
    for lb_id in chaos.created:
        d.wait_gone(lb_id)
    eventually(lambda: _nothing_left(d), "nothing left", timeout=15)
    seen |= every_amphora(d)
    still = {f"{compute.NAMESPACE_PREFIX}{s}" for s in seen} & netns_names()
    assert not still, f"amphora namespaces left: {sorted(still)}"

    print(f"CRASH {TRIALS} trials, {len(chaos.created)} load balancers, "
          f"{len(seen)} amphorae booted, {chaos.kills_in_flight} kills with a job in "
          f"flight, in {time.monotonic() - began:.1f} s")
    print(f"CRASH changes: {dict(sorted(chaos.ops.items()))}; "
          f"{chaos.served} VIP checks served by a member, {chaos.pairs_checked} pairs "
          "found with one VIP holder")
    print(f"CRASH outcomes before the final delete: {dict(outcome)}; "
          f"{len(went_error)} found in ERROR at a check")
    print(f"CRASH worker restart {max(chaos.restart_seconds):.2f} s at most; "
          f"settled {', '.join(f'{s:.1f}' for s in chaos.recoveries)} s after the last "
          f"restart (max {max(chaos.recoveries):.1f} s)")
    for line in worker_errors(d):
        print(f"CRASH worker: {line}")
    assert not [op for op in chaos.ops if op.startswith("409")], chaos.ops
    kinds = {op.split()[0] for op in chaos.ops}
    assert {"create", "delete"} <= kinds and kinds & {"add", "remove", "change"}, chaos.ops
    assert chaos.kills_in_flight >= TRIALS // 5, "too few kills hit a reconcile"
    assert chaos.served, "no ACTIVE load balancer with members was checked for traffic"
    assert chaos.pairs_checked, "no ACTIVE_STANDBY pair was checked"


def _nothing_left(d: Deployment) -> None:
    assert d.leftovers() == {}
