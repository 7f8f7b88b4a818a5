"""Heartbeats per second through one health manager process, and failover timings.

    .venv/bin/python -m bench.health [--backend sqlite|postgresql] [--amphorae 10000]
        [--rates 2000,5000,10000] [--repeats 3] [--part all|throughput|failover]

Throughput (no root needed): a database seeded with ``--amphorae`` amphorae, each of its
own ACTIVE load balancer with an HTTP listener, a pool and two members; one
`amphorae health` process pinned to CPU 1 (taskset), bound on 127.0.0.1; a sender
process pinned to CPU 0 sends signed heartbeats encoded beforehand with the agents' codec,
round-robin over the fleet with each amphora's ``seq`` increasing: its listener OPEN
with statistics deltas (every heartbeat has new connections: no write is skipped) and its
pool UP with both members; about 1% report a member DOWN and their next heartbeat UP
again, so statuses change all the time. The health manager logs its cumulative counters
and the batch write times every STATS_INTERVAL (health/service.py); each measured step
is exactly one such interval at one offered rate. A warm-up first gives every amphora its
health and statistics rows. Per step: heartbeats written per second (database writes
included); drops (by the receiver, by reason, and by the kernel when the socket buffer is
full: /proc/net/udp); heartbeats whose health refresh was withheld (they waited longer
than heartbeat_interval for the writer); how many wait for the writer at the end of the
interval; the batch write time and the longest wait from arrival to commit; the share of
its CPU the health manager used and the time its threads were runnable but waited for
that CPU (another process of this shared host, or its own other thread, had it:
/proc/<pid>/task/*/schedstat); its
CPU time per heartbeat, whose inverse is its capacity on a core of its own. The figure
asked for is the most written per second in a step; when that step is saturated (it
wrote less than 97% of the offered rate and its backlog grew) it is all the health
manager could do on its core then. Afterwards the accounts must add up (sent =
received + kernel drops, accepted = written) and, when nothing was dropped, the database
must hold exactly what was sent: the statistics add up to the sent deltas and the load
balancers DEGRADED are those whose last heartbeat reported a member DOWN.
heartbeat_timeout is set to an hour: the stale check stays out of the figures.

Failover (root): `amphorae up` with the embedded health settings (heartbeats every 1 s,
5 s timeout), deployment of tests/deployment.py on 198.18.108.0/24 (VIPs), 198.18.109.0/24
(members) and 198.18.110.0/24 (management); per repetition a new load balancer serving
HTTP through its VIP, then every process of one amphora (the MASTER of a pair) SIGKILLed
under traffic, as tests/integration/test_failover.py does (its helpers): the clients'
traffic gap, when the health manager started the failover (its log line), and when the
load balancer was ACTIVE again with the dead amphora replaced and nothing of it left (for
ACTIVE_STANDBY: redundancy restored). Medians.

Everything made (state directories, databases, processes, namespaces, bridges) is
removed when the run ends, also when it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from tests import netns, servers

from amphorae.common import heartbeat as codec
from amphorae.db import engine
from amphorae.db import models as m
from amphorae.health import service

KEY = "bench-health-heartbeat-key"
HM_CPU, SENDER_CPU = 1, 0
WARMUP_RATE = 2000
TARGET_RATE = 5000  # heartbeats/s on one core, database writes included
FAILOVER_TIMEOUT = 5  # the embedded heartbeat_timeout
TARGET_RESTORED = FAILOVER_TIMEOUT + 5  # s, the bound
OCTAVIA_TIMEOUT = 60  # Octavia's default heartbeat_timeout: its detection alone
VIP_CIDR, MEMBER_CIDR, MGMT_CIDR = "198.18.108.0/24", "198.18.109.0/24", "198.18.110.0/24"
DROPS = (*codec.REASONS, "replayed", "overflow", "error")  # the receiver's drop counters
# The counter line is DEBUG while no heartbeat is refused: the bench runs with debug on.
COUNTER_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \d+ (?:INFO|DEBUG) "
                          r"amphorae\.health\.service: heartbeats: (.*)$")
BATCH_PART = re.compile(r"last ([\d.]+) s: (\d+) batches, write ([\d.]+) ms mean ([\d.]+) "
                        r"ms max, arrival to commit (\d+) ms max")


# --- the fleet ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Amp:
    id: str
    lb: str
    listener: str
    pool: str
    members: tuple[str, str]


def make_fleet(count: int) -> list[Amp]:
    def new() -> str:
        return str(uuid.uuid4())

    return [Amp(new(), new(), new(), new(), (new(), new())) for _ in range(count)]


def seed(url: str, fleet: Sequence[Amp]) -> None:
    """Every amphora with its load balancer tree, ACTIVE, statuses still OFFLINE, in
    bulk inserts (parents first: SQLite enforces the foreign keys)."""
    active = {"provisioning_status": "ACTIVE", "operating_status": "OFFLINE",
              "enabled": True, "project_id": servers.PROJECT}
    tables: list[tuple[Any, list[dict[str, Any]]]] = [
        (m.LoadBalancer, [{"id": a.lb, "topology": "SINGLE", "provider": "amphora",
                           **active} for a in fleet]),
        (m.Pool, [{"id": a.pool, "load_balancer_id": a.lb, "protocol": "HTTP",
                   "lb_algorithm": "ROUND_ROBIN", **active} for a in fleet]),
        (m.Listener, [{"id": a.listener, "load_balancer_id": a.lb, "protocol": "HTTP",
                       "protocol_port": 80, "default_pool_id": a.pool, **active}
                      for a in fleet]),
        (m.Member, [{"id": member, "pool_id": a.pool, "ip_address": f"192.0.2.{n + 1}",
                     "protocol_port": 80, **active}
                    for a in fleet for n, member in enumerate(a.members)]),
        (m.Amphora, [{"id": a.id, "load_balancer_id": a.lb, "status": "ALLOCATED",
                      "role": "STANDALONE", "compute_id": a.id} for a in fleet]),
    ]
    with engine.transaction(url=url) as session:
        for model, rows in tables:
            session.execute(insert(model.__table__), rows)


def content(index: int, seq: int) -> tuple[dict[str, int], bool]:
    """Listener statistics deltas of amphora ``index`` at ``seq``, and whether its second
    member is reported DOWN (1% of heartbeats; the next one reports it UP again)."""
    k = index + seq
    rx = 2000 + 37 * (k % 50)
    stats = {"rx": rx, "tx": 8 * rx, "conns": k % 7, "totconns": 1 + k % 3,
             "ereq": int(k % 97 == 0)}
    return stats, k % 100 == 0


def message(amp: Amp, index: int, seq: int, boot: str, t0: float) -> dict[str, Any]:
    stats, down = content(index, seq)
    m1, m2 = amp.members
    listeners = {amp.listener: {"status": "OPEN", "stats": stats}}
    pools = {f"{amp.pool}:{amp.listener}": {
        "status": "UP", "members": {m1: "UP", m2: "DOWN" if down else "UP"}}}
    return codec.build_message(amp.id, seq, listeners, pools, boot_id=boot, started_at=t0)


_FLEET: list[Amp] = []  # the encoding workers' copy (fork)
_BOOT = (uuid.uuid4().hex, time.time())  # one agent start for the whole fleet


def _encode_round(seq: int) -> list[bytes]:
    return [codec.encode(message(a, i, seq, *_BOOT), KEY) for i, a in enumerate(_FLEET)]


def datagrams(fleet: list[Amp], rounds: int) -> list[bytes]:
    """``rounds`` heartbeats of every amphora, round by round (seq 1, 2, ...), encoded on
    every CPU beforehand: zlib at level 9, as agents send them, costs more than sending."""
    global _FLEET
    _FLEET = fleet
    with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
        return [d for chunk in pool.map(_encode_round, range(1, rounds + 1)) for d in chunk]


def expected(fleet: Sequence[Amp], sent: int) -> tuple[int, set[str]]:
    """After the first ``sent`` datagrams: the total connections the statistics must
    add up to, and the load balancers whose last heartbeat reported a member DOWN."""
    n = len(fleet)
    total = sum(content(k % n, k // n + 1)[0]["totconns"] for k in range(sent))
    last_seq = {i: (sent - 1 - i) // n + 1 for i in range(min(n, sent))}
    degraded = {fleet[i].lb for i, seq in last_seq.items() if content(i, seq)[1]}
    return total, degraded


# --- the sender -----------------------------------------------------------------------


def _send_loop(conn: multiprocessing.connection.Connection, items: list[bytes],
               port: int, cpu: int | None) -> None:
    """Send ``items`` in order at the rate last asked (commands on ``conn``: ("rate", r),
    ("count", None), ("stop", None)); due datagrams go out every half millisecond."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent, rate, base_sent, base_t = 0, 0.0, 0, time.monotonic()
    while True:
        while conn.poll():
            command, value = conn.recv()
            if command == "rate":
                rate, base_sent, base_t = float(value), sent, time.monotonic()
            elif command == "count":
                conn.send(sent)
            else:
                conn.send(sent)
                return
        due = min(len(items), base_sent + int(rate * (time.monotonic() - base_t)))
        while sent < due:
            sock.sendto(items[sent], ("127.0.0.1", port))
            sent += 1
        time.sleep(0.0005)


