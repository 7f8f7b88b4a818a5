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

import json
import re
import secrets
import subprocess
import threading
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


def active_active_flavor(d: Deployment, low: int, high: int) -> str:
    profile = d.lb.create_flavor_profile(
        name=f"aa-{d.marker}", provider_name="amphora", flavor_data=json.dumps(
            {"loadbalancer_topology": "ACTIVE_ACTIVE", "amphora_count_min": low,
             "amphora_count_max": high}))
    return str(d.lb.create_flavor(name=f"aa-{d.marker}", flavor_profile_id=profile.id,
                                  is_enabled=True).id)


def scale(d: Deployment, lb_id: str) -> dict[str, Any]:
    got = requests.get(f"{d.url}/v2/octavia/loadbalancers/{lb_id}/scale", timeout=10)
    got.raise_for_status()
    return dict(got.json()["scale"])


def serving(d: Deployment, lb_id: str) -> list[str]:
    amps = requests.get(f"{d.url}/v2/octavia/amphorae", params={"loadbalancer_id": lb_id},
                        timeout=10).json()["amphorae"]
    return sorted(a["id"] for a in amps if a["status"] == "ALLOCATED")


def wait_for_count(d: Deployment, lb_id: str, count: int, timeout: float) -> dict[str, Any]:
    """The set at ``count``: wanted, serving, and the load balancer ACTIVE again."""
    def reached() -> None:
        now = scale(d, lb_id)
        assert now["desired"] == count, now
        assert len(serving(d, lb_id)) == count, now
        assert d.lb.get_load_balancer(lb_id).provisioning_status == "ACTIVE"

    eventually(reached, f"{count} amphorae serving", timeout=timeout)
    return scale(d, lb_id)


class Probe(threading.Thread):
    """A GET on a fresh connection every 50 ms until stopped; failures are kept."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(daemon=True)
        self.address, self.port = address, port
        self.done = threading.Event()
        self.sent = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.done.is_set():
            self.sent += 1
            try:
                reply = dp.http_request(self.address, self.port, timeout=2)
                if reply.status != 200 or reply.text.strip() != "m1":
                    self.failures.append(f"{reply.status} {reply.text[:40]!r}")
            except OSError as e:
                self.failures.append(repr(e))
            self.done.wait(0.05)

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def test_load_grows_the_set_to_its_maximum_and_idleness_shrinks_it_back(
        up: Deployment) -> None:
    d = up
    lb = d.lb.create_load_balancer(vip_subnet_id=d.vip_subnet_id,
                                   flavor_id=active_active_flavor(d, 2, 3))
    d.wait_lb(lb.id, timeout=60)
    listener = d.settle(lb.id, d.lb.create_listener, loadbalancer_id=lb.id,
                        protocol="HTTP", protocol_port=80)
    pool = d.settle(lb.id, d.lb.create_pool, listener_id=listener.id, protocol="HTTP",
                    lb_algorithm="ROUND_ROBIN")
    d.settle(lb.id, d.lb.create_member, pool.id, address=d.members.addresses["m1"],
             protocol_port=dp.HTTP.port, subnet_id=d.member_subnet_id)
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

    probe = Probe(vip, 80)
    probe.start()
    quiet = time.monotonic()
    try:
        shrunk = wait_for_count(d, lb.id, 2, timeout=60)
        time.sleep(1)  # the probe goes on a little past the removal
    finally:
        probe.stop()
    print(f"AUTOSCALE 3 -> 2 amphorae {time.monotonic() - quiet:.1f} s after the load "
          f"stopped: {shrunk['reason']}; probe {probe.sent} requests, "
          f"{len(probe.failures)} failed")
    assert shrunk["reason"].startswith("autoscaler: ") and " below " in shrunk["reason"]
    assert probe.sent > 50, "the probe hardly ran"
    assert not probe.failures, probe.failures[:5]

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


def _nothing_left(d: Deployment) -> None:
    assert d.leftovers() == {}, d.leftovers()
