"""PostgreSQL restarted under a running deployment.

`amphorae up` (API process, worker, health manager, housekeeping) with the no-op drivers
on a private PostgreSQL cluster (tests/pgcluster.py; the shared server is never
touched), amphorae reporting heartbeats over loopback UDP. The server is killed
(``pg_ctl stop -m immediate``) right after a burst of creates and brought back some
heartbeat timeouts later. Meanwhile the API answers every call with a 503 in Octavia's
error body; afterwards, with no process restarted, the API serves again, every load
balancer written before or after reaches ACTIVE, nothing refused was written, and no
amphora was failed over for heartbeats lost in the outage, while one that really falls
silent afterwards still is.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select, update

from amphorae.common import heartbeat as codec
from amphorae.db import engine
from amphorae.db import models as m
from tests import pgcluster, servers

KEY = "outage-test-heartbeat-key"
TIMEOUT = 4  # heartbeat_timeout
OUTAGE = 2 * TIMEOUT  # seconds the server stays down
LB_PATH = "/v2/lbaas/loadbalancers"


class Deployment:
    def __init__(self, pg: pgcluster.Cluster, server: servers.Server, hm_port: int,
                 log: Path) -> None:
        self.pg = pg
        self.server = server
        self.api = servers.Client(server)
        self.hm_port = hm_port
        self.log = log

    @property
    def db_url(self) -> str:
        return self.server.db_url

    def logs(self) -> str:
        return (f"--- amphorae up:\n{self.log.read_text(errors='replace')[-6000:]}\n"
                f"--- postgres:\n{self.pg.log_tail()}")

    def wait(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"{what}\n{self.logs()}"
            time.sleep(0.1)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    hm_port = servers.free_port()
    extra = f"""
[controller_worker]
compute_driver = compute_noop_driver
network_driver = network_noop_driver
amphora_driver = amphora_noop_driver
job_lease_seconds = 3

[house_keeping]
cleanup_interval = 1

[health_manager]
bind_ip = 127.0.0.1
bind_port = {hm_port}
heartbeat_key = {KEY}
heartbeat_interval = 1
heartbeat_timeout = {TIMEOUT}
health_check_interval = 1
"""
    with pgcluster.cluster() as pg:
        db_url = pg.create_database("amphorae")
        port = servers.free_port()
        conf = servers.write_config(tmp_path, port, db_url, extra)
        servers.run_cli("db", "upgrade", config_file=conf)
        log_path = tmp_path / "up.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(servers.VENV_BIN / "amphorae"), "up", "--config-file", str(conf)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            server = servers.Server(f"http://127.0.0.1:{port}", "postgresql", db_url, conf,
                                    proc)
            dep = Deployment(pg, server, hm_port, log_path)
            dep.wait(lambda: _answers(dep.server.url), "the API did not come up", 60)
            yield dep
        finally:
            servers.stop_group(proc, 20)  # `up` and its API child
            engine.get_engine(db_url).dispose()


def _answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url + LB_PATH, timeout=2).status_code == 200
    return False


class Heartbeats:
    """Sends every ``heartbeat_interval`` (1 s) a heartbeat for each amphora in
    ``amphorae`` (as their agents would: they know nothing of the database), until
    stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.amphorae: set[str] = set()
        self.stopping = threading.Event()
        self.boot = uuid.uuid4().hex
        self.started = time.time()
        self.next = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def pause(self, seconds: float) -> None:
        """The next heartbeats come ``seconds`` from now (a heartbeat interval that
        happens to end late after the outage)."""
        self.next = time.monotonic() + seconds

    def _run(self) -> None:
        seq = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not self.stopping.wait(0.05):
                if time.monotonic() < self.next:
                    continue
                self.next = time.monotonic() + 1.0
                seq += 1
                for amp in list(self.amphorae):
                    message = codec.build_message(amp, seq, {}, {}, boot_id=self.boot,
                                                  started_at=self.started)
                    sock.sendto(codec.encode(message, KEY), ("127.0.0.1", self.port))

    def __enter__(self) -> Heartbeats:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(5)


