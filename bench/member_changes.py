"""Time from a member change API call to the member serving / leaving, with and without
an HAProxy reload (root).

    .venv/bin/python -m bench.member_changes [--rounds 5]

One `amphorae up` deployment (tests/deployment.py), one SINGLE load balancer with two
HTTP listeners over member m1: port 80's pool is ROUND_ROBIN (a member change goes
through HAProxy's runtime API), port 81's has HTTP_COOKIE persistence (``add server``
takes no ``cookie`` on HAProxy 2.6, so adding and removing a member there reloads).
Each round adds m2 through the API and sends requests through the VIP (a fresh
connection each, no cookie) until m2 answers: "serving"; then deletes m2 and sends until
the load balancer is ACTIVE and 20 answers in a row came from m1: "leaving" is when the
last request that m2 answered was sent. HAProxy's reload count is read from the master
socket before and after each variant.

Subnets 198.18.174.0/24 (VIP) and 198.18.175.0/24 (members) only; everything made is
removed when the run ends, also when it fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import statistics
import sys
import time
from typing import Any

from tests import dataplane as dp
from tests.deployment import Deployment, deployment

from amphorae.agent.haproxy import serving_pid
from amphorae.contract.layout import LbFiles
from amphorae.drivers.compute import amphora_boot as boot
from amphorae.drivers.compute import netns as compute

VIP_CIDR, MEMBER_CIDR = "198.18.174.0/24", "198.18.175.0/24"
VARIANTS = (("runtime API", 80, None),
            ("reload (add)", 81, {"type": "HTTP_COOKIE"}))  # a delete is runtime there too
# s, API call to the new member answering: ours (the issue sets none; before this
# change every member change reloaded, the "reload (add)" line).
TARGET_SERVING = 1.0
WAIT = 10.0


@dataclasses.dataclass
class Figures:
    serving: list[float] = dataclasses.field(default_factory=list)
    leaving: list[float] = dataclasses.field(default_factory=list)
    reloads: int = 0


class Reloads:
    """Reloads of one HAProxy, seen as new processes: a reload starts one (a new pid),
    a runtime update does not. Two reloads between two looks count as one."""

    def __init__(self, files: LbFiles) -> None:
        self.socket = files.stats_socket
        self.pid = serving_pid(self.socket)
        self.count = 0

    def look(self) -> int:
        pid = serving_pid(self.socket)
        self.count += pid != self.pid
        self.pid = pid
        return self.count


def _answer(vip: str, port: int) -> str:
    return dp.http_request(vip, port, timeout=5).text


def _serving(d: Deployment, vip: str, port: int, pool_id: str) -> tuple[float, Any]:
    started = time.monotonic()
    member = d.lb.create_member(pool_id, address=d.members.addresses["m2"],
                                protocol_port=dp.HTTP.port, subnet_id=d.member_subnet_id)
    while _answer(vip, port) != "m2":
        if time.monotonic() - started > WAIT:
            raise RuntimeError(f"m2 not serving on port {port} within {WAIT} s")
    return time.monotonic() - started, member


def _leaving(d: Deployment, lb_id: str, vip: str, port: int, pool_id: str,
             member: Any) -> float:
    started = time.monotonic()
    d.lb.delete_member(member.id, pool_id)
    last_m2, in_a_row = 0.0, 0
    while in_a_row < 20 or d.lb.get_load_balancer(lb_id).provisioning_status != "ACTIVE":
        if time.monotonic() - started > WAIT:
            raise RuntimeError(f"m2 still serving on port {port} after {WAIT} s")
        sent = time.monotonic()
        if _answer(vip, port) == "m2":
            last_m2, in_a_row = sent - started, 0
        else:
            in_a_row += 1
    return last_m2


def measure(rounds: int) -> dict[str, Figures]:
    marker = secrets.token_hex(3)
    with deployment(marker, VIP_CIDR, MEMBER_CIDR) as d:
        d.members.add("m1", 21)
        d.members.add("m2", 22)
        d.start("up")
        listeners = []
        for _, port, persistence in VARIANTS:
            pool: dict[str, Any] = {
                "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                "members": [{"address": d.members.addresses["m1"],
                             "protocol_port": dp.HTTP.port, "subnet_id": d.member_subnet_id}]}
            if persistence:
                pool["session_persistence"] = persistence
            listeners.append({"protocol": "HTTP", "protocol_port": port, "default_pool": pool})
        lb = d.lb.create_load_balancer(vip_subnet_id=d.vip_subnet_id, listeners=listeners)
        try:
            d.wait_lb(lb.id)
            (amp,) = d.lb.amphorae(loadbalancer_id=lb.id)
            files = LbFiles(d.state / "amphorae" / compute.short_id(amp.id)
                            / boot.AGENT_BASE / lb.id)
            pools = {p.listeners[0]["id"]: p.id for p in d.lb.pools(loadbalancer_id=lb.id)}
            ports = {li.protocol_port: pools[li.id]
                     for li in d.lb.listeners(loadbalancer_id=lb.id)}
            figures = {}
            for name, port, _ in VARIANTS:
                found = figures[name] = Figures()
                reloads = Reloads(files)
                for _ in range(rounds):
                    took, member = _serving(d, lb.vip_address, port, ports[port])
                    found.serving.append(took)
                    d.wait_lb(lb.id)
                    reloads.look()
                    found.leaving.append(_leaving(d, lb.id, lb.vip_address, port,
                                                  ports[port], member))
                    found.reloads = reloads.look()
            return figures
        finally:
            d.lb.delete_load_balancer(lb.id, cascade=True)
            d.wait_gone(lb.id)


def report(figures: dict[str, Figures], rounds: int) -> None:
    print(f"member change API call to traffic, {rounds} adds and deletes per pool "
          "(median / max):")
    for name, found in figures.items():
        serving, leaving = statistics.median(found.serving), statistics.median(found.leaving)
        print(f"  {name:<13} new member serving {serving * 1000:.0f} / "
              f"{max(found.serving) * 1000:.0f} ms, deleted member's last request "
              f"{leaving * 1000:.0f} / {max(found.leaving) * 1000:.0f} ms; HAProxy reloads "
              f"{found.reloads} for {2 * rounds} changes   target serving < "
              f"{TARGET_SERVING:g} s: {'met' if serving < TARGET_SERVING else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench.member_changes needs root (network namespaces)", file=sys.stderr)
        return 1
    report(measure(args.rounds), args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