class Sender:
    def __init__(self, items: list[bytes], port: int, cpu: int | None) -> None:
        self.available = len(items)
        self.conn, child = multiprocessing.get_context("fork").Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_send_loop, args=(child, items, port, cpu), daemon=True)
        self.process.start()
        self._sent = -1

    def rate(self, per_second: float) -> None:
        self.conn.send(("rate", per_second))

    def count(self) -> int:
        self.conn.send(("count", None))
        return int(self.conn.recv())

    def stop(self) -> int:
        """Stop sending; how many were sent (-1: the sender is gone). Again: no-op."""
        if not self.process.is_alive():
            return self._sent
        try:
            self.conn.send(("stop", None))
            self._sent = int(self.conn.recv()) if self.conn.poll(10) else -1
            return self._sent
        finally:
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()


# --- the health manager ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Line:
    """One counter line of the health manager's log."""

    at: dt.datetime
    counts: dict[str, int]
    seconds: float  # the interval the batch figures cover
    batches: int
    write_mean_ms: float
    write_max_ms: float
    wait_max_ms: float


def parse_line(text: str) -> Line | None:
    found = COUNTER_LINE.match(text)
    batch = BATCH_PART.search(text)
    if found is None or batch is None:
        return None
    counts = {k: int(v) for k, v in re.findall(r"([\w-]+)=(\d+)", found.group(2))}
    seconds, batches, mean, top, wait = batch.groups()
    return Line(dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f"), counts,
                float(seconds), int(batches), float(mean), float(top), float(wait))


