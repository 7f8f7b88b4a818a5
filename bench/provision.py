"""Provisioning figures of `amphorae up` with netns amphorae, next to their targets (root).

    .venv/bin/python -m bench.provision [--quick] [--backend sqlite|postgresql] [--log FILE]
    .venv/bin/python -m bench.provision --cloud [--rounds 5] [--log FILE]   (provision_cloud.py)

Runs `amphorae up` (API, worker, health manager, housekeeping) through
tests/deployment.py and measures over plain HTTP, polling every 20 ms:

- the CPU the idle control plane uses (all its processes, over 60 s: nothing polls, the
  worker sleeps until a job is written);
- POST to ACTIVE of SINGLE and ACTIVE_STANDBY load balancers created one after another
  (median, p95, max); Octavia with Nova VMs takes one to several minutes for the same;
- a fully populated create (HTTP listener, pool, 3 members, HTTP monitor in one POST):
  time until a GET through the VIP gets a 200 from a member, and until all 3 answered,
  from the POST and from ACTIVE;
- a SINGLE load balancer's amphora killed (every process SIGKILLed) under traffic: the
  clients' outage until the replacement serves;
- cascade DELETE to 404, over every load balancer above;
- 100 SINGLE load balancers with an HTTP listener, POSTed from 10 client threads: time
  until all are ACTIVE, memory (RSS and PSS of every process in the amphora namespaces,
  and the drop of the host's MemAvailable), then the time to delete them all.

Issue 14's figures are printed next to their targets and their values before the issue
(bench/targets.py), and again together at the end.

After each part: the control plane's WARNING and ERROR lines by kind, and how long
heartbeats waited to be written. ERROR states, failovers, refused DELETEs, amphorae no
row claims and load balancers with too many amphorae are shown, not hidden.

Addresses: VIPs 198.18.100.0/23, members 198.18.102.0/24, management 198.18.103.0/24.
Everything is removed when the run ends, also when it fails or is interrupted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import http.client
import json
import os
import re
import secrets
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select
from tests import dataplane as dp
from tests import netns
from tests.deployment import Deployment, deployment

from amphorae.db import engine
from amphorae.db import models as m
from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import plumbing as plumbing_mod
from bench import targets
from bench.api import NOAUTH, Caller
from bench.dataplane import cpu_seconds, rss_kib

VIP_CIDR = "198.18.100.0/23"  # room for 100 VIPs plus the VRRP addresses of pairs
MEMBER_CIDR = "198.18.102.0/24"
MANAGEMENT_CIDR = "198.18.103.0/24"  # one address per amphora: at most ~250 at once
MEMBERS = {"m1": 201, "m2": 202, "m3": 203}  # host numbers, clear of the amphorae's
POLL = 0.02  # s between status GETs: the resolution of the POST-to-ACTIVE figures
LB_PATH = "/v2/lbaas/loadbalancers"

POST_ACTIVE = {"SINGLE": "post_active_single", "ACTIVE_STANDBY": "post_active_pair"}
FIRST_200 = {"SINGLE": "first_200_single", "ACTIVE_STANDBY": "first_200_pair"}
OCTAVIA = "1 to several minutes (Nova VMs)"
CREATE_TIMEOUT = 60.0  # s for one load balancer on its own
FLEET_TIMEOUT = 600.0  # s for the whole fleet


class BenchError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Counts:
    one_by_one: int  # load balancers of each topology, created one after another
    trees: int  # fully populated creates of each topology
    fleet: int  # load balancers created at once
    threads: int  # client threads creating and deleting the fleet
    idle: float  # seconds the idle control plane's CPU use is measured over
    kills: int  # SINGLE amphorae killed under traffic


FULL = Counts(one_by_one=20, trees=5, fleet=100, threads=10, idle=60, kills=3)
QUICK = Counts(one_by_one=3, trees=1, fleet=10, threads=5, idle=15, kills=1)


# --- the API over plain HTTP -------------------------------------------------------


class Api:
    """The load balancer calls the bench makes, on one keep-alive connection per thread
    (a status GET then costs a few ms, so polling every 20 ms hardly loads the API)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self.refused_deletes: dict[str, int] = {}  # load balancer: 409s to its DELETE

    def call(self, method: str, path: str, body: object = None,
             expect: tuple[int, ...] = (200,)) -> tuple[int, Any]:
        for attempt in (1, 2):
            caller = getattr(self._local, "caller", None) or Caller(self.url, NOAUTH)
            self._local.caller = caller
            try:
                status, out, _ = caller.call(method, path, body)
                break
            except (http.client.HTTPException, ConnectionError):
                caller.conn.close()  # the server closed an idle connection: a new one
                self._local.caller = None
                if attempt == 2:
                    raise
        if status not in expect:
            raise BenchError(f"{method} {path}: {status} {out}")
        return status, out

    def create(self, lb: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", LB_PATH, {"loadbalancer": lb}, expect=(201,))[1][
            "loadbalancer"]

    def delete(self, lb_id: str) -> None:
        """Cascade DELETE; a 409 (the load balancer is PENDING_*, e.g. in a failover the
        health manager started) is retried, as a client would, and counted."""
        started = time.perf_counter()
        while self.call("DELETE", f"{LB_PATH}/{lb_id}?cascade=true",
                        expect=(204, 409))[0] == 409:
            with self._lock:
                self.refused_deletes[lb_id] = self.refused_deletes.get(lb_id, 0) + 1
            if time.perf_counter() - started > CREATE_TIMEOUT:
                raise BenchError(f"DELETE of {lb_id} refused (409) for "
                                 f"{CREATE_TIMEOUT:.0f} s")
            time.sleep(0.1)

    def status(self, lb_id: str) -> str:
        """The provisioning status; DELETED once the API answers 404."""
        code, out = self.call("GET", f"{LB_PATH}/{lb_id}", expect=(200, 404))
        return "DELETED" if code == 404 else str(out["loadbalancer"]["provisioning_status"])

    def statuses(self, name: str) -> dict[str, str]:
        """Provisioning status by id of the load balancers named ``name``."""
        _, out = self.call("GET", f"{LB_PATH}?name={name}&fields=id&fields="
                           "provisioning_status&limit=1000")
        return {lb["id"]: lb["provisioning_status"] for lb in out["loadbalancers"]}


