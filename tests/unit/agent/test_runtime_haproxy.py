"""The agent's runtime updates against a real HAProxy on loopback: member changes without a
reload, draining (an in-flight request completes, the timeout cuts), the fallback to a
reload, and a server-state file that a restart agrees with."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amphorae.agent import haproxy as hap
from amphorae.agent.api import max_fds
from amphorae.contract import model
from amphorae.render import haproxy as render
from tests.servers import free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SLOW = 2.0  # seconds a member takes to answer /slow
FD_LIMIT = min(max_fds(), 20000) if max_fds() > 0 else 20000
pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="needs haproxy")


class Member:
    """An HTTP member on loopback answering its name (``/slow``: after SLOW seconds)."""

    def __init__(self, name: str) -> None:
        self.name = name
        body = name.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/slow":
                    time.sleep(SLOW)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.id = str(uuid.uuid4())
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Lb:
    def __init__(self, sup: hap.Supervisor, members: dict[str, Member]) -> None:
        self.sup = sup
        self.members = members
        self.id = str(uuid.uuid4())
        self.port = free_port()
        self.listener, self.pool = str(uuid.uuid4()), str(uuid.uuid4())
        self.files = sup.files(self.id)

    def render(self, *members: model.Member, **pool: object) -> bytes:
        lb = model.LoadBalancer(
            id=self.id, project_id="amph-test", vips=("127.0.0.1",),
            listeners=(model.Listener(id=self.listener, protocol="HTTP",
                                      protocol_port=self.port, default_pool_id=self.pool),),
            pools=(model.Pool(**{"id": self.pool, "protocol": "HTTP",  # type: ignore[arg-type]
                                 "lb_algorithm": "ROUND_ROBIN", "members": members,
                                 **pool}),))
        # A descriptor limit that binds, so that maxconn follows the member count.
        settings = render.HaproxySettings(hard_stop_after=5, fd_limit=FD_LIMIT)
        return render.render(lb, settings, render.AmphoraPaths.for_lb(
            str(self.sup.base), self.id)).encode()

    def member(self, name: str, **kw: object) -> model.Member:
        m = self.members[name]
        return model.Member(id=m.id, address="127.0.0.1", protocol_port=m.port,
                            **kw)  # type: ignore[arg-type]

    def apply(self, *members: model.Member, **pool: object) -> str:
        self.sup.install_config(self.id, self.render(*members, **pool))
        return self.sup.reload(self.id)

    def get(self, path: str = "/", timeout: float = 5.0) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def answers(self, count: int = 12) -> set[str]:
        return {self.get() for _ in range(count)}

    def serving_pid(self) -> int:
        """HAProxy's own pid: a reload starts a new process."""
        return hap.serving_pid(self.files.stats_socket)

    def servers(self) -> dict[str, str]:
        """Server id -> HAProxy's status, from ``show stat``."""
        rows = hap.unix_command(self.files.stats_socket, "show stat -1 4 -1").splitlines()
        found = {}
        for row in rows[1:]:
            fields = row.split(",")
            if len(fields) > 17:
                found[fields[1]] = fields[17]
        return found


@pytest.fixture
def lb() -> Iterator[Lb]:
    base = Path(tempfile.mkdtemp(prefix="amph-runtime-"))
    members = {name: Member(name) for name in ("a", "b", "c")}
    sup = hap.Supervisor(base, HAPROXY, start_timeout=10, stop_timeout=2)
    handle = Lb(sup, members)
    try:
        yield handle
    finally:
        with contextlib.suppress(Exception):
            sup.delete(handle.id)
        for member in members.values():
            member.close()
        shutil.rmtree(base, ignore_errors=True)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)


def in_flight(lb: Lb, results: list[str]) -> threading.Thread:
    def slow() -> None:
        try:
            results.append(lb.get("/slow", timeout=10))
        except (OSError, http.client.HTTPException) as exc:
            results.append(f"failed: {exc!r}")

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    return thread