class HealthProcess:
    """`amphorae health` pinned to a CPU; its log read line by line as it grows."""

    def __init__(self, config: Path, log: Path, cpu: int | None, port: int) -> None:
        self.log = log
        self.port = port
        self._offset = 0
        pinning = ["taskset", "-c", str(cpu)] if cpu is not None else []
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*pinning, str(servers.VENV_BIN / "amphorae"), "health", "--config-file",
                 str(config)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_listening(self) -> None:
        self._wait(lambda: "receiving heartbeats" in self.log.read_text(), "listening", 60)

    def _wait(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.process.poll() is not None:
                raise RuntimeError(f"amphorae health exited:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"amphorae health: {what} not within {timeout} s:\n"
                                   f"{self.tail()}")
            time.sleep(0.02)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def lines(self) -> list[Line]:
        """Counter lines logged since the last call."""
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        self._offset += len(complete)
        parsed = (parse_line(t) for t in complete.decode(errors="replace").splitlines())
        return [line for line in parsed if line is not None]

    def next_line(self, timeout: float, until: Callable[[Line], bool] = lambda _: True
                  ) -> Line:
        """The first new counter line for which ``until`` holds."""
        found: list[Line] = []
        self._wait(lambda: any(until(x) for x in self._collect(found)), "a counter line",
                   timeout)
        return next(x for x in found if until(x))

    def _collect(self, into: list[Line]) -> list[Line]:
        into += self.lines()
        return into

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run_queue_seconds(self) -> float:
        """Time its threads were ready to run but waited for the CPU (other processes
        had it): /proc/<pid>/task/*/schedstat, second field, nanoseconds."""
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError):
                total += int((task / "schedstat").read_text().split()[1])
        return total / 1e9

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for the receiver's socket (buffer full)."""
        local = f"0100007F:{self.port:04X}"
        for row in Path("/proc/net/udp").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[1] == local:
                return int(cols[-1])
        return 0

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