class Poster:
    """Creates load balancers back to back from a thread, recording each answer."""

    def __init__(self, api: servers.Client) -> None:
        self.api = api
        self.answers: list[tuple[str, int, Any]] = []  # (name, status, body)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            name = f"steady-{len(self.answers)}"
            status, body = self.api.post(LB_PATH, {"loadbalancer": {
                "name": name, "vip_subnet_id": str(uuid.uuid4())}})
            self.answers.append((name, status, body))
            time.sleep(0.1)

    def __enter__(self) -> Poster:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(35)


def create(api: servers.Client, name: str, tree: bool = False) -> str:
    body: dict[str, Any] = {"name": name, "vip_subnet_id": str(uuid.uuid4())}
    if tree:
        body["listeners"] = [{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
            "name": "pool", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "members": [
                {"address": "203.0.113.5", "protocol_port": 8080}]}}]
    status, out = api.post(LB_PATH, {"loadbalancer": body})
    assert status == 201, out
    return str(out["loadbalancer"]["id"])


def load_balancers(url: str) -> dict[str, tuple[str, str]]:
    """name -> (id, provisioning status) of every load balancer not DELETED."""
    with engine.transaction(write=False, url=url) as session:
        return {lb.name: (lb.id, lb.provisioning_status) for lb in session.scalars(
            select(m.LoadBalancer).where(m.LoadBalancer.provisioning_status != "DELETED"))}


def amphorae(url: str, lb_ids: set[str]) -> dict[str, tuple[str, str]]:
    """amphora id -> (load balancer id, status) of the given load balancers."""
    with engine.transaction(write=False, url=url) as session:
        return {a.id: (a.load_balancer_id, a.status) for a in session.scalars(
            select(m.Amphora).where(m.Amphora.load_balancer_id.in_(lb_ids)))}


def count(url: str, model: type) -> int:
    with engine.transaction(write=False, url=url) as session:
        return len(session.scalars(select(model)).all())


def assert_unavailable(resp: requests.Response) -> None:
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert "Traceback" not in resp.text
    assert resp.headers.get("Retry-After")
    body = resp.json()
    assert body["faultcode"] == "Server" and body["debuginfo"] is None
    assert "database is unavailable" in body["faultstring"]


