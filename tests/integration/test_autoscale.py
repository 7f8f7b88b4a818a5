"""Autoscaling end to end through `amphorae up` (root): offered load makes an
ACTIVE_ACTIVE load balancer grow to its flavor's maximum, and when the load stops it
shrinks back to the minimum, draining the amphora it removes without failing a request.

The load is wrk on loopback (two threads, 64 keep-alive connections, bounded to 60 s)
against a listener without a pool, which HAProxy answers itself (503): the amphorae's
HAProxy is what runs hot, not a member. The thresholds are lowered ([autoscaling] below)
so that this 2-core host, shared with other tests, crosses them clearly either way:
wrk keeps two amphorae's HAProxy about 20% busy here, an idle one is below 1%.

One deployment per xdist worker (tests/deployment.py) on 198.18.188.0/24 (VIPs) and
198.18.189.0/24 (members), or the next pairs up on other workers; member m1 serves HTTP.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests import dataplane as dp
from tests.deployment import Deployment, deployment, eventually, per_worker

MARKER = secrets.token_hex(3)
AUTOSCALING = """
[autoscaling]
enabled = true
interval = 0.5
hot_load = 0.08
cold_load = 0.02
scale_out_after = 2
scale_in_after = 4
cooldown = 3
drain_timeout = 10
"""
LOAD_SECONDS = 60  # wrk's bound; it is stopped as soon as the set has grown


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.188.0/24", "198.18.189.0/24"),
                    extra_config=AUTOSCALING) as d:
        d.members.add("m1", 21)
        d.start("up")
        yield d


def scale(d: Deployment, lb_id: str) -> dict[str, Any]:
    got = requests.get(f"{d.url}/v2/octavia/loadbalancers/{lb_id}/scale", timeout=10)
    got.raise_for_status()
    return dict(got.json()["scale"])


def wait_for_count(d: Deployment, lb_id: str, count: int, timeout: float) -> dict[str, Any]:
    """The set at ``count``: wanted, serving, and the load balancer ACTIVE again."""
    def reached() -> None:
        now = scale(d, lb_id)
        assert now["desired"] == count, now
        assert len(d.allocated_amphorae(lb_id)) == count, now
        assert d.lb.get_load_balancer(lb_id).provisioning_status == "ACTIVE"

    eventually(reached, f"{count} amphorae serving", timeout=timeout)
    return scale(d, lb_id)


def test_load_grows_the_set_to_its_maximum_and_idleness_shrinks_it_back(
        up: Deployment) -> None:
    d = up
    flavor_id = d.flavor(f"aa-{d.marker}", {"loadbalancer_topology": "ACTIVE_ACTIVE",
                                            "amphora_count_min": 2, "amphora_count_max": 3})
    lb = d.lb.create_load_balancer(vip_subnet_id=d.vip_subnet_id, flavor_id=flavor_id)
    d.wait_lb(lb.id, timeout=60)
    d.http_tree(lb.id)
    d.settle(lb.id, d.lb.create_listener, loadbalancer_id=lb.id, protocol="HTTP",
             protocol_port=81)  # no pool: HAProxy answers 503 itself
    vip = lb.vip_address
    assert wait_for_count(d, lb.id, 2, timeout=30)["current"] == 2

    began = time.monotonic()
    with subprocess.Popen(["wrk", "-t2", "-c64", f"-d{LOAD_SECONDS}s",
                           f"http://{vip}:81/"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as wrk:
        try:
            grown = wait_for_count(d, lb.id, 3, timeout=LOAD_SECONDS - 10)
        finally:
            wrk.terminate()
    print(f"\nAUTOSCALE 2 -> 3 amphorae {time.monotonic() - began:.1f} s after the "
          f"load began: {grown['reason']}")
    assert grown["reason"].startswith("autoscaler: ") and " above " in grown["reason"]

    probe = dp.Probe(lambda: _from_m1(vip), interval=0.05)
    probe.start()
    quiet = time.monotonic()
    try:
        shrunk = wait_for_count(d, lb.id, 2, timeout=60)
        time.sleep(1)  # the probe goes on a little past the removal
    finally:
        probe.stop()
    print(f"AUTOSCALE 3 -> 2 amphorae {time.monotonic() - quiet:.1f} s after the load "
          f"stopped: {shrunk['reason']}; probe {len(probe.results)} requests, "
          f"{probe.failures()} failed")
    assert shrunk["reason"].startswith("autoscaler: ") and " below " in shrunk["reason"]
    assert len(probe.results) > 50, "the probe hardly ran"
    assert probe.failures() == 0, probe.results

    events = requests.get(f"{d.url}/v2/octavia/events", timeout=10, params={
        "load_balancer_id": lb.id, "kind": "SCALED"}).json()["events"]
    messages = [e["message"] for e in events]
    assert len(messages) >= 2 and " below " in messages[0] and " above " in messages[1], \
        messages
    decisions = requests.get(f"{d.url}/metrics", timeout=10).text
    for direction in ("out", "in"):
        found = re.search(rf'^amphorae_scaling_decisions_total{{direction="{direction}"}} '
                          rf'(\S+)$', decisions, re.M)
        assert found and float(found.group(1)) >= 1, direction

    d.lb.delete_load_balancer(lb.id, cascade=True)
    d.wait_gone(lb.id)
    eventually(lambda: _nothing_left(d), "nothing left of the load balancer", timeout=15)


def _from_m1(vip: str) -> None:
    """One GET on a fresh connection, answered by member m1 (raises otherwise)."""
    reply = dp.http_request(vip, 80, timeout=2)
    assert reply.status == 200 and reply.text.strip() == "m1", (reply.status, reply.text)


def _nothing_left(d: Deployment) -> None:
    assert d.leftovers() == {}, d.leftovers()