def wait_status(api: Api, lb_id: str, wanted: str, started: float,
                timeout: float = CREATE_TIMEOUT) -> float:
    """Seconds from ``started`` (perf_counter) until the load balancer is ``wanted``."""
    while True:
        state = api.status(lb_id)
        now = time.perf_counter()
        if state == wanted:
            return now - started
        if state == "ERROR":
            raise BenchError(f"load balancer {lb_id} went to ERROR")
        if now - started > timeout:
            raise BenchError(f"load balancer {lb_id} still {state} after {timeout:.0f} s")
        time.sleep(POLL)


def delete_timed(api: Api, lb_id: str) -> float:
    """Seconds from the cascade DELETE until the API answers 404 (or DELETED)."""
    started = time.perf_counter()
    api.delete(lb_id)
    return wait_status(api, lb_id, "DELETED", started)


def lb_body(d: Deployment, name: str, flavor_id: str | None, **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "vip_subnet_id": d.vip_subnet_id, **more}
    if flavor_id:
        body["flavor_id"] = flavor_id
    return body


def pair_flavor(api: Api, marker: str) -> str:
    """A flavor whose profile asks for ACTIVE_STANDBY; its id."""
    _, profile = api.call("POST", "/v2/lbaas/flavorprofiles", {"flavorprofile": {
        "name": f"bench-pair-{marker}", "provider_name": "amphora",
        "flavor_data": json.dumps({"loadbalancer_topology": "ACTIVE_STANDBY"})}},
        expect=(201,))
    _, flavor = api.call("POST", "/v2/lbaas/flavors", {"flavor": {
        "name": f"bench-pair-{marker}", "enabled": True,
        "flavor_profile_id": profile["flavorprofile"]["id"]}}, expect=(201,))
    return str(flavor["flavor"]["id"])