def test_postgresql_restart_under_load(deployment: Deployment) -> None:
    dep, api = deployment, deployment.api
    up_pid = dep.server.process.pid
    steady = {create(api, f"before-{i}") for i in range(3)}
    dep.wait(lambda: {s for _, s in load_balancers(dep.db_url).values()} == {"ACTIVE"},
             "the first load balancers did not become ACTIVE", 30)
    with Heartbeats(dep.hm_port) as beats:
        beats.amphorae |= set(amphorae(dep.db_url, steady))
        assert len(beats.amphorae) == 3
        dep.wait(lambda: count(dep.db_url, m.AmphoraHealth) == 3, "no health rows", 10)

        with Poster(api) as poster:
            burst = [create(api, f"burst-{i}", tree=True) for i in range(6)]
            dep.pg.stop("immediate")  # while the worker has jobs of the burst to do
            down_at = time.monotonic()
            posts_before = len(poster.answers)
            http = api.http
            lb_id = burst[0]
            for method, path, body in (
                    ("GET", LB_PATH, None), ("GET", f"{LB_PATH}/{lb_id}", None),
                    ("GET", f"{LB_PATH}/{lb_id}/status", None),
                    ("GET", "/v2/octavia/amphorae", None),
                    ("PUT", f"{LB_PATH}/{lb_id}", {"loadbalancer": {"name": "renamed"}}),
                    ("DELETE", f"{LB_PATH}/{lb_id}", None),
                    ("POST", LB_PATH, {"loadbalancer": {
                        "name": "refused", "vip_subnet_id": str(uuid.uuid4())}})):
                assert_unavailable(http.request(method, api.url + path, json=body,
                                                timeout=30))
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
            assert len(poster.answers) > posts_before  # it kept posting meanwhile
            assert dep.server.process.poll() is None
            dep.pg.start()
            # Heartbeats stop for half a timeout after the restart: within the grace
            # period, so no failover, though every stamp is older than the timeout.
            beats.pause(TIMEOUT / 2)
            dep.wait(lambda: _answers(dep.server.url), "the API did not come back", 30)
            time.sleep(1)  # a few creates after the restart too

        assert dep.server.process.poll() is None and dep.server.process.pid == up_pid
        statuses = {status for _, status, _ in poster.answers}
        assert statuses <= {201, 503}, [a for a in poster.answers if a[0] not in (201, 503)]
        assert {201, 503} <= statuses
        after = create(api, "after")

        # Every accepted write is carried out; nothing refused was written.
        accepted = {name for name, status, _ in poster.answers if status == 201}
        refused = {name for name, status, _ in poster.answers if status == 503}
        lbs = load_balancers(dep.db_url)
        assert "refused" not in lbs and "renamed" not in lbs
        assert accepted <= set(lbs)
        # A create refused while its commit was on the wire may have been written (the
        # answer, not the commit, was lost); none was refused while the server was down.
        assert len(refused & set(lbs)) <= 1
        dep.wait(lambda: {s for _, s in load_balancers(dep.db_url).values()} == {"ACTIVE"},
                 "load balancers left pending after the restart", 60)
        assert {lb_id for lb_id, _ in load_balancers(dep.db_url).values()} >= {
            *steady, *burst, after}
        dep.wait(lambda: count(dep.db_url, m.Job) == 0, "jobs left", 20)

        # Housekeeping sweeps again: a load balancer pending with no job is picked up.
        with engine.transaction(url=dep.db_url) as session:
            session.execute(update(m.LoadBalancer).where(m.LoadBalancer.id == after)
                            .values(provisioning_status="PENDING_UPDATE"))
        dep.wait(lambda: load_balancers(dep.db_url)["after"][1] == "ACTIVE",
                 "housekeeping did not sweep after the restart", 20)
        assert "pending with no job: enqueued again" in dep.log.read_text()

        # No amphora was failed over for the heartbeats the health manager lost.
        amps = amphorae(dep.db_url, steady)
        assert set(amps) == beats.amphorae
        assert {s for _, s in amps.values()} == {"ALLOCATED"}
        assert "sent no heartbeat" not in dep.log.read_text()

        # One that really falls silent is, once the grace period is over.
        silent = sorted(beats.amphorae)[0]
        beats.amphorae.discard(silent)
        dep.wait(lambda: amphorae(dep.db_url, steady)[silent][1] == "DELETED",
                 "the silent amphora was not failed over", 4 * TIMEOUT + 10)
        replaced = amphorae(dep.db_url, steady)
        assert sorted(s for _, s in replaced.values()) == ["ALLOCATED"] * 3 + ["DELETED"]
        assert f"{silent} of load balancer" in dep.log.read_text()


def test_a_locked_sqlite_database_is_a_503_and_nothing_is_written(tmp_path: Path) -> None:
    """SQLite's outage: another writer holds the lock past the busy timeout."""
    extra = "[database]\nsqlite_busy_timeout = 200\n"
    with servers.running_api("sqlite", tmp_path, "locked", extra) as server:
        api = servers.Client(server)
        holder = sqlite3.connect(server.db_url.split(":///", 1)[1], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            assert_unavailable(api.http.post(api.url + LB_PATH, json={"loadbalancer": {
                "name": "refused", "vip_subnet_id": servers.PUBLIC_SUBNET}}, timeout=30))
            status, body = api.get(LB_PATH)  # readers are not blocked by a writer
            assert status == 200 and body["loadbalancers"] == []
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        lb_id = api.create_lb(name="accepted")["id"]
        _, body = api.get(LB_PATH)
        assert [lb["id"] for lb in body["loadbalancers"]] == [lb_id]
