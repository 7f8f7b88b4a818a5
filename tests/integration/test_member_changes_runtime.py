"""Member changes without a reload, under load (root): `amphorae up`, openstacksdk, one
SINGLE netns amphora, six member namespaces. Client threads send requests through the
VIP (each on a fresh connection, every one counted) while member changes go through the
API one at a time (add, remove, weight, disable, enable; each waited for until the load
balancer is ACTIVE again): no request fails and the same HAProxy process (its pid, from
its own ``show info``) serves before and after: a reload would have started a new one.
First, a disabled member drains: a request it holds (a POST whose body the client sends
seconds later) completes, and meanwhile it gets no new one.

Deployment: tests/deployment.py on 198.18.172.0/24 (VIPs) + 198.18.173.0/24 (members),
or the next pairs on other xdist workers.
"""

from __future__ import annotations

import collections
import http.client
import random
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from amphorae.agent.haproxy import serving_pid, unix_command
from amphorae.contract.layout import LbFiles
from amphorae.drivers.compute import amphora_boot as boot
from amphorae.drivers.compute import netns as compute
from tests import dataplane as dp
from tests.deployment import Deployment, deployment, eventually, per_worker

MARKER = secrets.token_hex(3)
MEMBERS = ("m1", "m2", "m3", "m4", "m5", "m6")
CHANGES = 200
CLIENTS = 3
PAUSE = 0.02  # between a client's requests: the load must not starve the control plane
HOLD = 3.0  # seconds the drained member's request stays in flight
SEED = random.randrange(2**32)


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.172.0/24", "198.18.173.0/24")) as d:
        for host, name in enumerate(MEMBERS, 21):
            d.members.add(name, host)
        d.start("up")
        yield d


@dataclass
class Load:
    """Client threads: GETs through the VIP, each on a fresh connection."""

    vip: str
    answers: list[tuple[float, str]] = field(default_factory=list)  # (sent at, member)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(CLIENTS)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                reply = dp.http_request(self.vip, 80, timeout=10)
                if reply.status != 200 or reply.text not in MEMBERS:
                    self.failures.append(f"{reply.status} {reply.text[:80]!r}")
                else:
                    self.answers.append((sent, reply.text))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            self._stop.wait(PAUSE)

    def since(self, moment: float) -> collections.Counter[str]:
        return collections.Counter(name for sent, name in list(self.answers) if sent > moment)


class HeldRequest:
    """A POST whose headers go at once and whose body goes on :meth:`release`: the member
    that got it holds the connection meanwhile (it reads the whole body first)."""

    def __init__(self, vip: str) -> None:
        self.body = b"held-body"
        self.conn = http.client.HTTPConnection(vip, 80, timeout=30)
        self.conn.putrequest("POST", "/")
        self.conn.putheader("Content-Length", str(len(self.body)))
        self.conn.putheader("Connection", "close")
        self.conn.endheaders()

    def release(self) -> tuple[int, str]:
        try:
            self.conn.send(self.body)
            reply = self.conn.getresponse()
            return reply.status, reply.read().decode()
        finally:
            self.conn.close()