# --- statistics and checks ---------------------------------------------------------


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):6.3f} s, p95 {p95(values):6.3f} s, "
            f"max {max(values):6.3f} s (n={len(values)})")


def clean_slate(d: Deployment, timeout: float = 30.0) -> float:
    """Wait until nothing of any load balancer is left (namespaces, ports, rows,
    addresses); the seconds it took. Fails with what is left."""
    started = time.perf_counter()
    while (left := d.leftovers()):
        if time.perf_counter() - started > timeout:
            raise BenchError(f"left behind after {timeout:.0f} s: {left}")
        time.sleep(0.2)
    return time.perf_counter() - started


def log_lines(d: Deployment) -> list[str]:
    """The control plane's log (`amphorae up`: API, worker, health manager,
    housekeeping), line by line."""
    log = d.state / "up.log"
    return log.read_text(errors="replace").splitlines() if log.exists() else []


STAMP = re.compile(r"^[\d-]+ [\d:,]+ \d+ ")  # a log line's time and process id
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|(?<=amphora-)[0-9a-f]{8}")
HEARTBEATS = re.compile(r"heartbeats: .*\bwritten=(\d+) withheld=(\d+) .*"
                        r"arrival to commit (\d+) ms max")


def show_log(lines: list[str]) -> None:
    """What the control plane logged during a phase: its WARNING, ERROR and Traceback
    lines by kind, and how long heartbeats waited to be written (the health manager
    does not count a heartbeat that waited longer than heartbeat_interval, so slow
    writes make amphorae stale)."""
    problems = [line for line in lines
                if any(word in line for word in (" WARNING ", " ERROR ", "Traceback"))]
    counters = [HEARTBEATS.search(line) for line in lines]
    found = [match for match in counters if match]
    if found:
        written = int(found[-1].group(1))
        withheld = int(found[-1].group(2))
        wait = max(int(match.group(3)) for match in found)
        print(f"  heartbeats (cumulative): {written} written, {withheld} withheld; "
              f"arrival to commit up to {wait} ms in this phase")
    if not problems:
        print("  control plane log: no WARNING or ERROR lines")
        return
    # The same message for many load balancers: count it once, without ids and times.
    shapes = collections.Counter(ID.sub("<>", STAMP.sub("", line))[:200]
                                 for line in problems)
    print(f"  control plane log: {len(problems)} WARNING/ERROR/Traceback lines, "
          f"{len(shapes)} kinds:")
    for shape, count in shapes.most_common(8):
        print(f"    {count:4d} x {shape}")


# --- one after another -------------------------------------------------------------


def one_by_one(api: Api, d: Deployment, topology: str, count: int,
               flavor_id: str | None) -> tuple[list[float], list[float]]:
    """Create ``count`` load balancers, each once the previous one is ACTIVE, then delete
    them one after another: (POST to ACTIVE seconds, DELETE to 404 seconds)."""
    ids: list[str] = []
    creates = []
    for i in range(count):
        started = time.perf_counter()
        lb = api.create(lb_body(d, f"bench-{topology.lower()}-{i}", flavor_id))
        ids.append(lb["id"])
        creates.append(wait_status(api, lb["id"], "ACTIVE", started))
    deletes = [delete_timed(api, lb_id) for lb_id in ids]
    return creates, deletes


# --- a whole tree to traffic -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TreeTimes:
    active: float  # POST to ACTIVE
    first: float  # POST to the first 200 through the VIP
    all_members: float  # POST until every member has answered through the VIP
    delete: float


