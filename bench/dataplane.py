"""Data plane figures of netns amphorae on this host, next to their targets (root).

    .venv/bin/python -m bench.dataplane [--boots 10] [--seconds 5] [--reloads 20]

- amphora create time: namespace to agent answering /info (AmphoraBooter.create),
  median and max over ``--boots`` boots (each deleted again);
- memory of one amphora of an ACTIVE_STANDBY pair with its load balancer and keepalived
  running: RSS of every process in its namespace (agent, HAProxy, keepalived);
- requests/s with wrk through the VIP, balanced over two members, against straight to
  one member; each member is a single-threaded HAProxy answering a static 200, so the
  VIP's side is not limited by its members;
- failed requests while the load balancer is reloaded ``--reloads`` times under wrk;
- the clients' outage when every process of the MASTER is killed (VRRP failover), with
  Octavia's advert interval of 1 s and with 0.2 s.

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
from collections.abc import Iterator
from pathlib import Path

from tests import vrrp_pair as pairs

from amphorae.drivers.compute import amphora_boot as boot
from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import plumbing as plumbing_mod

PAIR_NET = pairs.Subnets("198.18.246.0/24", "198.18.247.0/24", "198.18.248.0/24")
BOOT_CIDR = "198.18.249.0/24"  # management subnet of the create-time boots
WRK = ["wrk", "-t2", "-c50"]

TARGET_BOOT = 0.5  # s, median create time
TARGET_RATIO = 0.8  # VIP requests/s over direct requests/s
TARGET_RELOAD_FAILURES = 0
TARGET_GAP = 3.0  # s of outage on a failover


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


def wrk(url: str, seconds: int) -> WrkResult:
    out = subprocess.run([*WRK, f"-d{seconds}s", url], capture_output=True, text=True,
                         check=True, timeout=seconds + 30).stdout
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
                                        management_cidr=BOOT_CIDR)
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


def amphora_memory(pair: pairs.Pair) -> dict[str, int]:
    """KiB of RSS per command name over every process in the MASTER's namespace."""
    per_name: dict[str, int] = {}
    for pid in pair.pids(pair.master):
        with contextlib.suppress(OSError):  # a check script that just ended
            name, kib = rss_kib(pid)
            per_name[name] = per_name.get(name, 0) + kib
    return per_name


@dataclasses.dataclass(frozen=True)
class Throughput:
    rps: float
    cpu_us: dict[str, float]  # CPU microseconds per request, per part

    def cpu_text(self) -> str:
        parts = ", ".join(f"{name} {us:.1f}" for name, us in self.cpu_us.items() if us)
        return f"{sum(self.cpu_us.values()):.1f} us ({parts})"


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of the processes (all their threads)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measured_wrk(url: str, seconds: int, parts: dict[str, list[int]]) -> Throughput:
    """wrk on ``url``; requests/s and the CPU each part (and wrk) spent per request."""
    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = {name: cpu_seconds(pids) for name, pids in parts.items()}
    wrk_before = children()
    result = wrk(url, seconds)
    if result.errors:
        raise RuntimeError(f"wrk on {url} saw errors: {result.detail}")
    spent = {name: cpu_seconds(pids) - before[name] for name, pids in parts.items()}
    spent["wrk"] = children() - wrk_before
    return Throughput(result.rps, {name: sec * 1e6 / result.requests
                                   for name, sec in spent.items()})


def throughput(pair: pairs.Pair, seconds: int, rounds: int = 2) -> tuple[Throughput, Throughput]:
    """(straight to the first member, through the VIP): the best of ``rounds``
    alternating runs each, so that a burst of other work on the host hits both alike."""
    lb = [pid for pid in pair.pids(pair.master)
          if Path(f"/proc/{pid}/comm").read_text().strip() == "haproxy"]
    members = [pid for m in pair.members for pid in pair.plumbing.netns_pids(m.ns)]
    first = pair.plumbing.netns_pids(pair.members[0].ns)
    direct: list[Throughput] = []
    via_vip: list[Throughput] = []
    for _ in range(rounds):
        direct.append(measured_wrk(f"http://{pair.members[0].address}:{pairs.MEMBER_PORT}/",
                                   seconds, {"member": first}))
        via_vip.append(measured_wrk(f"http://{pair.vip}:{pairs.VIP_PORT}/", seconds,
                                    {"load balancer": lb, "members": members}))
    return max(direct, key=lambda t: t.rps), max(via_vip, key=lambda t: t.rps)


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
                        help="per wrk throughput run (two each, alternating)")
    parser.add_argument("--reloads", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.dataplane needs root (network namespaces)", file=sys.stderr)
        return 1
    started = time.perf_counter()

    print(f"\namphorae data plane, netns amphorae, {os.cpu_count()} CPUs, "
          f"wrk {' '.join(WRK[1:])}\n")
    times = boot_times(args.boots)
    median = statistics.median(times)
    print(f"amphora create (namespace to agent ready), {len(times)} boots: median "
          f"{median:.3f} s, max {max(times):.3f} s   target median < {TARGET_BOOT} s: "
          f"{verdict(median < TARGET_BOOT)}")

    with pairs.vrrp_pair(PAIR_NET, advert_int=1) as pair:
        memory = amphora_memory(pair)
        parts = ", ".join(f"{name} {kib / 1024:.1f}" for name, kib in sorted(memory.items()))
        print(f"memory of one amphora (LB and keepalived running): "
              f"{sum(memory.values()) / 1024:.1f} MiB RSS ({parts})")

        direct, via_vip = throughput(pair, args.seconds)
        ratio = via_vip.rps / direct.rps
        print(f"requests/s: straight to one member {direct.rps:.0f}, through the VIP over "
              f"{len(pair.members)} members {via_vip.rps:.0f}, ratio {ratio:.2f}   "
              f"target >= {TARGET_RATIO}: {verdict(ratio >= TARGET_RATIO)}")
        print(f"  CPU per request (client, members and load balancer share the "
              f"{os.cpu_count()} CPUs): straight {direct.cpu_text()}; through the VIP "
              f"{via_vip.cpu_text()}")

        for clients, wrk_args in (("keep-alive", ()),
                                  ("a connection per request", ("-H", "Connection: close"))):
            loaded, per_reload = reload_under_load(pair, args.reloads, *wrk_args)
            detail = f" ({loaded.detail})" if loaded.detail else ""
            print(f"{args.reloads} reloads under wrk load, {clients}: {loaded.errors} failed "
                  f"of {loaded.requests} requests{detail}, {per_reload:.2f} s per reload "
                  f"call   target {TARGET_RELOAD_FAILURES}: "
                  f"{verdict(loaded.errors <= TARGET_RELOAD_FAILURES)}")

        report_failover(pair, pairs.fail_over(pair))
    with pairs.vrrp_pair(PAIR_NET, advert_int=0.2) as pair:
        report_failover(pair, pairs.fail_over(pair))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


def report_failover(pair: pairs.Pair, result: pairs.Failover) -> None:
    print(f"VRRP failover, advert {pair.advert_int:g} s: traffic gap {result.gap:.2f} s "
          f"(VIP moved after {result.takeover:.2f} s, VRRP's bound {pair.takeover_bound():.2f}"
          f" s; {result.failed}/{result.requests} GETs failed)   target < {TARGET_GAP} s: "
          f"{verdict(result.gap < TARGET_GAP)}")


if __name__ == "__main__":
    sys.exit(main())
