"""Throughput and latency of the served API on loopback, next to Octavia's figures.

    .venv/bin/python -m bench.api [--seconds 10] [--backend sqlite|postgresql]

Starts a real `amphorae api` (2 gunicorn workers, as the Octavia reference run), seeds
100 ACTIVE load balancers and measures with wrk (-t2 -c10, as the reference):
GET one load balancer, GET the list of 100; then POST and DELETE of load balancers from
10 client threads. The baseline is Octavia 19 on this kind of machine, 2 gunicorn
workers, `wrk -t2 -c10 -d10s`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from tests import servers

BASELINE_RPS = {"GET one load balancer": 210.0, "GET list of 100 load balancers": 48.0}
Row = tuple[str, float, float, float]  # call, requests/s, p50 ms, p99 ms
HEADERS = {"X-Project-Id": servers.PROJECT, "Content-Type": "application/json",
           "Accept": "application/json"}


def wrk(url: str, seconds: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from wrk's --latency report."""
    cmd = ["wrk", "-t2", "-c10", f"-d{seconds}s", "--latency",
           "-H", f"X-Project-Id: {servers.PROJECT}", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


class Caller:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object, float]:
        data = json.dumps(body) if body is not None else None
        start = time.perf_counter()
        self.conn.request(method, path, body=data, headers=HEADERS)
        resp = self.conn.getresponse()
        raw = resp.read()
        elapsed = time.perf_counter() - start
        return resp.status, (json.loads(raw) if raw else None), elapsed


def burst(url: str, jobs: list[tuple[str, str, object]], threads: int = 10,
          expect: int = 201) -> tuple[float, list[float], list[object]]:
    """Run jobs from `threads` keep-alive clients; (requests/s, latencies, bodies)."""
    latencies: list[float] = []
    bodies: list[object] = []
    lock = threading.Lock()
    queue = list(jobs)

    def run() -> None:
        caller = Caller(url)
        while True:
            with lock:
                if not queue:
                    return
                method, path, body = queue.pop()
            status, out, elapsed = caller.call(method, path, body)
            if status != expect:
                raise RuntimeError(f"{method} {path}: {status} {out}")
            with lock:
                latencies.append(elapsed)
                bodies.append(out)

    start = time.perf_counter()
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(jobs) / (time.perf_counter() - start), latencies, bodies


def create_lbs(url: str, count: int) -> tuple[float, list[float], list[str]]:
    body = {"loadbalancer": {"vip_subnet_id": servers.PUBLIC_SUBNET, "name": "bench"}}
    rps, lat, bodies = burst(url, [("POST", "/v2/lbaas/loadbalancers", body)] * count)
    return rps, lat, [b["loadbalancer"]["id"] for b in bodies]  # type: ignore[index]


def ms(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--writes", type=int, default=400, help="POSTs and DELETEs to time")
    args = parser.parse_args()

    state = pathlib.Path(tempfile.mkdtemp(prefix="amphorae-bench-"))
    try:
        rows = measure(args, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    report(args, rows)
    return 0


def measure(args: argparse.Namespace, state: pathlib.Path) -> list[Row]:
    rows: list[Row] = []
    with servers.running_api(args.backend, state, "bench") as srv:
        _, _, seeded = create_lbs(srv.url, 100)
        for lb_id in seeded:
            servers.settle_db(srv.db_url, lb_id)
        one = f"{srv.url}/v2/lbaas/loadbalancers/{seeded[0]}"
        rows.append(("GET one load balancer", *wrk(one, args.seconds)))
        rows.append(("GET list of 100 load balancers",
                     *wrk(f"{srv.url}/v2/lbaas/loadbalancers", args.seconds)))
        post_rps, post_lat, created = create_lbs(srv.url, args.writes)
        rows.append(("POST load balancer", post_rps, ms(post_lat, 50), ms(post_lat, 99)))
        for lb_id in created:
            servers.settle_db(srv.db_url, lb_id)
        del_rps, del_lat, _ = burst(srv.url, [("DELETE", f"/v2/lbaas/loadbalancers/{i}", None)
                                             for i in created], expect=204)
        rows.append(("DELETE load balancer", del_rps, ms(del_lat, 50), ms(del_lat, 99)))
        pair = 1 / (1 / post_rps + 1 / del_rps)
        rows.append(("POST+DELETE pair", pair, ms(post_lat, 50) + ms(del_lat, 50),
                     ms(post_lat, 99) + ms(del_lat, 99)))
    return rows


def report(args: argparse.Namespace, rows: list[Row]) -> None:
    print(f"\namphorae API, {args.backend}, 2 workers, loopback "
          f"(GETs: wrk -t2 -c10 -d{args.seconds}s; writes: 10 keep-alive client threads)\n")
    print(f"{'call':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'Octavia':>8} {'x':>6}")
    for name, rps, p50, p99 in rows:
        base = BASELINE_RPS.get(name)
        ref = f"{base:8.0f} {rps / base:6.1f}" if base else f"{'-':>8} {'-':>6}"
        print(f"{name:34} {rps:9.1f} {p50:8.2f} {p99:8.2f} {ref}")
    slow = [n for n, rps, *_ in rows if n in BASELINE_RPS and rps < 3 * BASELINE_RPS[n]]
    print("\ntarget: 3x Octavia on the GETs:", "met" if not slow else f"NOT met for {slow}")


if __name__ == "__main__":
    sys.exit(main())