def test_member_changes_go_at_runtime(lb: Lb) -> None:
    a, b, c = (lb.members[n] for n in "abc")
    assert lb.apply(lb.member("a")) == "started"
    serving = lb.serving_pid()
    assert lb.answers() == {"a"}

    assert lb.apply(lb.member("a"), lb.member("b")).startswith("updated at runtime")
    assert lb.answers() == {"a", "b"}
    assert lb.apply(lb.member("a", weight=0), lb.member("b")).startswith("updated at runtime")
    assert lb.answers() == {"b"}
    assert lb.apply(lb.member("a"), lb.member("b", enabled=False), lb.member("c"),
                    drain_timeout=0).startswith("updated at runtime")
    wait_for(lambda: lb.servers().get(b.id) == "MAINT", "b in maintenance")
    assert lb.answers() == {"a", "c"}
    assert lb.apply(lb.member("b"), lb.member("c"), drain_timeout=0).startswith(
        "updated at runtime")
    wait_for(lambda: a.id not in lb.servers(), "a deleted")
    assert lb.answers() == {"b", "c"}
    assert lb.serving_pid() == serving  # no reload
    # What runs is what the controller sent, and the server state a restart would load
    # knows the servers added at runtime.
    assert lb.sup.running_config(lb.id) == lb.files.config.read_bytes()
    assert c.id in lb.files.server_state.read_text()


def test_stick_tables_and_counters_survive_member_changes(lb: Lb) -> None:
    a = lb.members["a"]
    sticky = {"session_persistence": model.SessionPersistence(type="SOURCE_IP")}
    lb.apply(lb.member("a"), **sticky)
    assert lb.answers(5) == {"a"}
    backend = f"{lb.pool}:{lb.listener}"
    table = hap.unix_command(lb.files.stats_socket, f"show table {backend}")
    assert "used:1\n" in table and f"server_key={a.id}" in table
    served = _stat(lb, a.id, "stot")
    assert served >= 5
    assert lb.apply(lb.member("a"), lb.member("b"), lb.member("c"), **sticky).startswith(
        "updated at runtime")
    # The client stays on a (its stick-table entry is still there); a's counter goes on.
    assert lb.answers(6) == {"a"}
    assert _stat(lb, a.id, "stot") == served + 6
    assert hap.unix_command(lb.files.stats_socket, f"show table {backend}") == table


def _stat(lb: Lb, server: str, column: str) -> int:
    rows = hap.unix_command(lb.files.stats_socket, "show stat -1 4 -1").splitlines()
    header = rows[0].lstrip("# ").split(",")
    for row in rows[1:]:
        fields = row.split(",")
        if len(fields) == len(header) and fields[1] == server:
            return int(fields[header.index(column)] or 0)
    raise AssertionError(f"no server {server}")


def test_a_removed_member_drains_its_requests(lb: Lb) -> None:
    b = lb.members["b"]
    lb.apply(lb.member("b"), drain_timeout=30)
    results: list[str] = []
    thread = in_flight(lb, results)
    wait_for(lambda: _sessions(lb, b.id) > 0, "slow request")
    started = time.monotonic()
    assert lb.apply(lb.member("a"), drain_timeout=30).startswith("updated at runtime")
    assert lb.servers()[b.id] == "DRAIN"
    assert lb.answers() == {"a"}  # no new request for b
    thread.join(10)
    assert results == ["b"]
    # Deleted once its last session ended, well before the timeout.
    wait_for(lambda: b.id not in lb.servers(), "b deleted")
    assert time.monotonic() - started < SLOW + 2
    assert lb.sup.drains.draining(lb.id) == []


def test_the_drain_timeout_cuts(lb: Lb) -> None:
    b = lb.members["b"]
    lb.apply(lb.member("a", enabled=False), lb.member("b"), drain_timeout=1)
    results: list[str] = []
    thread = in_flight(lb, results)
    wait_for(lambda: _sessions(lb, b.id) > 0, "slow request")
    started = time.monotonic()
    lb.apply(lb.member("a"), lb.member("b", enabled=False), drain_timeout=1)
    thread.join(10)
    # Cut at the timeout: HAProxy answers 502 for the response b never finished.
    assert time.monotonic() - started < SLOW
    assert len(results) == 1 and "502 Bad Gateway" in results[0]
    assert lb.servers()[b.id] == "MAINT"


def test_a_member_re_added_while_it_drains(lb: Lb) -> None:
    b = lb.members["b"]
    lb.apply(lb.member("a"), lb.member("b"), drain_timeout=30)
    results: list[str] = []
    thread = in_flight(lb, results)
    wait_for(lambda: _sessions(lb, b.id) > 0 or not thread.is_alive(), "slow request")
    lb.apply(lb.member("a"), drain_timeout=30)
    assert lb.apply(lb.member("a"), lb.member("b"), drain_timeout=30).startswith(
        "updated at runtime")
    assert lb.servers()[b.id] == "no check"  # serving (a server without checks)
    assert lb.answers() == {"a", "b"}
    assert lb.sup.drains.draining(lb.id) == []
    thread.join(10)