# --- the throughput run ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mark:
    """What the bench saw when a counter line appeared."""

    line: Line
    when: float  # time.monotonic()
    cpu: float
    waited: float  # HealthProcess.run_queue_seconds
    sent: int
    kernel_drops: int


@dataclasses.dataclass(frozen=True)
class Step:
    rate: int
    start: Mark
    end: Mark

    def delta(self, name: str) -> int:
        return self.end.line.counts.get(name, 0) - self.start.line.counts.get(name, 0)

    @property
    def seconds(self) -> float:
        return self.end.line.seconds

    @property
    def offered(self) -> float:
        return (self.end.sent - self.start.sent) / (self.end.when - self.start.when)

    @property
    def written(self) -> float:
        return self.delta("written") / self.seconds

    @property
    def dropped(self) -> int:
        return (sum(self.delta(reason) for reason in DROPS)
                + self.end.kernel_drops - self.start.kernel_drops)

    @property
    def cpu_share(self) -> float:
        return (self.end.cpu - self.start.cpu) / (self.end.when - self.start.when)

    @property
    def saturated(self) -> bool:
        """It did not keep up in this interval: wrote less than 97% of what was offered
        and more waits for the writer at the end than at the start."""
        grew = self.end.line.counts["queued"] - self.start.line.counts["queued"]
        return self.written < 0.97 * self.offered and grew > 0

    @property
    def wait_share(self) -> float:
        return (self.end.waited - self.start.waited) / (self.end.when - self.start.when)

    @property
    def cpu_us(self) -> float:
        """CPU microseconds of the health manager per heartbeat written."""
        return (self.end.cpu - self.start.cpu) * 1e6 / max(self.delta("written"), 1)


@dataclasses.dataclass
class Throughput:
    backend: str
    amphorae: int
    steps: list[Step]
    final: Line
    sent: int
    checks: list[tuple[str, bool]]
    seed_seconds: float
    encode_seconds: float
    pinned: bool


def write_config(state: Path, url: str, port: int) -> Path:
    path = state / "amphorae.conf"
    path.write_text(f"""[DEFAULT]
state_path = {state}
debug = true

[database]
connection = {url}

[health_manager]
bind_ip = 127.0.0.1
bind_port = {port}
heartbeat_key = {KEY}
heartbeat_interval = 1
heartbeat_timeout = 3600

[controller_worker]
compute_driver = compute_noop_driver
""")
    return path


