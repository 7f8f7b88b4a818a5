"""The dashboard in a real headless Chromium against a real deployment (root): `amphorae
up` with netns amphorae (tests/deployment.py on 198.18.140.0/24 + 198.18.141.0/24, or
the next pairs on other xdist workers), an ACTIVE_STANDBY load balancer whose pool is
degraded (one member's address has nothing listening), traffic through its VIP, then a
failover asked for from the page and a member disabled from the page.

What the page shows is read from its DOM; screenshots go to the test's tmp_path (their
paths are printed; tests/browser.py copies them where ``AMPHORAE_SCREENSHOTS`` says).
The browser part is bounded by :data:`BUDGET`.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import browser
from tests import dataplane as dp
from tests.deployment import Deployment, deployment, eventually, per_worker

MARKER = secrets.token_hex(3)
BUDGET = 90.0  # seconds for everything the browser does
DEAD_PORT = 9  # nothing listens there on the member: its health checks fail


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.140.0/24", "198.18.141.0/24")) as d:
        d.members.add("m1", 21)
        d.start("up")
        yield d


@pytest.fixture
def degraded_pair(up: Deployment) -> Iterator[Any]:
    """An ACTIVE_STANDBY load balancer, HTTP on 80, its pool with m1 and a dead member
    under an HTTP monitor, ACTIVE with the pool DEGRADED; deleted afterwards."""
    d = up
    address = d.members.addresses["m1"]
    lb = d.lb.create_load_balancer(
        vip_subnet_id=d.vip_subnet_id, flavor_id=d.pair_flavor(), name="dash-pair",
        listeners=[{"name": "http", "protocol": "HTTP", "protocol_port": 80, "default_pool": {
            "name": "web", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "healthmonitor": {"type": "HTTP", "delay": 1, "timeout": 1, "max_retries": 1,
                              "max_retries_down": 1},
            "members": [
                {"name": "m1", "address": address, "protocol_port": dp.HTTP.port,
                 "subnet_id": d.member_subnet_id},
                {"name": "dead", "address": address, "protocol_port": DEAD_PORT,
                 "subnet_id": d.member_subnet_id}]}}])
    try:
        d.wait_lb(lb.id, timeout=60)
        eventually(lambda: _pool_degraded(d, lb.id), "the pool DEGRADED", timeout=20)
        yield d.lb.get_load_balancer(lb.id)
    finally:
        d.lb.delete_load_balancer(lb.id, cascade=True)
        d.wait_gone(lb.id, timeout=60)


def _pool_degraded(d: Deployment, lb_id: str) -> None:
    tree = requests.get(f"{d.url}/v2/lbaas/loadbalancers/{lb_id}/status",
                        timeout=5).json()["statuses"]["loadbalancer"]
    pool = tree["listeners"][0]["pools"][0]
    got = (pool["operating_status"],
           {m["name"]: m["operating_status"] for m in pool["members"]})
    assert got == ("DEGRADED", {"m1": "ONLINE", "dead": "ERROR"}), got


class Traffic(threading.Thread):
    """Requests through the VIP until stopped, so the statistics move."""

    def __init__(self, vip: str) -> None:
        super().__init__(daemon=True)
        self.vip = vip
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            with contextlib.suppress(OSError):  # the failover's gap
                dp.http_request(self.vip, 80, timeout=0.5)
            self.done.wait(0.05)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(5)


def _rates_move(page: browser.Page, timeout: float) -> None:
    page.wait("[...document.querySelectorAll('[data-listener] figcaption')]"
              ".every(f => /^[1-9]/.test(f.textContent))",
              "the listener's rates above zero", timeout)


def _active_again(page: browser.Page, card: str, timeout: float) -> None:
    page.wait(f"(c => c.querySelector('header .badge').textContent === 'ACTIVE'"
              f" && !c.innerText.includes('failover in progress'))"
              f"(document.querySelector('{card}'))", "the load balancer ACTIVE again", timeout)


def _row(page: browser.Page, attribute: str, value: str) -> str:
    """The text of the element with data-<attribute>=value ('' if none)."""
    return page.text(f'[data-{attribute}="{value}"]')


def test_the_dashboard_shows_a_degraded_pair_and_fails_it_over(
        up: Deployment, degraded_pair: Any, tmp_path: Path) -> None:
    d, lb = up, degraded_pair
    amps_before = {a.id: a for a in d.lb.amphorae(loadbalancer_id=lb.id)}
    assert sorted(a.role for a in amps_before.values()) == ["BACKUP", "MASTER"]
    pool_id = d.lb.get_listener(lb.listeners[0]["id"]).default_pool_id
    members = {m.name: m for m in d.lb.members(pool_id)}
    started = time.monotonic()

    def left() -> float:
        remaining = BUDGET - (time.monotonic() - started)
        assert remaining > 0, f"the browser test took more than {BUDGET} s"
        return remaining

    with Traffic(lb.vip_address), browser.chromium(MARKER) as page:
        page.goto(f"{d.url}/dashboard?interval=1")
        card = f'article[data-lb="{lb.id}"]'

        # The status tree: the pair, its amphorae, the degraded pool, live statistics.
        page.wait_text("dash-pair", "ACTIVE_STANDBY", "degraded: 1 of 2 members in ERROR",
                       selector=card, timeout=min(30, left()))
        assert "ERROR" in _row(page, "member", members["dead"].id)
        assert "ONLINE" in _row(page, "member", members["m1"].id)
        for amp in amps_before.values():
            row = _row(page, "amphora", amp.id)
            assert amp.role in row and "ALLOCATED" in row, row
        _rates_move(page, min(20, left()))
        page.wait("document.querySelectorAll('svg.sparkline polyline').length >= 2",
                  "the sparklines drawn", timeout=min(10, left()))
        page.screenshot(tmp_path / "dashboard-1-degraded-pair.png")

        # Failover: the first click only arms the button, the second asks the API.
        button = f'button[data-action="lb-failover"][data-id="{lb.id}"]'
        page.click(button)
        page.wait_text("Confirm? Failover", selector=card, timeout=min(5, left()))
        assert d.lb.get_load_balancer(lb.id).provisioning_status == "ACTIVE"
        page.click(button)
        page.wait_text("failover in progress", "PENDING_UPDATE", selector=card,
                       timeout=min(10, left()))
        assert "Failover of the load balancer requested." in page.text("#notice")
        page.screenshot(tmp_path / "dashboard-2-failover-in-progress.png")

        # Done: two new amphorae, the flag gone.
        d.wait_lb(lb.id, timeout=min(45, left()))
        amps_after = {a.id: a for a in d.lb.amphorae(loadbalancer_id=lb.id)
                      if a.status != "DELETED"}
        assert len(amps_after) == 2 and not set(amps_after) & set(amps_before)
        for amp_id in amps_after:
            page.wait(f"document.querySelector('[data-amphora=\"{amp_id}\"]')",
                      f"amphora {amp_id} listed", timeout=min(10, left()))
        page.wait(f"!document.querySelector('{card}').innerText"
                  ".includes('failover in progress')", "the failover over",
                  timeout=min(10, left()))
        for amp_id in amps_before:
            assert not _row(page, "amphora", amp_id), f"{amp_id} still listed"

        # A member disabled from the page: the API's member, and the page, say so.
        page.click(f'button[data-action="member-toggle"][data-id="{members["dead"].id}"]')
        page.wait_text("Member disabled.", selector="#notice", timeout=min(10, left()))
        assert d.lb.get_member(members["dead"].id, pool_id).is_admin_state_up is False
        d.wait_lb(lb.id, timeout=min(20, left()))
        dead = f'[data-member="{members["dead"].id}"]'
        page.wait(f"(t => t.includes('disabled') && t.includes('Enable') && !t.includes('PENDING'))"
                  f"(document.querySelector('{dead}')?.innerText ?? '')",
                  "the member shown disabled", timeout=min(10, left()))
        _active_again(page, card, min(10, left()))
        # One amphora failed over from the page: the BACKUP is replaced, the MASTER stays.
        backup = next(a for a in amps_after.values() if a.role == "BACKUP")
        button = f'button[data-action="amp-failover"][data-id="{backup.id}"]'
        page.click(button)
        page.wait_text("Confirm? Failover", selector=f'[data-amphora="{backup.id}"]',
                       timeout=min(5, left()))
        page.click(button)
        page.wait_text("Failover of the amphora requested.", selector="#notice",
                       timeout=min(10, left()))
        d.wait_lb(lb.id, timeout=min(30, left()))
        amps_last = {a.id: a for a in d.lb.amphorae(loadbalancer_id=lb.id)
                     if a.status != "DELETED"}
        assert backup.id not in amps_last and set(amps_after) - {backup.id} <= set(amps_last)
        page.wait(f"!document.querySelector('[data-amphora=\"{backup.id}\"]')",
                  "the old BACKUP gone from the page", timeout=min(10, left()))
        page.wait_text("MASTER", "BACKUP", selector="#amphorae", timeout=min(5, left()))

        # Both failovers' events, from the API's events (newest first).
        got = requests.get(f"{d.url}/v2/octavia/events", timeout=5,
                           params={"load_balancer_id": lb.id, "kind": "FAILOVER"})
        assert got.status_code == 200 and len(got.json()["events"]) == 2, got.text
        page.wait_text("FAILOVER", selector="#events", timeout=min(10, left()))
        _rates_move(page, min(20, left()))  # the new amphorae's statistics
        _active_again(page, card, min(10, left()))
        page.screenshot(tmp_path / "dashboard-3-after-failovers.png")
        # The events panel's filter: only failovers.
        page.evaluate("(s => { s.value = 'kind=FAILOVER'; s.dispatchEvent(new Event('change')); })"
                      "(document.getElementById('event-filter'))")
        page.wait("(items => items.length > 0 && items.every("
                  "i => i.classList.contains('kind-failover')))"
                  "([...document.querySelectorAll('ol.events li')])",
                  "only failovers listed", timeout=min(10, left()))
        page.screenshot(tmp_path / "dashboard-4-failover-events.png")
        assert page.errors == [], page.errors
    print(f"\ndashboard: the browser part took {time.monotonic() - started:.1f} s")
