"""Data plane figures of netns amphorae on this host, next to their targets (root).

    .venv/bin/python -m bench.dataplane [--boots 10] [--seconds 4] [--rounds 3] [--reloads 20]
                                        [--member-rounds 5]

- amphora create time: namespace to agent answering /info (AmphoraBooter.create),
  median and max over ``--boots`` boots (each deleted again);
- memory of one amphora of an ACTIVE_STANDBY pair with its load balancer and keepalived
  running: RSS and PSS of every process in its namespace (agent, HAProxy, keepalived;
  bench/memory.py tells them apart, and prints a SINGLE's too);
- requests/s with wrk straight to one member against through the VIP to that same member
  (the pool's other member set to maint over the stats socket), with the same wrk
  connections, in two CPU layouts (below); the member is a single-threaded HAProxy
  answering a static 200. For each run: the CPU time per request of wrk, the member and
  the load balancer (/proc/<pid>/stat, wrk's rusage), and what the rest of the host
  used meanwhile (/proc/stat busy time minus ours: other tests, agents, keepalived);
- failed requests while the load balancer is reloaded ``--reloads`` times under wrk, with
  keep-alive connections and with a connection per request;
- the clients' outage when every process of the MASTER is killed (VRRP failover), with
  Octavia's advert interval of 1 s and with ours ([keepalived_vrrp] vrrp_advert_int);
- time from a member change API call to the member serving / leaving, through HAProxy's
  runtime API and through a reload (bench/member_changes.py, its own deployment on
  198.18.174.0/24 + 198.18.175.0/24; ``--member-rounds 0`` skips it).

Issue 14's figures (boot, memory, the VRRP gap with our default adverts) are printed next
to their targets and their values before the issue (bench/targets.py), and again
together at the end.

CPU layouts of the throughput runs. ``shared``: nothing pinned, as on a host running
amphorae; wrk, the load balancer and the member compete for every CPU, so when both runs
are CPU-bound the ratio is about the inverse of the CPU per request (straight: a client
and a server; through the VIP: the same plus a proxy terminating two TCP connections and
parsing request and answer). ``dedicated`` (needs 2 CPUs): the load balancer pinned to
CPU 1, wrk and the member to CPU 0 in both runs, as an amphora with a CPU of its own (the
rest of the host is not pinned: what it runs meanwhile is printed); the load balancer is
reloaded once pinned, so HAProxy sizes its threads (one per CPU it may use) to it. A
request through the VIP then crosses between the CPUs four times (straight: never), each
time maybe waking an idle CPU, so these runs need not be CPU-bound: the "CPUs busy" line
tells. The kernel runs a packet's receive path on the CPU of the process that sent it,
so part of each side's network cost lands on the other's CPU in both layouts.

Topology: tests/vrrp_pair.py, on 198.18.246.0/24 - 198.18.249.0/24 only. Everything made
is removed when the run ends, also when it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests import vrrp_pair as pairs

from amphorae.agent.haproxy import serving_pid, unix_command
from amphorae.common import config
from amphorae.drivers.compute import amphora_boot as boot
from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import ownership
from amphorae.drivers.network import plumbing as plumbing_mod
from bench import member_changes, memory, targets

PAIR_NET = pairs.Subnets("198.18.246.0/24", "198.18.247.0/24", "198.18.248.0/24")
BOOT_CIDR = "198.18.249.0/24"  # management subnet of the create-time boots
WRK = ["wrk", "-t2", "-c50"]
LB_CPU, CLIENT_CPU = 1, 0  # the dedicated layout

TARGET_RATIO = 0.8  # VIP requests/s over direct requests/s
TARGET_RELOAD_FAILURES = 0
DEFAULT_ADVERT = config.CONF.keepalived_vrrp.vrrp_advert_int  # s, ours by default
OCTAVIA_ADVERT = 1.0  # s, Octavia's default


@dataclasses.dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    errors: int  # socket errors (connect, read, write, timeout) and non-2xx/3xx answers
    detail: str


def parse_wrk(out: str) -> WrkResult:
    requests = int(_find(r"(\d+) requests in", out))
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0) + (
        int(non_2xx.group(1)) if non_2xx else 0)
    detail = "; ".join(m.group(0) for m in (socket_errors, non_2xx) if m)
    return WrkResult(requests, rps, errors, detail)


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in wrk's output:\n{text}")
    return match.group(1)


def wrk(url: str, seconds: int, cpus: frozenset[int] | None = None,
        command: Sequence[str] = WRK) -> WrkResult:
    """``command`` (wrk and its options) on ``url`` for ``seconds``, pinned to ``cpus``
    if given."""
    pinning = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    out = subprocess.run([*pinning, *command, f"-d{seconds}s", url], capture_output=True,
                         text=True, check=True, timeout=seconds + 30).stdout
    return parse_wrk(out)


@contextlib.contextmanager
def wrk_running(url: str, *extra: str, limit: int = 120) -> Iterator[list[WrkResult]]:
    """wrk in the background for the block; its result is appended to the yielded list
    once the block ends (SIGINT makes wrk stop and report)."""
    proc = subprocess.Popen([*WRK, f"-d{limit}s", *extra, url], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    results: list[WrkResult] = []
    try:
        time.sleep(0.5)  # connections established before anything happens
        yield results
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    results.append(parse_wrk(out))


# --- the figures ------------------------------------------------------------------


def boot_times(count: int) -> list[float]:
    """Seconds from create() to the agent answering, over ``count`` boots."""
    run = secrets.token_hex(3)
    state = Path(tempfile.mkdtemp(prefix=f"amph-{run}-"))
    bridge = f"amph-{run}b"
    driver = compute.NetnsComputeDriver(state_dir=str(state / "amp"), management_bridge=bridge,
                                        management_cidr=BOOT_CIDR,
                                        deployment=ownership.deployment_id(state))
    times: list[float] = []
    try:
        booter = boot.AmphoraBooter(driver, state / "ca", ready_timeout=20, cert_validity=3600)
        for _ in range(count):
            amp_id = run[:4] + str(uuid.uuid4())[4:]
            try:
                times.append(booter.create(amp_id).boot_seconds)
            finally:
                booter.delete(amp_id)
    finally:
        for amp in driver.list_amphorae():
            if amp.short_id.startswith(run[:4]):
                driver.delete(amp.short_id)
        plumbing_mod.Plumbing().delete_bridge(bridge)
        shutil.rmtree(state, ignore_errors=True)
    return times


def rss_kib(pid: int) -> tuple[str, int]:
    """(command name, VmRSS in KiB) of a process; (name, 0) for a kernel thread."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rss = fields.get("VmRSS", "0 kB").split()[0]
    return fields["Name"].strip(), int(rss)