def test_a_raised_maxconn_stops_at_the_started_one(lb: Lb) -> None:
    """The process maxconn follows the member count under the descriptor limit; HAProxy
    refuses to raise it past the value it started with, so the raise stops there."""
    lb.apply(lb.member("a"), lb.member("b"), drain_timeout=0)
    started = _info(lb)["Maxconn"]
    fewer = lb.render(lb.member("a"), drain_timeout=0)
    assert f"maxconn {started}" not in fewer.decode()  # the config raises it
    lb.sup.install_config(lb.id, fewer)
    assert lb.sup.reload(lb.id).startswith("updated at runtime")
    assert _info(lb)["Maxconn"] == _info(lb)["Hard_maxconn"] == started


def _info(lb: Lb) -> dict[str, str]:
    return hap.parse_info(hap.unix_command(lb.files.stats_socket, "show info"))


def test_a_refused_command_falls_back_to_a_reload(lb: Lb) -> None:
    b = lb.members["b"]
    lb.apply(lb.member("a"), lb.member("b"))
    serving = lb.serving_pid()
    # Someone deleted b behind the agent's back: its weight change is refused.
    for command in (f"set server {lb.pool}:{lb.listener}/{b.id} state maint",
                    f"del server {lb.pool}:{lb.listener}/{b.id}"):
        hap.unix_command(lb.files.stats_socket, command)
    assert lb.apply(lb.member("a"), lb.member("b", weight=2)) == "reloaded"
    assert lb.serving_pid() != serving  # reloaded
    assert lb.answers() == {"a", "b"}


def test_a_restart_agrees_with_runtime_admin_state(lb: Lb) -> None:
    """Re-enabled at runtime after a reload had it in maintenance: a restart that loads
    the server-state file must not bring the maintenance back."""
    b = lb.members["b"]
    hm = model.HealthMonitor(id="hm", type="TCP", delay=1, timeout=1, max_retries=1)
    lb.apply(lb.member("a"), lb.member("b"), health_monitor=hm, drain_timeout=0)
    lb.apply(lb.member("a"), lb.member("b", enabled=False), health_monitor=hm,
             drain_timeout=0)
    wait_for(lambda: lb.servers().get(b.id) == "MAINT", "b in maintenance")
    # A structural change reloads, saving b's maintenance in the state file.
    assert lb.apply(lb.member("a"), lb.member("b", enabled=False), health_monitor=hm,
                    drain_timeout=0, lb_algorithm="LEAST_CONNECTIONS") == "reloaded"
    assert lb.apply(lb.member("a"), lb.member("b"), health_monitor=hm, drain_timeout=0,
                    lb_algorithm="LEAST_CONNECTIONS").startswith("updated at runtime")
    lb.sup.stop(lb.id)
    assert lb.sup.start(lb.id) == "started"
    wait_for(lambda: lb.servers().get(b.id) == "UP", "b up after the restart")


def _sessions(lb: Lb, server: str) -> int:
    rows = hap.unix_command(lb.files.stats_socket, "show stat -1 4 -1").splitlines()
    for row in rows[1:]:
        fields = row.split(",")
        if len(fields) > 4 and fields[1] == server:
            return int(fields[4] or 0)
    return 0


def test_a_drain_survives_an_agent_restart(lb: Lb) -> None:
    """The agent restarts while b drains a request with a 1 s timeout: the new agent
    finds the drain and cuts it when the old one would have."""
    b = lb.members["b"]
    lb.apply(lb.member("a", enabled=False), lb.member("b"), drain_timeout=1)
    results: list[str] = []
    thread = in_flight(lb, results)
    wait_for(lambda: _sessions(lb, b.id) > 0, "slow request")
    started = time.monotonic()
    lb.apply(lb.member("a"), lb.member("b", enabled=False), drain_timeout=1)
    assert lb.servers()[b.id] == "DRAIN"
    # The old agent is gone: its drains end with it (the file stays, as after a kill).
    lb.sup.drains.state_file = None
    lb.sup.drains.forget(lb.id)
    assert lb.files.drains.is_file()
    restarted = hap.Supervisor(lb.sup.base, HAPROXY, start_timeout=10, stop_timeout=2)
    assert restarted.adopt() == [lb.id]
    assert restarted.drains.draining(lb.id) == [(f"{lb.pool}:{lb.listener}", b.id)]
    thread.join(10)
    assert time.monotonic() - started < SLOW  # cut at the timeout, not at the answer
    assert len(results) == 1 and "502 Bad Gateway" in results[0]
    wait_for(lambda: lb.servers()[b.id] == "MAINT", "b in maintenance")
    assert restarted.drains.draining(lb.id) == [] and not lb.files.drains.exists()