def tree_body(d: Deployment, name: str, flavor_id: str | None) -> dict[str, Any]:
    members = [{"name": member, "address": d.members.addresses[member],
                "protocol_port": dp.HTTP.port, "subnet_id": d.member_subnet_id}
               for member in MEMBERS]
    pool = {"name": "pool", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "members": members,
            "healthmonitor": {"type": "HTTP", "delay": 1, "timeout": 1, "max_retries": 1,
                              "url_path": "/"}}
    listener = {"name": "http", "protocol": "HTTP", "protocol_port": 80,
                "default_pool": pool}
    return lb_body(d, name, flavor_id, listeners=[listener])


def tree_to_traffic(api: Api, d: Deployment, name: str, flavor_id: str | None) -> TreeTimes:
    """One fully populated create, probed through the VIP and the API every 20 ms."""
    started = time.perf_counter()
    lb = api.create(tree_body(d, name, flavor_id))
    active = first = all_members = None
    answered: set[str] = set()
    while active is None or answered != set(MEMBERS):
        now = time.perf_counter()
        if now - started > CREATE_TIMEOUT:
            raise BenchError(f"tree {lb['id']}: ACTIVE after {active} s, members that "
                             f"answered: {sorted(answered)}, after {CREATE_TIMEOUT:.0f} s")
        if active is None:
            state = api.status(lb["id"])
            if state == "ERROR":
                raise BenchError(f"tree {lb['id']} went to ERROR")
            if state == "ACTIVE":
                active = time.perf_counter() - started
        if answered != set(MEMBERS):
            with contextlib.suppress(OSError):  # nothing on the VIP yet
                reply = dp.http_request(lb["vip_address"], 80, timeout=0.2)
                if reply.status == 200:
                    first = first or time.perf_counter() - started
                    answered.add(reply.text)
                    if answered == set(MEMBERS):
                        all_members = time.perf_counter() - started
        time.sleep(POLL)
    assert first is not None and all_members is not None
    return TreeTimes(active, first, all_members, delete_timed(api, lb["id"]))


# --- a fleet at once ---------------------------------------------------------------


@dataclasses.dataclass
class Fleet:
    posted: dict[str, float] = dataclasses.field(default_factory=dict)  # id: POST time
    vips: dict[str, str] = dataclasses.field(default_factory=dict)
    settled: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
    post_errors: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


@contextlib.contextmanager
def in_parallel(threads: int, jobs: list[Callable[[], None]]) -> Iterator[None]:
    """Run ``jobs`` on ``threads`` threads during the block; it ends once all are done."""
    with ThreadPoolExecutor(threads, thread_name_prefix="bench") as pool:
        futures = [pool.submit(job) for job in jobs]
        yield
        for future in futures:
            future.result()


def create_fleet(api: Api, d: Deployment, count: int, threads: int,
                 name: str) -> tuple[Fleet, float]:
    """POST ``count`` load balancers with an HTTP listener from ``threads`` clients
    while polling the list; (the fleet, seconds from the first POST until every one
    of them is ACTIVE or ERROR or the timeout passed)."""
    fleet = Fleet()

    def post() -> None:
        started = time.perf_counter()
        try:
            lb = api.create(lb_body(d, name, None, listeners=[
                {"protocol": "HTTP", "protocol_port": 80}]))
        except BenchError as exc:
            with fleet.lock:
                fleet.post_errors.append(str(exc))
            return
        with fleet.lock:
            fleet.posted[lb["id"]] = started
            fleet.vips[lb["id"]] = lb["vip_address"]

    started = time.perf_counter()
    with in_parallel(threads, [post] * count):
        while time.perf_counter() - started < FLEET_TIMEOUT:
            states = api.statuses(name)
            now = time.perf_counter()
            with fleet.lock:
                for lb_id, state in states.items():
                    # A POST whose answer its thread has not recorded yet: next round.
                    if (state in ("ACTIVE", "ERROR") and lb_id not in fleet.settled
                            and lb_id in fleet.posted):
                        fleet.settled[lb_id] = (state, now - fleet.posted[lb_id])
                if len(fleet.settled) + len(fleet.post_errors) == count:
                    break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
    return fleet, elapsed


