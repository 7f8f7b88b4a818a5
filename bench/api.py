"""Throughput and latency of the served API on loopback, next to Octavia's figures.

    .venv/bin/python -m bench.api [--seconds 10] [--backend sqlite|postgresql]
                                  [--auth noauth|keystone]

Starts a real `amphorae api` (2 gunicorn workers, as the Octavia reference run), seeds
100 ACTIVE load balancers and measures with wrk (-t2 -c10, as the reference):
GET one load balancer, GET the list of 100; then POST and DELETE of load balancers from
10 client threads. The baseline is Octavia 19 on this kind of machine, 2 gunicorn
workers, `wrk -t2 -c10 -d10s`.

With `--auth keystone` it also starts a real Keystone (tests/keystone.py), runs the same
calls with a token of `lb-member` through keystonemiddleware's auth_token and prints
both runs side by side, with how often Keystone was asked to validate the token.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from collections.abc import Callable, Iterator

from tests import servers

BASELINE_RPS = {"GET one load balancer": 210.0, "GET list of 100 load balancers": 48.0}
Row = tuple[str, float, float, float]  # call, requests/s, p50 ms, p99 ms
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
NOAUTH = {"X-Project-Id": servers.PROJECT}


@dataclasses.dataclass
class Auth:
    """How the measured API authenticates: its extra configuration, the headers every
    request carries, and a count of Keystone's token validations (0 without one)."""

    name: str
    config: str = ""
    headers: dict[str, str] = dataclasses.field(default_factory=lambda: dict(NOAUTH))
    validations: Callable[[], int] = lambda: 0


def wrk(url: str, seconds: int, headers: dict[str, str]) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from wrk's --latency report."""
    cmd = ["wrk", "-t2", "-c10", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


class Caller:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.headers = {**JSON, **headers}

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object, float]:
        data = json.dumps(body) if body is not None else None
        start = time.perf_counter()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        elapsed = time.perf_counter() - start
        return resp.status, (json.loads(raw) if raw else None), elapsed


def burst(url: str, headers: dict[str, str], jobs: list[tuple[str, str, object]],
          threads: int = 10, expect: int = 201) -> tuple[float, list[float], list[object]]:
    """Run jobs from `threads` keep-alive clients; (requests/s, latencies, bodies)."""
    latencies: list[float] = []
    bodies: list[object] = []
    lock = threading.Lock()
    queue = list(jobs)

    def run() -> None:
        caller = Caller(url, headers)
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


def create_lbs(url: str, headers: dict[str, str],
               count: int) -> tuple[float, list[float], list[str]]:
    body = {"loadbalancer": {"vip_subnet_id": servers.PUBLIC_SUBNET, "name": "bench"}}
    rps, lat, bodies = burst(url, headers, [("POST", "/v2/lbaas/loadbalancers", body)] * count)
    return rps, lat, [b["loadbalancer"]["id"] for b in bodies]  # type: ignore[index]


def ms(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--writes", type=int, default=400, help="POSTs and DELETEs to time")
    parser.add_argument("--auth", default="noauth", choices=["noauth", "keystone"],
                        help="keystone: measure noauth, then keystone auth, side by side")
    args = parser.parse_args()

    runs: list[tuple[Auth, list[Row], int]] = []
    with contextlib.ExitStack() as stack:
        auths = [Auth("noauth")]
        if args.auth == "keystone":
            auths.append(stack.enter_context(keystone_auth()))
        for auth in auths:
            state = pathlib.Path(tempfile.mkdtemp(prefix="amphorae-bench-"))
            try:
                before = auth.validations()
                rows = measure(args, state, auth)
                runs.append((auth, rows, auth.validations() - before))
            finally:
                shutil.rmtree(state, ignore_errors=True)
    report(args, runs)
    return 0


@contextlib.contextmanager
def keystone_auth() -> Iterator[Auth]:
    """A real Keystone and a token of lb-member (project-a) for every request."""
    from tests import keystone

    with keystone.running_keystone() as ks:
        yield Auth("keystone", ks.authtoken_config(), {"X-Auth-Token": ks.token("lb-member")},
                   ks.validations)


def measure(args: argparse.Namespace, state: pathlib.Path, auth: Auth) -> list[Row]:
    rows: list[Row] = []
    with servers.running_api(args.backend, state, "bench", auth.config) as srv:
        _, _, seeded = create_lbs(srv.url, auth.headers, 100)
        for lb_id in seeded:
            servers.settle_db(srv.db_url, lb_id)
        one = f"{srv.url}/v2/lbaas/loadbalancers/{seeded[0]}"
        rows.append(("GET one load balancer", *wrk(one, args.seconds, auth.headers)))
        rows.append(("GET list of 100 load balancers",
                     *wrk(f"{srv.url}/v2/lbaas/loadbalancers", args.seconds, auth.headers)))
        post_rps, post_lat, created = create_lbs(srv.url, auth.headers, args.writes)
        rows.append(("POST load balancer", post_rps, ms(post_lat, 50), ms(post_lat, 99)))
        for lb_id in created:
            servers.settle_db(srv.db_url, lb_id)
        del_rps, del_lat, _ = burst(srv.url, auth.headers,
                                    [("DELETE", f"/v2/lbaas/loadbalancers/{i}", None)
                                     for i in created], expect=204)
        rows.append(("DELETE load balancer", del_rps, ms(del_lat, 50), ms(del_lat, 99)))
        pair = 1 / (1 / post_rps + 1 / del_rps)
        rows.append(("POST+DELETE pair", pair, ms(post_lat, 50) + ms(del_lat, 50),
                     ms(post_lat, 99) + ms(del_lat, 99)))
    return rows


def report(args: argparse.Namespace, runs: list[tuple[Auth, list[Row], int]]) -> None:
    print(f"\namphorae API, {args.backend}, 2 workers, loopback "
          f"(GETs: wrk -t2 -c10 -d{args.seconds}s; writes: 10 keep-alive client threads)\n")
    head = "".join(f" {auth.name + ' req/s':>15} {'p50 ms':>7} {'p99 ms':>7}"
                   for auth, _, _ in runs)
    print(f"{'call':32}{head} {'Octavia':>8} {'x':>6}")
    for i, (name, *_) in enumerate(runs[0][1]):
        cells = "".join(f" {rows[i][1]:15.1f} {rows[i][2]:7.2f} {rows[i][3]:7.2f}"
                        for _, rows, _ in runs)
        base = BASELINE_RPS.get(name)
        worst = min(rows[i][1] for _, rows, _ in runs)
        ref = f"{base:8.0f} {worst / base:6.1f}" if base else f"{'-':>8} {'-':>6}"
        print(f"{name:32}{cells} {ref}")
    for auth, rows, validations in runs:
        if auth.name == "keystone":
            # Seeding, both wrk runs, the POSTs and the DELETEs.
            calls = 100 + sum(r[1] * args.seconds for r in rows[:2]) + 2 * args.writes
            print(f"\nKeystone validated the token {validations} time(s) for about "
                  f"{calls:,.0f} requests (keystonemiddleware caches it in each API worker; "
                  "threads that see it first at the same moment each ask once)")
    slow = [f"{n} ({auth.name})" for auth, rows, _ in runs for n, rps, *_ in rows
            if n in BASELINE_RPS and rps < 3 * BASELINE_RPS[n]]
    print("\ntarget: 3x Octavia on the GETs:", "met" if not slow else f"NOT met for {slow}")


if __name__ == "__main__":
    sys.exit(main())