@dataclasses.dataclass(frozen=True)
class Throughput:
    rps: float
    cpu_us: dict[str, float]  # CPU microseconds per request, per part
    others: float  # CPUs the rest of the host kept busy on average during the run

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_us.values())

    @property
    def busy(self) -> float:
        """CPUs the measured parts kept busy on average."""
        return self.cpu_total * self.rps / 1e6

    def cpu_text(self) -> str:
        parts = ", ".join(f"{name} {us:.1f}" for name, us in self.cpu_us.items() if us)
        return f"{self.cpu_total:.1f} us ({parts})"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where wrk, the member and the load balancer may run during a throughput run."""

    name: str
    lb_cpus: frozenset[int] | None  # None: not pinned
    client_cpus: frozenset[int] | None  # wrk and the member


SHARED = Layout("shared CPUs, nothing pinned", None, None)
DEDICATED = Layout(f"LB pinned to CPU {LB_CPU}, wrk and the member to CPU {CLIENT_CPU}",
                   frozenset({LB_CPU}), frozenset({CLIENT_CPU}))


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of the processes (all their threads)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def host_busy_seconds() -> float:
    """CPU time the whole host spent working (all CPUs, /proc/stat): user, nice,
    system, irq and softirq; not idle, iowait or time stolen by the hypervisor."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def measured_wrk(url: str, seconds: int, parts: dict[str, list[int]],
                 cpus: frozenset[int] | None = None) -> Throughput:
    """wrk on ``url`` (pinned to ``cpus`` if given); requests/s, the CPU each part (and
    wrk) spent per request, and the CPU the rest of the host used meanwhile."""
    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = {name: cpu_seconds(pids) for name, pids in parts.items()}
    wrk_before, host_before, started = children(), host_busy_seconds(), time.monotonic()
    result = wrk(url, seconds, cpus)
    host, elapsed = host_busy_seconds() - host_before, time.monotonic() - started
    if result.errors:
        raise RuntimeError(f"wrk on {url} saw errors: {result.detail}")
    spent = {name: cpu_seconds(pids) - before[name] for name, pids in parts.items()}
    spent["wrk"] = children() - wrk_before
    return Throughput(result.rps, {name: sec * 1e6 / result.requests
                                   for name, sec in spent.items()},
                      max(0.0, host - sum(spent.values())) / elapsed)


