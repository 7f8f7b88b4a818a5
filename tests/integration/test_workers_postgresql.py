"""Two `amphorae worker` processes share one job queue on PostgreSQL (root): load
balancers created at once are all built, each by one worker, both workers take part, and
everything serves and is removed again. Deployment: tests/deployment.py on
198.18.88.0/24 + 198.18.89.0/24 (or the next pairs on other xdist workers)."""

from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

from tests import dataplane as dp
from tests.deployment import deployment, eventually, per_worker

MARKER = secrets.token_hex(3)
COUNT = 6


def test_two_workers_share_the_queue() -> None:
    # Two reconciles at a time per worker: six load balancers at once need both.
    with deployment(MARKER, *per_worker("198.18.88.0/24", "198.18.89.0/24"),
                    backend="postgresql",
                    extra_config="[controller_worker]\nreconcile_threads = 2\n") as d:
        d.members.add("m1", 21)
        d.start("api")
        d.start("worker", name="worker-a")
        d.start("worker", name="worker-b")
        d.start("housekeeping")

        def create(i: int) -> str:
            lb = d.lb.create_load_balancer(
                vip_subnet_id=d.vip_subnet_id, name=f"shared-{i}",
                listeners=[{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
                    "name": f"pool-{i}", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                    "members": [{"address": d.members.addresses["m1"],
                                 "protocol_port": dp.HTTP.port,
                                 "subnet_id": d.member_subnet_id}]}}])
            return str(lb.id)

        with ThreadPoolExecutor(COUNT) as pool:
            lb_ids = list(pool.map(create, range(COUNT)))
        lbs = [d.wait_lb(lb_id, timeout=60) for lb_id in lb_ids]
        for lb in lbs:
            eventually(lambda vip=lb.vip_address: _serves(vip), f"traffic via {lb.name}")

        # Each load balancer was built by exactly one worker, and both worked.
        built = {name: _booted(d.state / f"{name}.log") for name in ("worker-a", "worker-b")}
        assert built["worker-a"] and built["worker-b"], built
        assert not built["worker-a"] & built["worker-b"], built
        assert built["worker-a"] | built["worker-b"] == set(lb_ids), built
        print(f"\nworker-a built {len(built['worker-a'])}, worker-b {len(built['worker-b'])}")

        for lb_id in lb_ids:
            d.lb.delete_load_balancer(lb_id, cascade=True)
        for lb_id in lb_ids:
            d.wait_gone(lb_id)
        eventually(lambda: _nothing_left(d.leftovers()), "nothing left", timeout=15)


def _serves(vip: str) -> None:
    assert dp.http_request(vip, 80).text == "m1"


def _booted(log) -> set[str]:  # type: ignore[no-untyped-def]
    """Load balancers whose amphora this worker booted (from its log)."""
    # "amphora <id> (STANDALONE) of load balancer [<name> (]<id>[)] booted in ..."
    return set(re.findall(r"\(STANDALONE\) of load balancer (?:\S+ \()?([0-9a-f-]{36})\)? "
                          r"booted", log.read_text()))


def _nothing_left(left: dict) -> None:
    assert left == {}
