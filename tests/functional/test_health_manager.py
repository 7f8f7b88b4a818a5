"""The health manager process (`amphorae health`) on SQLite and PostgreSQL, fed signed
heartbeats over loopback UDP by the test: statuses roll up as Octavia's do, statistics
add up, forged and replayed heartbeats change nothing, a stale amphora is failed over
and the failover_threshold circuit breaker stops failovers when too many go stale."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from amphorae.common import heartbeat as codec
from amphorae.db import engine
from amphorae.db import models as m
from tests import servers

KEY = "functional-test-heartbeat-key"
MakeTree = Callable[..., dict[str, Any]]
TIMEOUT = 2  # heartbeat_timeout of this module's health manager


class HM:
    def __init__(self, url: str, port: int, log: Path) -> None:
        self.url = url
        self.port = port
        self.log = log
        self.boot = uuid.uuid4().hex
        self.t0 = time.time()

    def send(self, amp_id: str, seq: int, listeners: dict, pools: dict,
             key: str = KEY) -> bytes:
        message = codec.build_message(amp_id, seq, listeners, pools, boot_id=self.boot,
                                      started_at=self.t0)
        datagram = codec.encode(message, key)
        self.send_raw(datagram)
        return datagram

    def send_raw(self, datagram: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(datagram, ("127.0.0.1", self.port))

    def row(self, model: type, object_id: str) -> Any:
        with engine.transaction(write=False, url=self.url) as session:
            row = session.get(model, object_id)
            if row is not None:
                session.expunge(row)
            return row


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hm(request: pytest.FixtureRequest,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[HM]:
    port = servers.free_port()
    extra = f"""