def lb_pids(pair: pairs.Pair) -> list[int]:
    """The MASTER's HAProxy processes (the current one, any still finishing after a
    reload)."""
    return [pid for pid in pair.pids(pair.master) if _comm(pid) == "haproxy"]


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # ended meanwhile, e.g. keepalived's check script
        return None


def lb_threads(pair: pairs.Pair) -> int:
    """Threads of the current HAProxy (the one answering on its stats socket)."""
    pid = serving_pid(Path(pair.stats_socket(pair.master)))
    return len(os.listdir(f"/proc/{pid}/task"))


def pin(pids: list[int], cpus: set[int] | frozenset[int]) -> None:
    """Every thread of the processes on ``cpus``."""
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):  # ended meanwhile
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(tid), cpus)


@contextlib.contextmanager
def placed(pair: pairs.Pair, layout: Layout) -> Iterator[None]:
    """The load balancer and the first member pinned as ``layout`` says, the load
    balancer reloaded so that its worker has one thread per CPU it may use; all CPUs and
    a reload again afterwards."""
    member = pair.plumbing.netns_pids(pair.members[0].ns)
    if layout.lb_cpus is None or layout.client_cpus is None:
        yield
        return
    try:
        pin(lb_pids(pair), layout.lb_cpus)
        pin(member, layout.client_cpus)
        pair.master.client.reload(pair.lb_id)
        yield
    finally:
        every = os.sched_getaffinity(0)
        pin(lb_pids(pair), every)
        pin(member, every)
        pair.master.client.reload(pair.lb_id)


@contextlib.contextmanager
def first_member_only(pair: pairs.Pair) -> Iterator[None]:
    """Every server of the VIP's pool but the first member in maint (runtime API), so
    that through the VIP and straight reach the same member."""
    sock = Path(pair.stats_socket(pair.master))
    others = {m.address for m in pair.members[1:]}
    # show servers state: "<be_id> <be_name> <srv_id> <srv_name> <srv_addr> ..."
    rows = [line.split() for line in unix_command(sock, "show servers state").splitlines()]
    servers = [f"{row[1]}/{row[3]}" for row in rows if len(row) > 4 and row[4] in others]
    if len(servers) != len(others):
        raise RuntimeError(f"servers of {sorted(others)} not found in the LB's state")
    try:
        for server in servers:
            unix_command(sock, f"set server {server} state maint")
        answers = {pair.get() for _ in range(2 * len(pair.members))}
        if answers != {pair.members[0].name}:
            raise RuntimeError(f"the VIP still reaches {sorted(answers)}")
        yield
    finally:
        for server in servers:
            unix_command(sock, f"set server {server} state ready")


@dataclasses.dataclass(frozen=True)
class Comparison:
    layout: Layout
    lb_threads: int
    direct: Throughput
    via_vip: Throughput

    @property
    def ratio(self) -> float:
        return self.via_vip.rps / self.direct.rps

    @property
    def cpu_ratio(self) -> float:
        """Requests per CPU-second through the VIP over straight."""
        return self.direct.cpu_total / self.via_vip.cpu_total


def throughput(pair: pairs.Pair, layout: Layout, seconds: int, rounds: int) -> Comparison:
    """Straight to the first member against through the VIP to it alone: the best of
    ``rounds`` alternating runs each, so that a burst of other work on the host hits
    both alike."""
    member = pair.members[0]
    first = pair.plumbing.netns_pids(member.ns)
    direct: list[Throughput] = []
    via_vip: list[Throughput] = []
    with placed(pair, layout), first_member_only(pair):
        threads = lb_threads(pair)
        for _ in range(rounds):
            direct.append(measured_wrk(f"http://{member.address}:{pairs.MEMBER_PORT}/",
                                       seconds, {"member": first}, layout.client_cpus))
            via_vip.append(measured_wrk(f"http://{pair.vip}:{pairs.VIP_PORT}/", seconds,
                                        {"load balancer": lb_pids(pair), "member": first},
                                        layout.client_cpus))
    return Comparison(layout, threads, max(direct, key=lambda t: t.rps),
                      max(via_vip, key=lambda t: t.rps))


def report_throughput(c: Comparison) -> None:
    print(f"  {c.layout.name} (LB worker {c.lb_threads} thread"
          f"{'s' if c.lb_threads > 1 else ''}): straight {c.direct.rps:.0f}, through the "
          f"VIP {c.via_vip.rps:.0f}, ratio {c.ratio:.2f}   target >= {TARGET_RATIO}: "
          f"{verdict(c.ratio >= TARGET_RATIO)}")
    print(f"    CPU per request: straight {c.direct.cpu_text()}; through the VIP "
          f"{c.via_vip.cpu_text()}; requests per CPU-second through the VIP / straight "
          f"{c.cpu_ratio:.2f}")
    print(f"    CPUs busy, these parts + the rest of the host, of {os.cpu_count()}: straight "
          f"{c.direct.busy:.2f} + {c.direct.others:.2f}, through the VIP "
          f"{c.via_vip.busy:.2f} + {c.via_vip.others:.2f}")