def measure_throughput(backend: str, count: int, rates: list[int]) -> Throughput:
    pinned = len(os.sched_getaffinity(0)) >= 2
    state = Path(tempfile.mkdtemp(prefix="amph-bench-health-"))
    try:
        with servers.database(backend, state, "bench_health") as url:
            try:
                return _measure(backend, url, state, count, rates, pinned)
            finally:
                engine.get_engine(url).dispose()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _measure(backend: str, url: str, state: Path, count: int, rates: list[int],
             pinned: bool) -> Throughput:
    port = servers.free_port()
    config = write_config(state, url, port)
    servers.run_cli("db", "upgrade", config_file=config)
    fleet = make_fleet(count)
    started = time.perf_counter()
    seed(url, fleet)
    seeded = time.perf_counter() - started
    # The warm-up round and every step, with room for late counter lines.
    needed = count + sum(rates) * (service.STATS_INTERVAL + 6)
    started = time.perf_counter()
    items = datagrams(fleet, -(-int(needed) // count))
    encoded = time.perf_counter() - started
    with contextlib.ExitStack() as stack:
        hm = HealthProcess(config, state / "health.log", HM_CPU if pinned else None, port)
        stack.callback(hm.stop)
        hm.wait_listening()
        sender = Sender(items, port, SENDER_CPU if pinned else None)
        stack.callback(sender.stop)
        with on_cpu(SENDER_CPU if pinned else None):  # off the health manager's CPU
            steps, final = run_steps(hm, sender, count, rates)
        kernel_drops = hm.kernel_drops()
        sent = sender.stop()
    final = ([final, *hm.lines()])[-1]  # the line logged on stop, if any
    checks = check_database(url, fleet, sent, final, kernel_drops)
    return Throughput(backend, count, steps, final, sent, checks, seeded, encoded, pinned)


@contextlib.contextmanager
def on_cpu(cpu: int | None) -> Iterator[None]:
    """This process on ``cpu`` for the block (None: as it is)."""
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_steps(hm: HealthProcess, sender: Sender, count: int,
              rates: list[int]) -> tuple[list[Step], Line]:
    def mark(line: Line) -> Mark:
        return Mark(line, time.monotonic(), hm.cpu_seconds(), hm.run_queue_seconds(),
                    sender.count(), hm.kernel_drops())

    wait = service.STATS_INTERVAL + 15
    # Warm-up: one heartbeat of every amphora, whose first inserts its rows; the steps
    # start at the first counter line that shows them all written.
    sender.rate(WARMUP_RATE)
    while sender.count() < count:
        time.sleep(0.01)
    sender.rate(0)
    previous = mark(hm.next_line(count / WARMUP_RATE + 2 * wait,
                                 lambda x: x.counts["written"] >= count))
    steps = []
    for rate in rates:
        sender.rate(rate)
        current = mark(hm.next_line(wait))
        steps.append(Step(rate, previous, current))
        previous = current
    sender.rate(0)
    sent = sender.count()

    def drained(x: Line) -> bool:
        return x.counts["queued"] == 0 and x.counts["received"] >= sent - hm.kernel_drops()

    final = previous.line if drained(previous.line) else hm.next_line(600, drained)
    return steps, final


def check_database(url: str, fleet: Sequence[Amp], sent: int, final: Line,
                   kernel_drops: int) -> list[tuple[str, bool]]:
    """The accounts add up, and the database holds what ``sent`` heartbeats say."""
    total, degraded = expected(fleet, sent)
    with engine.transaction(write=False, url=url) as session:
        connections = session.scalar(select(func.sum(m.ListenerStatistics.total_connections)))
        health_rows = session.scalar(select(func.count()).select_from(m.AmphoraHealth))
        shown = set(session.scalars(select(m.LoadBalancer.id).where(
            m.LoadBalancer.operating_status == "DEGRADED")))
    counts = final.counts
    dropped = sum(counts.get(reason, 0) for reason in DROPS) + kernel_drops
    checks = [(f"every datagram sent was received or dropped by the kernel "
               f"({counts['received']} + {kernel_drops} of {sent})",
               counts["received"] + kernel_drops == sent),
              (f"every heartbeat accepted was written ({counts['written']} of "
               f"{counts['accepted']})", counts["written"] == counts["accepted"]),
              (f"a health row per amphora ({health_rows} of {len(fleet)})",
               health_rows == len(fleet))]
    if not dropped:  # then the database must hold exactly what was sent
        checks += [(f"statistics add up: total connections {connections} == {total} sent",
                    connections == total),
                    (f"load balancers DEGRADED are those whose last heartbeat reported a "
                     f"member DOWN ({len(shown)} == {len(degraded)})", shown == degraded)]
    return checks


def report_throughput(t: Throughput) -> bool:
    where = (f"health manager on CPU {HM_CPU}, sender on CPU {SENDER_CPU}" if t.pinned
             else "nothing pinned (one CPU)")
    print(f"\nheartbeats through one `amphorae health` process, {t.backend}, a fleet of "
          f"{t.amphorae} amphorae (LB, listener, pool, 2 members each); {where}; seeded in "
          f"{t.seed_seconds:.1f} s, {t.sent} heartbeats encoded in {t.encode_seconds:.0f} s\n")
    print(f"{'offered/s':>9} {'written/s':>9} {'dropped':>7} {'withheld':>8} {'waiting':>7} "
          f"{'batches':>7} {'write ms':>13} {'to commit':>9} {'CPU':>5} {'CPU':>6} "
          f"{'us/hb':>6}")
    print(f"{'':>55} {'mean':>6} {'max':>6} {'max ms':>9} {'used':>5} {'waited':>6}")
    for s in t.steps:
        line = s.end.line
        print(f"{s.offered:9.0f} {s.written:9.0f} {s.dropped:7d} {s.delta('withheld'):8d} "
              f"{line.counts['queued']:7d} {line.batches:7d} {line.write_mean_ms:6.1f} "
              f"{line.write_max_ms:6.1f} {line.wait_max_ms:9.0f} {s.cpu_share:5.2f} "
              f"{s.wait_share:6.2f} {s.cpu_us:6.0f}{'  saturated' if s.saturated else ''}")
    top = max(t.steps, key=lambda s: s.written)
    capacity = 1e6 / top.cpu_us
    reasons = {k: v for k, v in t.final.counts.items()
               if k in (*DROPS, "write_failed") and v}
    state = ("saturated: offered more, the backlog grew: all it could do here"
             if top.saturated else "it kept up: it was not offered more")
    print(f"\nheartbeats processed per second with the database writes, on one core: "
          f"{top.written:.0f}/s ({state}; offered {top.offered:.0f}/s; on {top.cpu_share:.0%}"
          f" of its CPU, its threads runnable but waiting for it {top.wait_share:.2f} s per "
          f"second)   "
          f"target >= {TARGET_RATE}/s: {verdict(top.written >= TARGET_RATE)}")
    print(f"capacity by CPU time, in that interval: {capacity:.0f} heartbeats per CPU-second "
          f"of the health manager (receive, verify, decode, write): what it does on a core "
          f"of its own")
    print(f"receiver drops by reason over the run: {reasons or 'none'}; by the kernel "
          f"(socket buffer full): {sum(s.dropped for s in t.steps) - sum(reasons.values())}"
          f" in the steps")
    for what, ok in t.checks:
        print(f"database check: {what}: {'ok' if ok else 'FAILED'}")
    return all(ok for _, ok in t.checks)


# --- failover timings -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Failover:
    topology: str
    gap: float
    detected: float  # kill to the health manager's failover decision
    restored: float  # kill to ACTIVE with the dead amphora replaced
    failed: int
    requests: int


def detection_time(log: Path, lb_id: str, killed_at: float) -> float:
    """Seconds from the kill (wall clock) to the health manager's failover line."""
    pattern = re.compile(rf"^(\S+ \S+) .*amphora \S+ of load balancer (?:\S+ \()?{lb_id}\)? "
                         r"is failed over: it(s compute instance| sent no heartbeat)")
    for text in log.read_text(errors="replace").splitlines():
        found = pattern.match(text)
        if found:
            at = dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
            return at.timestamp() - killed_at
    return float("nan")


def measure_failovers(repeats: int) -> list[Failover]:
    from tests.deployment import deployment
    from tests.integration import test_failover as scenario

    marker = secrets.token_hex(3)
    out: list[Failover] = []
    with deployment(marker, VIP_CIDR, MEMBER_CIDR, management_cidr=MGMT_CIDR) as d:
        d.members.add("m1", 21)
        d.members.add("m2", 22)
        up = d.start("up")
        with pair_flavor(d, marker) as flavor_id:
            for topology, flavor in (("SINGLE", None), ("ACTIVE_STANDBY", flavor_id)):
                for _ in range(repeats):
                    lb = scenario.serving_lb(d, flavor)
                    try:
                        killed: list[float] = []

                        def kill(namespace: str, stamps: list[float] = killed) -> None:
                            stamps.append(time.time())
                            netns.crash_namespace(namespace)

                        got = scenario._fail(d, lb, kill)
                        out.append(Failover(topology, got["gap"],
                                            detection_time(up.log, lb.id, killed[0]),
                                            got["restored"], got["failed"], got["requests"]))
                    finally:
                        d.lb.delete_load_balancer(lb.id, cascade=True)
                        d.wait_gone(lb.id)
    return out


@contextlib.contextmanager
def pair_flavor(d: Any, marker: str) -> Iterator[str]:
    profile = d.lb.create_flavor_profile(
        name=f"pair-{marker}", provider_name="amphora",
        flavor_data=json.dumps({"loadbalancer_topology": "ACTIVE_STANDBY"}))
    flavor = d.lb.create_flavor(name=f"pair-{marker}", flavor_profile_id=profile.id,
                                is_enabled=True)
    try:
        yield flavor.id
    finally:
        d.lb.delete_flavor(flavor.id)
        d.lb.delete_flavor_profile(profile.id)


def report_failovers(runs: list[Failover]) -> bool:
    print(f"\nfailover after SIGKILL of every process of an amphora, under traffic; "
          f"`amphorae up`, heartbeats every 1 s, heartbeat_timeout {FAILOVER_TIMEOUT} s "
          f"(Octavia's default {OCTAVIA_TIMEOUT} s: a minute before it even notices); the "
          f"timeout runs from the last heartbeat, sent up to 1 s before the kill; times "
          f"from the kill\n")
    ok = True
    for topology in ("SINGLE", "ACTIVE_STANDBY"):
        mine = [r for r in runs if r.topology == topology]
        if not mine:
            continue
        for r in mine:
            print(f"  {topology}: traffic gap {r.gap:.2f} s, failover started after "
                  f"{r.detected:.2f} s, "
                  f"{'redundancy restored' if topology != 'SINGLE' else 'ACTIVE again'} "
                  f"after {r.restored:.2f} s ({r.failed}/{r.requests} requests failed)")
        gap = statistics.median(r.gap for r in mine)
        noticed = statistics.median(r.detected for r in mine)
        restored = statistics.median(r.restored for r in mine)
        met = restored < TARGET_RESTORED
        ok = ok and met
        label = "traffic gap (VRRP)" if topology != "SINGLE" else "traffic gap"
        print(f"{topology}, median of {len(mine)}: {label} {gap:.2f} s; failover started "
              f"after {noticed:.2f} s (Octavia: {OCTAVIA_TIMEOUT} s + up to its check "
              f"interval); "
              f"{'redundancy restored' if topology != 'SINGLE' else 'ACTIVE again'} after "
              f"{restored:.2f} s   target < heartbeat_timeout + 5 = {TARGET_RESTORED} s: "
              f"{verdict(met)}")
    return ok


# --- the run ----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--amphorae", type=int, default=10_000)
    parser.add_argument("--rates", default="2000,5000,10000",
                        help="offered heartbeats/s, one counter interval each")
    parser.add_argument("--repeats", type=int, default=3, help="failovers per topology")
    parser.add_argument("--part", default="all", choices=["all", "throughput", "failover"])
    args = parser.parse_args()
    if args.part != "throughput" and os.geteuid() != 0:
        print("bench.health's failover part needs root (network namespaces); "
              "--part throughput runs without", file=sys.stderr)
        return 1
    started = time.perf_counter()
    ok = True
    if args.part in ("all", "throughput"):
        rates = [int(r) for r in args.rates.split(",")]
        ok = report_throughput(measure_throughput(args.backend, args.amphorae, rates))
    if args.part in ("all", "failover"):
        ok = report_failovers(measure_failovers(args.repeats)) and ok
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