class Amphora:
    """An amphora's HAProxy, seen from the host through its sockets."""

    def __init__(self, d: Deployment, lb_id: str, amp_id: str) -> None:
        folder = d.state / "amphorae" / compute.short_id(amp_id) / boot.AGENT_BASE
        self.files = LbFiles(folder / lb_id)
        self.log = folder.parent / f"{boot.AGENT_NAME}.log"

    def agent_log(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def serving_pid(self) -> int:
        """HAProxy's own pid: a reload starts a new process."""
        return serving_pid(self.files.stats_socket)

    def status(self, member_id: str) -> str | None:
        for row in unix_command(self.files.stats_socket, "show stat -1 4 -1").splitlines():
            fields = row.split(",")
            if len(fields) > 17 and fields[1] == member_id:
                return fields[17]
        return None


def amphorae_of(d: Deployment, lb_id: str) -> list[Amphora]:
    return [Amphora(d, lb_id, amp.id) for amp in d.lb.amphorae(loadbalancer_id=lb_id)]


@dataclass
class Pool:
    """The members the pool has, as the test changed them."""

    d: Deployment
    lb_id: str
    pool_id: str
    members: dict[str, Any]  # name -> openstacksdk member
    latencies: list[float] = field(default_factory=list)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)

    def change(self, kind: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        out = self.d.settle(self.lb_id, call, *args, **kwargs)
        self.latencies.append(time.monotonic() - started)
        self.kinds[kind] += 1
        return out

    def add(self, name: str, **kw: Any) -> None:
        self.members[name] = self.change(
            "add", self.d.lb.create_member, self.pool_id, name=name,
            address=self.d.members.addresses[name], protocol_port=dp.HTTP.port,
            subnet_id=self.d.member_subnet_id, **kw)

    def remove(self, name: str) -> None:
        member = self.members.pop(name)
        self.change("remove", self.d.lb.delete_member, member.id, self.pool_id)

    def update(self, kind: str, name: str, **kw: Any) -> None:
        self.members[name] = self.change(kind, self.d.lb.update_member,
                                         self.members[name].id, self.pool_id, **kw)

    def serving(self, but: str | None = None) -> int:
        return sum(1 for name, m in self.members.items()
                   if name != but and m.is_admin_state_up and m.weight > 0)

    def random_change(self, rng: random.Random) -> None:
        spare = [name for name in MEMBERS if name not in self.members]
        choices: list[tuple[str, str]] = [("add", name) for name in spare]
        for name, member in self.members.items():
            if self.serving(but=name) > 0:  # one member serves whatever happens
                choices.append(("remove", name))
                if member.is_admin_state_up:
                    choices.append(("disable", name))
            if not member.is_admin_state_up:
                choices.append(("enable", name))
            choices.append(("weight", name))
        kind, name = rng.choice(choices)
        if kind == "add":
            self.add(name, weight=rng.randint(1, 10))
        elif kind == "remove":
            self.remove(name)
        elif kind in ("disable", "enable"):
            self.update(kind, name, admin_state_up=kind == "enable")
        else:
            low = 0 if self.serving(but=name) > 0 else 1
            weight = rng.choice([w for w in range(low, 11) if w != self.members[name].weight])
            self.update("weight", name, weight=weight)


def test_member_changes_under_load_without_a_reload(up: Deployment) -> None:
    d = up
    rng = random.Random(SEED)
    lb = d.lb.create_load_balancer(
        vip_subnet_id=d.vip_subnet_id,
        listeners=[{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
            "name": "pool", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "tags": ["amphorae:drain_timeout=30"],
            "healthmonitor": {"type": "TCP", "delay": 1, "timeout": 1, "max_retries": 1,
                              "max_retries_down": 2},
            "members": [{"address": d.members.addresses[n], "protocol_port": dp.HTTP.port,
                         "subnet_id": d.member_subnet_id, "name": n,
                         "admin_state_up": n == "m1"} for n in ("m1", "m2")]}}])
    load: Load | None = None
    try:
        d.wait_lb(lb.id)
        eventually(lambda: dp.http_request(lb.vip_address, 80).text == "m1", "m1 serving")
        (amphora,) = amphorae_of(d, lb.id)
        (pool_id,) = [p.id for p in d.lb.pools(loadbalancer_id=lb.id)]
        pool = Pool(d, lb.id, pool_id, {m.name: m for m in d.lb.members(pool_id)})
        serving = amphora.serving_pid()
        load = Load(lb.vip_address)
        load.start()
        started = time.monotonic()

        # m1 alone serves: the held request is on m1. m2 comes in, m1 goes out (drains).
        held = HeldRequest(lb.vip_address)
        eventually(lambda: amphora.status(pool.members["m1"].id) == "UP", "m1 UP")
        pool.update("enable", "m2", admin_state_up=True)
        pool.update("disable", "m1", admin_state_up=False)
        drained_at = time.monotonic()
        assert amphora.status(pool.members["m1"].id) == "DRAIN"
        time.sleep(HOLD)
        assert held.release() == (200, "m1")  # completed, in flight all along
        during = load.since(drained_at)
        assert during["m1"] == 0 and during["m2"] > 0, during
        eventually(lambda: amphora.status(pool.members["m1"].id) == "MAINT",
                   "m1 in maintenance once its request ended", timeout=5)

        while sum(pool.kinds.values()) < CHANGES:
            pool.random_change(rng)
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # requests sent after the last change
        load.stop()

        total = len(load.answers) + len(load.failures)
        print(f"\n{CHANGES} member changes under load (seed {SEED}) in {elapsed:.1f} s: "
              f"{dict(pool.kinds)}; API call to ACTIVE median "
              f"{statistics.median(pool.latencies) * 1000:.0f} ms, max "
              f"{max(pool.latencies) * 1000:.0f} ms; {total} requests, "
              f"{len(load.failures)} failed; HAProxy pid {serving} -> {amphora.serving_pid()}")
        assert load.failures == [], load.failures[:5]
        assert total > CHANGES
        assert amphora.serving_pid() == serving, amphora.agent_log()  # no reload
        assert {kind for kind in pool.kinds} >= {"add", "remove", "weight", "disable",
                                                  "enable"}
        # What serves is what the API says: every serving member answers, no other.
        weights = {name: m.weight for name, m in pool.members.items()
                   if m.is_admin_state_up and m.weight > 0}
        eventually(lambda: set(load_answers(lb.vip_address, sum(weights.values())))
                   == set(weights), "the pool's serving members answering")
    finally:
        if load is not None:
            load.stop()
        d.lb.delete_load_balancer(lb.id, cascade=True)
        d.wait_gone(lb.id)


def load_answers(vip: str, count: int) -> list[str]:
    return [dp.http_request(vip, 80).text for _ in range(count)]