def reload_under_load(pair: pairs.Pair, reloads: int, *wrk_args: str) -> tuple[WrkResult, float]:
    """wrk on the VIP while the agent reloads HAProxy ``reloads`` times; (wrk's result,
    mean seconds per reload call)."""
    client = pair.master.client
    calls: list[float] = []
    with wrk_running(f"http://{pair.vip}:{pairs.VIP_PORT}/", *wrk_args) as result:
        for _ in range(reloads):
            started = time.perf_counter()
            client.reload(pair.lb_id)  # returns once the new worker runs
            calls.append(time.perf_counter() - started)
            time.sleep(0.2)  # the new worker takes connections before the next reload
        time.sleep(0.5)
    return result[0], statistics.mean(calls)


# --- the run ----------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=4,
                        help="per wrk throughput run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating straight/VIP throughput runs per CPU layout")
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--member-rounds", type=int, default=5,
                        help="member adds and deletes per pool (0: skip)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.dataplane needs root (network namespaces)", file=sys.stderr)
        return 1
    started = time.perf_counter()

    print(f"\namphorae data plane, netns amphorae, {os.cpu_count()} CPUs, "
          f"wrk {' '.join(WRK[1:])}\n")
    times = boot_times(args.boots)
    print(targets.line("boot", statistics.median(times),
                       f"{len(times)} boots, max {max(times):.3f} s"))

    with pairs.vrrp_pair(PAIR_NET, advert_int=OCTAVIA_ADVERT) as pair:
        by_role = memory.amphora_usage(pair.master.ns)
        total = sum(by_role.values(), memory.Usage())
        parts = ", ".join(f"{name} {u.rss / 1024:.1f}/{u.pss / 1024:.1f}"
                          for name, u in sorted(by_role.items()))
        print(targets.line("rss", total.rss / 1024,
                           f"the MASTER of a pair, LB and keepalived running; PSS "
                           f"{total.pss / 1024:.1f} MiB; RSS/PSS: {parts}"))

        layouts = [SHARED] + ([DEDICATED] if {LB_CPU, CLIENT_CPU} <= os.sched_getaffinity(0)
                              else [])
        print(f"requests/s straight to member {pair.members[0].name} and through the VIP "
              f"to it alone (the other member in maint), same wrk; best of {args.rounds} "
              f"alternating {args.seconds} s runs:")
        for layout in layouts:
            report_throughput(throughput(pair, layout, args.seconds, args.rounds))

        for clients, wrk_args in (("keep-alive", ()),
                                  ("a connection per request", ("-H", "Connection: close"))):
            loaded, per_reload = reload_under_load(pair, args.reloads, *wrk_args)
            detail = f" ({loaded.detail})" if loaded.detail else ""
            print(f"{args.reloads} reloads under wrk load, {clients}: {loaded.errors} failed "
                  f"of {loaded.requests} requests{detail}, {per_reload:.2f} s per reload "
                  f"call   target {TARGET_RELOAD_FAILURES}: "
                  f"{verdict(loaded.errors <= TARGET_RELOAD_FAILURES)}")

        report_failover(pair, pairs.fail_over(pair))
    with pairs.vrrp_pair(PAIR_NET, advert_int=DEFAULT_ADVERT) as pair:
        report_failover(pair, pairs.fail_over(pair))
    if args.member_rounds:
        member_changes.report(member_changes.measure(args.member_rounds), args.member_rounds)
    print(f"\n{targets.summary()}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


def report_failover(pair: pairs.Pair, result: pairs.Failover) -> None:
    detail = (f"advert {pair.advert_int:g} s; VIP moved after {result.takeover:.2f} s, "
              f"VRRP's bound {pair.takeover_bound():.2f} s; {result.failed}/"
              f"{result.requests} GETs failed")
    if pair.advert_int == DEFAULT_ADVERT:
        print(targets.line("vrrp_gap", result.gap, detail))
    else:  # Octavia's default, for comparison: not our target
        print(f"VRRP failover traffic gap, Octavia's default adverts: {result.gap:.2f} s "
              f"({detail})")


if __name__ == "__main__":
    sys.exit(main())
