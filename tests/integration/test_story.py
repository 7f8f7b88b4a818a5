"""One load balancer's life told in the log at INFO, with a real `amphorae up` (root):
created, a member down and back, deleted, each step one readable line on
``amphorae.events`` (and an event), each API call one access line, and no heartbeat
counter line while no heartbeat is refused. Deployment: tests/deployment.py on
198.18.148.0/24 + 198.18.149.0/24 (or the next pairs on other xdist workers).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
import requests

from tests import dataplane as dp
from tests.deployment import Deployment, deployment, eventually, per_worker

MARKER = secrets.token_hex(3)
LINE = re.compile(r"^\S+ \S+ \d+ (\w+) ([\w.]+): (.*)$")


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.148.0/24", "198.18.149.0/24")) as d:
        d.members.add("m1", 21)
        d.members.add("m2", 22)
        d.start("up")
        yield d


def lines(d: Deployment, logger: str) -> list[tuple[str, str]]:
    """(level, message) of ``logger``'s lines in the up log so far."""
    out = []
    for text in (d.state / "up.log").read_text(errors="replace").splitlines():
        found = LINE.match(text)
        if found and found.group(2) == logger:
            out.append((found.group(1), found.group(3)))
    return out


def told(d: Deployment, *wanted: tuple[str, str]) -> None:
    """Every (level, regular expression) matches one line of the story, in order."""
    story = lines(d, "amphorae.events")
    at = 0
    for level, pattern in wanted:
        while at < len(story) and not (story[at][0] == level
                                       and re.fullmatch(pattern, story[at][1])):
            at += 1
        assert at < len(story), f"no {level} line {pattern!r} in order in:\n" + \
            "\n".join(f"{lv} {msg}" for lv, msg in story)
        at += 1


def test_a_load_balancers_life_is_a_readable_story(up: Deployment) -> None:
    d = up
    m2 = f"{d.members.addresses['m2']}:{dp.HTTP.port}"
    lb = d.lb.create_load_balancer(
        name="web", vip_subnet_id=d.vip_subnet_id,
        listeners=[{"name": "http", "protocol": "HTTP", "protocol_port": 80,
                    "default_pool": {
                        "name": "pool1", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                        "healthmonitor": {"type": "HTTP", "delay": 1, "timeout": 1,
                                          "max_retries": 1, "max_retries_down": 1},
                        "members": [{"address": d.members.addresses[n],
                                     "protocol_port": dp.HTTP.port,
                                     "subnet_id": d.member_subnet_id}
                                    for n in ("m1", "m2")]}}])
    d.wait_lb(lb.id)
    web = re.escape(f"load balancer web ({lb.id})")
    online = (("INFO", rf"member {re.escape(m2)} of pool pool1 of {web} is ONLINE "
                       r"\(was \w+\)"),)
    eventually(lambda: told(d, *online), "m2 ONLINE told")
    d.members.stop("m2")
    try:
        eventually(lambda: told(d, *online, (
            "WARNING", rf"member {re.escape(m2)} of pool pool1 of {web} is ERROR "
                       r"\(was ONLINE\)"), (
            "WARNING", rf"{web} is DEGRADED \(was ONLINE\): member {re.escape(m2)} of "
                       r"pool pool1 is ERROR")), "m2 ERROR and the load balancer DEGRADED")
    finally:
        d.members.start("m2")
    eventually(lambda: told(d, ("INFO", rf"{web} is ONLINE \(was DEGRADED\)")), "ONLINE")
    d.lb.delete_load_balancer(lb.id, cascade=True)
    d.wait_gone(lb.id)
    eventually(lambda: told(d, (
        "INFO", rf"amphora [0-9a-f-]+ \(STANDALONE\) of {web} booted in [\d.]+ s"), (
        "INFO", rf"{web}: created the load balancer, listener http \(HTTP:80\), pool "
                r"pool1, (member [\d.:]+ of pool pool1, ){2}health monitor [0-9a-f-]+; "
                r"applied in [\d.]+ s, ACTIVE"),
        ("INFO", rf"amphora [0-9a-f-]+ of {web} removed"),
        ("INFO", rf"{web} deleted in [\d.]+ s")), "the whole story")
    # The same story through the events API, newest first.
    events = requests.get(f"{d.url}/v2/octavia/events", timeout=10,
                          params={"load_balancer_id": lb.id}).json()["events"]
    assert events[0]["kind"] == "CHANGE_APPLIED" and events[0]["message"].endswith(
        " s") and "deleted in" in events[0]["message"]
    assert {"AMPHORA_BOOTED", "AMPHORA_REMOVED", "MEMBER_STATUS", "POOL_STATUS",
            "LOADBALANCER_STATUS", "CHANGE_APPLIED"} <= {e["kind"] for e in events}
    # Every API call one access line; heartbeats flowing as they should: no INFO lines.
    access = [msg for _, msg in lines(d, "amphorae.api.access")]
    assert any(msg.startswith("POST /v2/lbaas/loadbalancers 201 ") for msg in access)
    assert any(msg.startswith(f"DELETE /v2/lbaas/loadbalancers/{lb.id}?cascade=") and
               " 204 " in msg for msg in access)
    assert [msg for level, msg in lines(d, "amphorae.health.service")
            if level == "INFO" and msg.startswith("heartbeats:")] == []