def delete_fleet(api: Api, ids: list[str], threads: int, name: str) -> float:
    """Cascade DELETE from ``threads`` clients; seconds until the API lists none."""
    started = time.perf_counter()
    with in_parallel(threads, [lambda i=lb_id: api.delete(i) for lb_id in ids]):
        pass
    while (alive := [s for s in api.statuses(name).values() if s != "DELETED"]):
        if time.perf_counter() - started > FLEET_TIMEOUT:
            raise BenchError(f"{len(alive)} load balancers not deleted after "
                             f"{FLEET_TIMEOUT:.0f} s: {collections.Counter(alive)}")
        time.sleep(0.1)
    return time.perf_counter() - started


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise BenchError("no MemAvailable in /proc/meminfo")


def pss_kib(pid: int) -> tuple[int, int]:
    """(PSS, anonymous PSS) in KiB. Proportional: pages shared by several processes
    (HAProxy's master and worker, the agents' Python) count once over all of them.
    Anonymous pages are what each amphora really adds; its file pages (binaries,
    libraries) sit in the page cache that all amphorae share."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Pss"].split()[0]), int(fields["Pss_Anon"].split()[0])


@dataclasses.dataclass(frozen=True)
class Memory:
    amphorae: int
    processes: collections.Counter[str]  # how many, by command name
    pss_by_name: collections.Counter[str]  # KiB of PSS, by command name
    rss_kib: int
    pss_kib: int
    anon_kib: int


def amphora_memory(d: Deployment) -> Memory:
    """RSS and PSS of every process in every amphora namespace of the deployment."""
    plumbing = plumbing_mod.Plumbing()
    names: collections.Counter[str] = collections.Counter()
    pss_by_name: collections.Counter[str] = collections.Counter()
    rss = pss = anon = 0
    dirs = d.amphora_dirs()
    for short in dirs:
        for pid in plumbing.netns_pids(compute.NAMESPACE_PREFIX + short):
            with contextlib.suppress(OSError):  # a process that just ended
                name, kib = rss_kib(pid)
                proportional, anonymous = pss_kib(pid)
                rss, pss, anon = rss + kib, pss + proportional, anon + anonymous
                names[name] += 1
                pss_by_name[name] += proportional
    return Memory(len(dirs), names, pss_by_name, rss, pss, anon)


def control_plane_pids(d: Deployment) -> list[int]:
    """`amphorae up` and its API processes (those run with this config)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if str(d.config).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
    return pids


def control_plane_rss_kib(d: Deployment) -> int:
    total = 0
    for pid in control_plane_pids(d):
        with contextlib.suppress(OSError):
            total += rss_kib(pid)[1]
    return total


def idle_phase(d: Deployment, seconds: float) -> None:
    """CPU of the whole control plane with nothing to do (before any load balancer)."""
    time.sleep(5)  # past start-up (migrations, imports, the first sweeps)
    pids = control_plane_pids(d)
    before = cpu_seconds(pids)
    time.sleep(seconds)
    share = 100 * (cpu_seconds(pids) - before) / seconds
    print(targets.line("idle", share, f"API, worker, health manager, housekeeping; "
                       f"{len(pids)} processes, no load balancer, over {seconds:.0f} s"))