[health_manager]
bind_ip = 127.0.0.1
bind_port = {port}
heartbeat_key = {KEY}
heartbeat_interval = 1
heartbeat_timeout = {TIMEOUT}
health_check_interval = 1
failover_threshold = 2
"""
    state = tmp_path_factory.mktemp(f"hm-{request.param}")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api(request.param, state, f"hm_{worker}", extra) as server:
        log = open(state / "health.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([str(servers.VENV_BIN / "amphorae"), "health",
                                 "--config-file", str(server.config_file)],
                                stdout=log, stderr=subprocess.STDOUT)
        manager = HM(server.db_url, port, state / "health.log")
        try:
            wait(manager, lambda: "receiving heartbeats" in manager.log.read_text(),
                 "the health manager listening", timeout=30)
            yield manager
        finally:
            proc.terminate()
            proc.wait(15)
            log.close()


@pytest.fixture
def make_tree(hm: HM) -> Iterator[MakeTree]:
    """Trees for one test; their amphorae are deleted afterwards, so that a silent
    amphora of one test does not count as stale in the next."""
    made: list[str] = []

    def make(amphorae: int = 1) -> dict[str, Any]:
        t = tree(hm.url, amphorae)
        made.extend(t["amphorae"])
        return t

    yield make
    with engine.transaction(url=hm.url) as session:
        session.execute(update(m.Amphora).where(m.Amphora.id.in_(made))
                        .values(status="DELETED"))
        session.execute(delete(m.AmphoraHealth).where(m.AmphoraHealth.amphora_id.in_(made)))


def tree(url: str, amphorae: int = 1) -> dict[str, Any]:
    """An ACTIVE load balancer with one listener, one pool, two members and amphorae."""
    ids = {k: str(uuid.uuid4()) for k in ("lb", "listener", "pool", "m1", "m2")}
    amps = [str(uuid.uuid4()) for _ in range(amphorae)]
    with engine.transaction(url=url) as session:
        session.add(m.LoadBalancer(id=ids["lb"], project_id="p", provisioning_status="ACTIVE",
                                   operating_status="OFFLINE", enabled=True,
                                   topology="SINGLE"))
        session.flush()
        session.add(m.Listener(id=ids["listener"], load_balancer_id=ids["lb"],
                               protocol="HTTP", protocol_port=80, enabled=True,
                               provisioning_status="ACTIVE", operating_status="OFFLINE"))
        session.add(m.Pool(id=ids["pool"], load_balancer_id=ids["lb"], protocol="HTTP",
                           lb_algorithm="ROUND_ROBIN", enabled=True,
                           provisioning_status="ACTIVE", operating_status="OFFLINE"))
        session.flush()
        for port, name in enumerate(("m1", "m2"), start=8001):
            session.add(m.Member(id=ids[name], pool_id=ids["pool"], ip_address="192.0.2.1",
                                 protocol_port=port, enabled=True,
                                 provisioning_status="ACTIVE",
                                 operating_status="OFFLINE"))
        for amp_id in amps:
            session.add(m.Amphora(id=amp_id, load_balancer_id=ids["lb"], status="ALLOCATED",
                                  role="STANDALONE"))
    return {**ids, "amphorae": amps}


def report(t: dict[str, Any], m2: str = "UP", rx: int = 0) -> tuple[dict, dict]:
    listeners = {t["listener"]: {"status": "OPEN", "stats": {
        "tx": 2 * rx, "rx": rx, "conns": 1, "totconns": 1 if rx else 0, "ereq": 0}}}
    pools = {f"{t['pool']}:{t['listener']}": {
        "status": "UP", "members": {t["m1"]: "UP", t["m2"]: m2}}}
    return listeners, pools


def statuses(hm: HM, t: dict[str, Any]) -> tuple[str, ...]:
    return tuple(hm.row(model, t[key]).operating_status for model, key in (
        (m.LoadBalancer, "lb"), (m.Listener, "listener"), (m.Pool, "pool"),
        (m.Member, "m1"), (m.Member, "m2")))


def wait(hm: HM, check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}; health manager log:\n" + \
            hm.log.read_text()[-3000:]
        time.sleep(0.05)


def test_statuses_roll_up_and_statistics_add_up(hm: HM, make_tree: MakeTree) -> None:
    t = make_tree()
    amp = t["amphorae"][0]
    hm.send(amp, 1, *report(t, rx=100))
    wait(hm, lambda: statuses(hm, t) == ("ONLINE",) * 5, "all ONLINE")
    hm.send(amp, 2, *report(t, m2="DOWN", rx=50))
    wait(hm, lambda: statuses(hm, t) == ("DEGRADED", "ONLINE", "DEGRADED", "ONLINE", "ERROR"),
         "m2 ERROR, pool and load balancer DEGRADED")
    hm.send(amp, 3, *report(t, m2="DRAIN"))
    wait(hm, lambda: statuses(hm, t)[4] == "DRAINING", "m2 DRAINING")
    hm.send(amp, 4, {}, {})  # HAProxy answered nothing: listener ERROR, the rest OFFLINE
    wait(hm, lambda: statuses(hm, t) == ("ONLINE", "ERROR", "OFFLINE", "OFFLINE", "OFFLINE"),
         "nothing reported")
    stats = hm.row(m.ListenerStatistics, (t["listener"], amp))
    assert (stats.bytes_in, stats.bytes_out, stats.total_connections) == (150, 300, 2)
    assert hm.row(m.AmphoraHealth, amp) is not None


def test_statuses_hold_while_the_load_balancer_is_pending(hm: HM,
                                                          make_tree: MakeTree) -> None:
    """A failover's new amphora reports nothing until the worker configured it, while
    the load balancer is PENDING_UPDATE: its heartbeats are taken (health refreshed) but
    change no status; once the load balancer is ACTIVE again they do."""
    t = make_tree()
    amp = t["amphorae"][0]
    hm.send(amp, 1, *report(t))
    wait(hm, lambda: statuses(hm, t) == ("ONLINE",) * 5, "all ONLINE")
    _set_provisioning(hm, t["lb"], "PENDING_UPDATE")
    seen = hm.row(m.AmphoraHealth, amp).last_update
    hm.send(amp, 2, {}, {})
    wait(hm, lambda: hm.row(m.AmphoraHealth, amp).last_update > seen, "heartbeat taken")
    assert statuses(hm, t) == ("ONLINE",) * 5
    _set_provisioning(hm, t["lb"], "ACTIVE")
    hm.send(amp, 3, {}, {})
    wait(hm, lambda: statuses(hm, t) == ("ONLINE", "ERROR", "OFFLINE", "OFFLINE", "OFFLINE"),
         "nothing reported, once ACTIVE")


def _set_provisioning(hm: HM, lb_id: str, status: str) -> None:
    with engine.transaction(url=hm.url) as session:
        session.execute(update(m.LoadBalancer).where(m.LoadBalancer.id == lb_id)
                        .values(provisioning_status=status))


def test_forged_and_replayed_heartbeats_change_nothing(hm: HM, make_tree: MakeTree) -> None:
    t = make_tree()
    amp = t["amphorae"][0]
    old = hm.send(amp, 10, *report(t, m2="DOWN"))
    hm.send(amp, 11, *report(t))
    wait(hm, lambda: statuses(hm, t) == ("ONLINE",) * 5, "all ONLINE")
    before = hm.row(m.AmphoraHealth, amp).last_update
    hm.send_raw(old)  # a replay of seq 10: m2 must not go back to ERROR
    hm.send(amp, 12, *report(t, m2="DOWN"), key="not-the-key")  # forged
    hm.send_raw(b"x" * 200)  # unsigned garbage
    time.sleep(1.0)  # several flushes
    assert statuses(hm, t) == ("ONLINE",) * 5
    assert hm.row(m.AmphoraHealth, amp).last_update == before


def test_a_stale_amphora_is_failed_over(hm: HM, make_tree: MakeTree) -> None:
    t = make_tree()
    amp = t["amphorae"][0]
    hm.send(amp, 1, *report(t))
    wait(hm, lambda: hm.row(m.AmphoraHealth, amp) is not None, "health row")
    # No more heartbeats: after heartbeat_timeout one failover job, the LB PENDING_UPDATE.
    wait(hm, lambda: _jobs(hm.url, t["lb"]) == [("failover_amphora", amp)], "failover job",
         timeout=TIMEOUT + 5)
    assert hm.row(m.LoadBalancer, t["lb"]).provisioning_status == "PENDING_UPDATE"
    assert hm.row(m.AmphoraHealth, amp).busy is True
    time.sleep(1.5)  # busy: not failed over twice
    assert _jobs(hm.url, t["lb"]) == [("failover_amphora", amp)]


def test_the_threshold_stops_failovers_when_many_go_stale_at_once(
        hm: HM, make_tree: MakeTree) -> None:
    t = make_tree(amphorae=2)  # the module's failover_threshold is 2
    for amp in t["amphorae"]:
        hm.send(amp, 1, *report(t))
    wait(hm, lambda: all(hm.row(m.AmphoraHealth, a) for a in t["amphorae"]), "health rows")
    wait(hm, lambda: {hm.row(m.Amphora, a).status for a in t["amphorae"]}
         == {"FAILOVER_STOPPED"}, "circuit breaker", timeout=TIMEOUT + 5)
    assert _jobs(hm.url, t["lb"]) == []
    assert hm.row(m.LoadBalancer, t["lb"]).provisioning_status == "ACTIVE"
    hm.send(t["amphorae"][0], 2, *report(t))  # one comes back
    wait(hm, lambda: hm.row(m.Amphora, t["amphorae"][0]).status == "ALLOCATED", "back")


def _jobs(url: str, lb_id: str) -> list[tuple[str, str | None]]:
    with engine.transaction(write=False, url=url) as session:
        return [(j.action, j.amphora_id) for j in session.scalars(
            select(m.Job).where(m.Job.load_balancer_id == lb_id))]
