"""runtime.Drains, the bookkeeping around HAProxy's runtime API: which drain an action
replaces, ends or leaves alone, when a drain ends, and what a refusal does. HAProxy is
played by a recorder of the commands it is sent (the real one: test_runtime_haproxy)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from amphorae.agent import runtime
from amphorae.agent import runtime_plan as rp

SOCKET = Path("/nonexistent/haproxy.sock")
B = "pool:listener"


class FakeHaproxy:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.sessions: dict[str, int] = {}
        self.refuse: set[str] = set()

    def __call__(self, socket: Path, command: str) -> str:
        if command.startswith("show stat"):
            rows = [f"{B},{name},0,0,{count}" for name, count in self.sessions.items()]
            return "# pxname,svname,qcur,qmax,scur\n" + "\n".join(rows) + "\n"
        if command == "show info":
            return "Name: HAProxy\nHard_maxconn: 1000\n"
        self.sent.append(command)
        return "No such server.\n" if command in self.refuse else ""


def drains(fake: FakeHaproxy) -> tuple[runtime.Drains, list[str]]:
    changed: list[str] = []
    lock = threading.Lock()
    return runtime.Drains(fake, lambda lb_id: lock, changed.append, poll=3600), changed


def remove(server: str, timeout: float | None = 30.0, now: bool = True) -> rp.Action:
    target = f"{B}/{server}"
    return rp.Action(rp.REMOVE, B, server,
                     (f"set server {target} state drain",) if now else (),
                     (f"set server {target} state maint",
                      f"shutdown sessions server {target}", f"del server {target}"),
                     timeout)


def disable(server: str, timeout: float | None = 30.0) -> rp.Action:
    target = f"{B}/{server}"
    return rp.Action(rp.DISABLE, B, server, (f"set server {target} state drain",),
                     (f"set server {target} state maint",
                      f"shutdown sessions server {target}"), timeout)


def simple(kind: str, server: str, command: str) -> rp.Action:
    return rp.Action(kind, B, server, (command,))


def test_a_drain_ends_when_its_sessions_do() -> None:
    fake = FakeHaproxy()
    d, changed = drains(fake)
    fake.sessions["s1"] = 2
    assert d.apply("lb", SOCKET, [remove("s1")]) == 1
    d.step("lb")
    assert d.draining("lb") == [(B, "s1")] and changed == []
    fake.sessions["s1"] = 0
    d.step("lb")
    assert d.draining("lb") == [] and changed == ["lb"]
    assert fake.sent[-1] == f"del server {B}/s1"


def test_the_timeout_ends_a_drain_with_sessions_left() -> None:
    fake = FakeHaproxy()
    d, _ = drains(fake)
    fake.sessions["s1"] = 5
    d.apply("lb", SOCKET, [disable("s1", timeout=0.05)])
    d.step("lb")
    assert d.draining("lb") == [(B, "s1")]
    time.sleep(0.06)
    d.step("lb")
    assert d.draining("lb") == []
    assert fake.sent[-1] == f"shutdown sessions server {B}/s1"


def test_no_timeout_waits_for_the_sessions() -> None:
    fake = FakeHaproxy()
    d, _ = drains(fake)
    fake.sessions["s1"] = 1
    d.apply("lb", SOCKET, [disable("s1", timeout=None)])
    d.step("lb")
    assert d.draining("lb") == [(B, "s1")]


def test_re_enabling_cancels_a_drain() -> None:
    fake = FakeHaproxy()
    d, _ = drains(fake)
    fake.sessions["s1"] = 1
    d.apply("lb", SOCKET, [disable("s1")])
    d.apply("lb", SOCKET, [simple(rp.ENABLE, "s1", f"set server {B}/s1 state ready")])
    assert d.draining("lb") == []
    fake.sessions["s1"] = 0
    d.step("lb")
    assert not any("maint" in command for command in fake.sent)


def test_a_weight_change_leaves_a_drain_alone() -> None:
    fake = FakeHaproxy()
    d, _ = drains(fake)
    fake.sessions["s1"] = 1
    d.apply("lb", SOCKET, [disable("s1")])
    d.apply("lb", SOCKET, [simple(rp.WEIGHT, "s1", f"set server {B}/s1 weight 3")])
    assert d.draining("lb") == [(B, "s1")]


def test_removing_a_draining_disabled_member_keeps_draining_it() -> None:
    """Disabled a moment ago and removed now: the removal waits for the same sessions
    (the plan sends no new drain for a server the old config had disabled)."""
    fake = FakeHaproxy()
    d, _ = drains(fake)
    fake.sessions["s1"] = 1
    d.apply("lb", SOCKET, [disable("s1")])
    d.apply("lb", SOCKET, [remove("s1", now=False)])
    d.step("lb")
    assert d.draining("lb") == [(B, "s1")]
    fake.sessions["s1"] = 0
    d.step("lb")
    assert fake.sent[-1] == f"del server {B}/s1" and d.draining("lb") == []


def test_re_adding_ends_the_removal_first() -> None:
    fake = FakeHaproxy()
    d, _ = drains(fake)
    fake.sessions["s1"] = 1
    d.apply("lb", SOCKET, [remove("s1")])
    fake.sent.clear()
    add = simple(rp.ADD, "s1", f"add server {B}/s1 198.18.4.1:80 weight 1")
    assert d.apply("lb", SOCKET, [add]) == 4
    assert fake.sent == [f"set server {B}/s1 state maint", f"shutdown sessions server {B}/s1",
                         f"del server {B}/s1", add.now[0]]
    assert d.draining("lb") == []


def test_a_refusal_stops_the_actions_and_reload_forgets_the_drains() -> None:
    fake = FakeHaproxy()
    d, _ = drains(fake)
    fake.sessions["s1"] = 1
    fake.refuse.add(f"set server {B}/s2 weight 2")
    with pytest.raises(runtime.RuntimeRefused) as err:
        d.apply("lb", SOCKET, [disable("s1"),
                               simple(rp.WEIGHT, "s2", f"set server {B}/s2 weight 2"),
                               simple(rp.WEIGHT, "s3", f"set server {B}/s3 weight 2")])
    assert "No such server." in err.value.details
    assert fake.sent[-1] == f"set server {B}/s2 weight 2"
    d.forget("lb")
    assert d.draining("lb") == []


def test_an_end_that_keeps_failing_is_given_up() -> None:
    fake = FakeHaproxy()
    d, changed = drains(fake)
    fake.refuse.add(f"del server {B}/s1")
    d.apply("lb", SOCKET, [remove("s1")])
    for _ in range(runtime.END_ATTEMPTS - 1):
        d.step("lb")
    assert d.draining("lb") == [(B, "s1")]
    d.step("lb")
    assert d.draining("lb") == [] and changed == ["lb"]


def test_a_raised_maxconn_is_capped_at_the_started_one() -> None:
    fake = FakeHaproxy()
    d, _ = drains(fake)
    d.apply("lb", SOCKET, [rp.Action(rp.MAXCONN, "", "", ("set maxconn global 5000",))])
    d.apply("lb", SOCKET, [rp.Action(rp.MAXCONN, "", "", ("set maxconn global 900",))])
    assert fake.sent == ["set maxconn global 1000", "set maxconn global 900"]


def test_the_thread_ends_drains_by_itself() -> None:
    fake = FakeHaproxy()
    lock = threading.Lock()
    d = runtime.Drains(fake, lambda lb_id: lock, lambda lb_id: None, poll=0.01)
    d.apply("lb", SOCKET, [remove("s1")])
    deadline = time.monotonic() + 5
    while d.draining("lb") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert d.draining("lb") == []
    assert fake.sent[-1] == f"del server {B}/s1"


def saving(fake: FakeHaproxy, folder: Path) -> runtime.Drains:
    lock = threading.Lock()
    return runtime.Drains(fake, lambda lb_id: lock, lambda lb_id: None, poll=3600,
                          state_file=lambda lb_id: folder / f"{lb_id}.json")


def test_a_restarted_agent_resumes_the_drains_with_their_deadlines(tmp_path: Path) -> None:
    fake = FakeHaproxy()
    fake.sessions.update({"s1": 1, "s2": 1})
    first = saving(fake, tmp_path)
    first.apply("lb", SOCKET, [disable("s1", timeout=0.3), remove("s2", timeout=None)])
    assert (tmp_path / "lb.json").is_file()

    time.sleep(0.35)  # the first agent is gone; s1's timeout passes meanwhile
    second = saving(fake, tmp_path)
    assert second.restore("lb") == 2
    assert second.draining("lb") == [(B, "s1"), (B, "s2")]
    second.step("lb")  # s1: cut at once (its deadline passed), not 0.3 s from now
    assert second.draining("lb") == [(B, "s2")]
    assert fake.sent[-1] == f"shutdown sessions server {B}/s1"
    fake.sessions["s2"] = 0
    second.step("lb")  # s2: no timeout, ends with its sessions
    assert fake.sent[-1] == f"del server {B}/s2"
    assert second.draining("lb") == [] and not (tmp_path / "lb.json").exists()


def test_forgotten_drains_are_not_resumed(tmp_path: Path) -> None:
    fake = FakeHaproxy()
    fake.sessions["s1"] = 1
    first = saving(fake, tmp_path)
    first.apply("lb", SOCKET, [disable("s1")])
    first.forget("lb")  # reloaded: the new worker reads the config
    assert saving(fake, tmp_path).restore("lb") == 0


def test_a_broken_state_file_restores_nothing(tmp_path: Path) -> None:
    (tmp_path / "lb.json").write_text('{"drains": [{"kind": 1}]}')
    assert saving(FakeHaproxy(), tmp_path).restore("lb") == 0
    (tmp_path / "lb.json").write_text("not json")
    assert saving(FakeHaproxy(), tmp_path).restore("lb") == 0