def show_census(d: Deployment) -> None:
    """Amphorae on the host against live amphora rows: an amphora no row claims, or a
    load balancer with more than one for a SINGLE topology, is a worker problem."""
    with engine.transaction(write=False, url=d.db_url) as session:
        rows = session.execute(select(m.Amphora.id, m.Amphora.load_balancer_id).where(
            m.Amphora.status != "DELETED")).all()
    dirs = d.amphora_dirs()
    claimed = {compute.short_id(amp_id) for amp_id, _ in rows}
    unclaimed = [short for short in dirs if short not in claimed]
    per_lb = collections.Counter(lb_id for _, lb_id in rows)
    doubled = {lb_id: n for lb_id, n in per_lb.items() if n > 1}
    print(f"  {len(dirs)} amphorae on the host, {len(rows)} live amphora rows, "
          f"{len(unclaimed)} amphorae without a row, {len(doubled)} load balancers with "
          f"more than one amphora")
    log = log_lines(d)
    for short in unclaimed:
        print(f"    amphora {short} without a row; its log lines:")
        for line in [line for line in log if short in line][:4]:
            print(f"      {line[:200]}")
    for lb_id, n in doubled.items():
        print(f"    load balancer {lb_id}: {n} live amphorae")


def serving(fleet: Fleet, ids: list[str]) -> int:
    """How many of the load balancers answer through their VIP (503: no pool yet)."""
    count = 0
    for lb_id in ids:
        with contextlib.suppress(OSError):
            count += dp.http_request(fleet.vips[lb_id], 80, timeout=2).status == 503
    return count


# --- the run -----------------------------------------------------------------------


def run(args: argparse.Namespace, counts: Counts) -> None:
    marker = secrets.token_hex(3)
    print(f"marker {marker}: state in /tmp/amph-{marker}-*, member namespaces "
          f"amph-{marker}-*")
    with deployment(marker, VIP_CIDR, MEMBER_CIDR, backend=args.backend,
                    management_cidr=MANAGEMENT_CIDR) as d:
        for member, host in MEMBERS.items():
            d.members.add(member, host)
        d.start("up")
        api = Api(d.url)
        topologies = (("SINGLE", None), ("ACTIVE_STANDBY", pair_flavor(api, marker)))
        deletes: list[float] = []
        phases: list[Callable[[], None]] = [
            lambda: idle_phase(d, counts.idle),
            lambda: sequential_phase(api, d, counts, topologies, deletes),
            lambda: tree_phase(api, d, counts, topologies, deletes),
            lambda: kill_phase(api, d, counts, deletes),
            lambda: print(f"\ncascade DELETE to 404, every load balancer above: "
                          f"{spread(deletes)}"),
            lambda: fleet_run(api, d, counts)]
        seen = 0
        try:
            for phase in phases:
                phase()
                if api.refused_deletes:
                    print(f"  DELETE answered 409 (load balancer PENDING_*) "
                          f"{sum(api.refused_deletes.values())} times, for "
                          f"{len(api.refused_deletes)} load balancers; retried")
                    api.refused_deletes.clear()
                lines = log_lines(d)
                show_log(lines[seen:])
                seen = len(lines)
        except (BenchError, AssertionError):
            print(f"\nthe control plane's logs:\n{d.logs()}", file=sys.stderr)
            raise
        finally:
            if args.log:  # the state directory goes with the deployment
                shutil.copy(d.state / "up.log", args.log)
        print(f"\n{targets.summary()}")


Topologies = tuple[tuple[str, str | None], ...]  # (topology, flavor id)


def sequential_phase(api: Api, d: Deployment, counts: Counts, topologies: Topologies,
                     deletes: list[float]) -> None:
    print(f"\none after another, POST to ACTIVE ({counts.one_by_one} each, status "
          f"polled every {POLL * 1000:.0f} ms):")
    for topology, flavor_id in topologies:
        creates, removed = one_by_one(api, d, topology, counts.one_by_one, flavor_id)
        deletes += removed
        print(f"  {topology:15} {spread(creates)}; Octavia: {OCTAVIA}")
        print(f"  {targets.line(POST_ACTIVE[topology], statistics.median(creates))}")
        clean_slate(d)


def tree_phase(api: Api, d: Deployment, counts: Counts, topologies: Topologies,
               deletes: list[float]) -> None:
    print(f"\nfully populated create (HTTP listener, pool, {len(MEMBERS)} members, "
          f"HTTP monitor; {counts.trees} each), POST to:")
    for topology, flavor_id in topologies:
        trees = [tree_to_traffic(api, d, f"bench-tree-{i}", flavor_id)
                 for i in range(counts.trees)]
        deletes += [t.delete for t in trees]
        print(f"  {topology:15} ACTIVE            {spread([t.active for t in trees])}")
        print(f"  {'':15} first 200 via VIP {spread([t.first for t in trees])}")
        print(f"  {'':15} all {len(MEMBERS)} answered   "
              f"{spread([t.all_members for t in trees])}")
        # Negative: the VIP answered before a status poll saw ACTIVE.
        after = [t.first - t.active for t in trees]
        print(f"  {'':15} ACTIVE to first 200 {spread(after)}")
        print(f"  {targets.line(FIRST_200[topology], statistics.median(after))}")
        clean_slate(d)


def kill_phase(api: Api, d: Deployment, counts: Counts, deletes: list[float]) -> None:
    """SINGLE load balancers whose amphora is killed under traffic: the clients' outage
    (last 200 before the kill to the first 200 after the last failure; a GET every
    20 ms on a fresh connection) and the time until the load balancer is ACTIVE again."""
    print(f"\nSINGLE amphora killed under traffic (every process SIGKILLed, {counts.kills} "
          f"times; fully populated load balancer, a GET via the VIP every 20 ms):")
    gaps, restored = [], []
    for i in range(counts.kills):
        lb = api.create(tree_body(d, f"bench-kill-{i}", None))
        wait_status(api, lb["id"], "ACTIVE", time.perf_counter())
        gap, back = kill_under_traffic(api, lb)
        gaps.append(gap)
        restored.append(back)
        deletes.append(delete_timed(api, lb["id"]))
    print(f"  traffic gap                 {spread(gaps)}")
    print(f"  ACTIVE again, new amphora   {spread(restored)}")
    print(f"  {targets.line('single_kill', statistics.median(gaps))}")
    clean_slate(d)


def kill_under_traffic(api: Api, lb: dict[str, Any]) -> tuple[float, float]:
    """(traffic gap, seconds from the kill until the load balancer is ACTIVE again with
    another amphora) of one kill of the load balancer's amphora."""
    def served() -> None:
        if dp.http_request(lb["vip_address"], 80, timeout=0.5).status != 200:
            raise RuntimeError("not a 200")

    _, out = api.call("GET", f"/v2/octavia/amphorae?loadbalancer_id={lb['id']}")
    (victim,) = [a for a in out["amphorae"] if a["status"] != "DELETED"]
    probe = dp.Probe(served)
    probe.start()
    try:
        probe.wait_successes(10, CREATE_TIMEOUT)
        killed_at = time.monotonic()
        netns.crash_namespace(victim["compute_id"])
        while True:
            _, out = api.call("GET", f"/v2/octavia/amphorae?loadbalancer_id={lb['id']}")
            ids = {a["id"] for a in out["amphorae"] if a["status"] != "DELETED"}
            if (victim["id"] not in ids and ids
                    and api.status(lb["id"]) == "ACTIVE"):
                break
            if time.monotonic() - killed_at > CREATE_TIMEOUT:
                raise BenchError(f"load balancer {lb['id']}: no new amphora after "
                                 f"{CREATE_TIMEOUT:.0f} s")
            time.sleep(POLL)
        restored = time.monotonic() - killed_at
        probe.wait_successes(10, CREATE_TIMEOUT)
    finally:
        probe.stop()
    return probe.gap(killed_at), restored


def fleet_run(api: Api, d: Deployment, counts: Counts) -> None:
    name = "bench-fleet"
    print(f"\n{counts.fleet} SINGLE load balancers with an HTTP listener, POSTed from "
          f"{counts.threads} client threads ({os.cpu_count()} CPUs):")
    mem_before = mem_available_kib()
    plane_before = control_plane_rss_kib(d)
    fleet, elapsed = create_fleet(api, d, counts.fleet, counts.threads, name)
    states = collections.Counter(state for state, _ in fleet.settled.values())
    pending = len(fleet.posted) - len(fleet.settled)
    active = [lb_id for lb_id, (state, _) in fleet.settled.items() if state == "ACTIVE"]
    print(f"  all settled after {elapsed:.1f} s: {dict(states)}"
          + (f", {pending} still PENDING after {FLEET_TIMEOUT:.0f} s" if pending else "")
          + (f", {len(fleet.post_errors)} POSTs failed: {fleet.post_errors[:3]}"
             if fleet.post_errors else ""))
    # The target is all of them ACTIVE: any other outcome does not meet it.
    all_active = len(active) == counts.fleet
    burst = targets.line("burst", elapsed if all_active else float("inf"),
                         f"{len(active)} of {counts.fleet} ACTIVE, {counts.threads} clients"
                         + ("" if counts.fleet == FULL.fleet else "; --quick: fewer"))
    print(f"  {burst}")
    if active:
        print(f"  POST to ACTIVE of each (list polled every 0.1 s): "
              f"{spread([fleet.settled[i][1] for i in active])}")
    memory = amphora_memory(d)
    drop = mem_before - mem_available_kib()
    plane_after = control_plane_rss_kib(d)
    show_census(d)
    per = max(memory.amphorae, 1)
    print(f"  memory of {memory.amphorae} amphorae, total (each):")
    for label, kib in (("RSS", memory.rss_kib), ("PSS", memory.pss_kib),
                       ("anonymous PSS", memory.anon_kib)):
        print(f"    {label:14} {kib / 1024:7.0f} MiB ({kib / 1024 / per:5.1f} MiB)")
    for name, count in sorted(memory.processes.items()):
        kib = memory.pss_by_name[name]
        print(f"    PSS of {count} {name:7} {kib / 1024:5.0f} MiB ({kib / 1024 / per:5.1f} MiB)")
    rss = targets.line("rss", memory.rss_kib / 1024 / per, f"average of {memory.amphorae} "
                       f"SINGLE amphorae: agent and HAProxy; PSS "
                       f"{memory.pss_kib / 1024 / per:.1f} MiB")
    print(f"  {rss}")
    print(f"  host MemAvailable dropped by {drop / 1024:.0f} MiB "
          f"({drop / 1024 / max(len(active), 1):.1f} MiB per ACTIVE load balancer); "
          f"control plane RSS {plane_before / 1024:.0f} -> {plane_after / 1024:.0f} MiB")
    print(f"  answering through their VIP (503, no pool): {serving(fleet, active)} of "
          f"{len(active)} ACTIVE")
    seconds = delete_fleet(api, list(fleet.posted), counts.threads, name)
    print(f"  cascade DELETE of all {len(fleet.posted)}: API answers 404 for all after "
          f"{seconds:.1f} s; namespaces, ports and rows gone {clean_slate(d, 120):.1f} s "
          f"later")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK.one_by_one} of each topology, a fleet of "
                             f"{QUICK.fleet}")
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--log", type=Path, help="copy the control plane's log here")
    parser.add_argument("--cloud", action="store_true",
                        help="cloud mode instead: POST -> ACTIVE with Octavia's cloud drivers "
                             "next to Nova's own boot (bench/provision_cloud.py)")
    parser.add_argument("--rounds", type=int, default=5, help="with --cloud: per topology")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.provision needs root (network namespaces)", file=sys.stderr)
        return 1
    if args.cloud:
        from bench import provision_cloud

        return provision_cloud.main(args.rounds, args.log)
    counts = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"amphorae provisioning, `amphorae up` on {args.backend}, netns amphorae, "
          f"{os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}: the host is shared), "
          f"{mem_available_kib() / 1024 ** 2:.1f} GiB available")
    try:
        run(args, counts)
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; everything made was removed", file=sys.stderr)
        return 130
    finally:
        print(f"\ntotal {time.perf_counter() - started:.0f} s, load "
              f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
