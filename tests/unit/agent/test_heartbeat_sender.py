"""The heartbeat sender's pure parts (``show stat`` parsing, v3 deltas, controller list)
and one beat over loopback UDP against a fake stats socket."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amphorae.agent import heartbeat as hb
from amphorae.common import heartbeat as codec

# Captured from HAProxy 2.6.12: one frontend (2 requests), one backend with a checked
# server that is up, an UP server with weight 0, a disabled one and an unchecked one.
SHOW_STAT = (Path(__file__).parent / "data" / "show_stat.csv").read_text()
LISTENER = "1c2d3e4f-0000-4000-8000-000000000001"
POOL = f"9a8b7c6d-0000-4000-8000-000000000002:{LISTENER}"


def test_parse_captured_show_stat() -> None:
    listeners, pools = hb.parse_show_stat(SHOW_STAT)
    assert listeners == {LISTENER: {"status": "OPEN", "stats": {
        "tx": 717, "rx": 172, "conns": 0, "totconns": 2, "ereq": 0}}}
    assert pools == {POOL: {"status": "UP", "members": {
        "11111111-0000-4000-8000-000000000003": "UP",
        "22222222-0000-4000-8000-000000000004": "DRAIN",
        "33333333-0000-4000-8000-000000000005": "MAINT",
        "44444444-0000-4000-8000-000000000006": "no check"}}}


def _stat(*rows: str) -> str:
    return "# pxname,svname,scur,stot,bin,bout,ereq,status,weight\n" + "\n".join(rows) + "\n"


def test_parse_statuses_and_internal_proxies() -> None:
    text = _stat("L1,FRONTEND,5,10,100,200,1,FULL,",
                 "P1:L1,m-down,0,0,0,0,,DOWN,1",
                 "P1:L1,m-rising,0,0,0,0,,DOWN 1/2,1",
                 "P1:L1,m-maint,0,0,0,0,,MAINT (via P2:L1/x),1",
                 "P1:L1,m-drain,0,0,0,0,,DRAIN,1",
                 "P1:L1,BACKEND,0,0,0,0,,DOWN,0",
                 "prometheus-exporter,FRONTEND,0,0,0,0,0,OPEN,",
                 "prometheus-exporter-internal,BACKEND,0,0,0,0,,UP,1",
                 "stats,BACKEND,0,0,0,0,,UP,1")
    listeners, pools = hb.parse_show_stat(text)
    assert listeners == {"L1": {"status": "FULL", "stats": {
        "tx": 200, "rx": 100, "conns": 5, "totconns": 10, "ereq": 1}}}
    assert pools == {"P1:L1": {"status": "DOWN", "members": {
        "m-down": "DOWN", "m-rising": "DOWN 1/2", "m-maint": "MAINT", "m-drain": "DRAIN"}}}


@pytest.mark.parametrize("text", ["", "Unknown command\n", "Permission denied\n"])
def test_parse_garbage_is_empty(text: str) -> None:
    assert hb.parse_show_stat(text) == ({}, {})


def _listener(tx: int, rx: int, conns: int, totconns: int, ereq: int) -> dict:
    return {"status": "OPEN", "stats": {"tx": tx, "rx": rx, "conns": conns,
                                        "totconns": totconns, "ereq": ereq}}


def test_deltas_against_last_reported() -> None:
    first, last = hb.apply_deltas({"L1": _listener(100, 50, 3, 10, 1)}, {})
    assert first["L1"]["stats"] == {"tx": 100, "rx": 50, "conns": 3, "totconns": 10,
                                    "ereq": 1}
    second, last2 = hb.apply_deltas({"L1": _listener(150, 80, 7, 12, 1)}, last)
    # conns stays absolute; the others are what happened since the last report.
    assert second["L1"]["stats"] == {"tx": 50, "rx": 30, "conns": 7, "totconns": 2,
                                     "ereq": 0}
    assert last2 == {"L1": {"tx": 150, "rx": 80, "totconns": 12, "ereq": 1}}
    assert last == {"L1": {"tx": 100, "rx": 50, "totconns": 10, "ereq": 1}}  # untouched


def test_counter_reset_reports_current_value() -> None:
    last = {"L1": {"tx": 1000, "rx": 500, "totconns": 40, "ereq": 2}}
    reported, new_last = hb.apply_deltas({"L1": _listener(30, 1000, 1, 3, 0)}, last)
    assert reported["L1"]["stats"] == {"tx": 30, "rx": 500, "conns": 1, "totconns": 3,
                                       "ereq": 0}
    assert new_last["L1"] == {"tx": 30, "rx": 1000, "totconns": 3, "ereq": 0}


def test_absent_listener_keeps_its_last_values() -> None:
    last = {"L1": {"tx": 10, "rx": 10, "totconns": 1, "ereq": 0}}
    reported, new_last = hb.apply_deltas({}, last)
    assert reported == {} and new_last == last


def test_counter_store_round_trip_and_bad_file(tmp_path: Path) -> None:
    store = hb.CounterStore(tmp_path / "amphorae-counters.json")
    assert store.load() == {}
    store.save({"L1": {"tx": 1, "rx": 2, "totconns": 3, "ereq": 4}})
    assert store.load() == {"L1": {"tx": 1, "rx": 2, "totconns": 3, "ereq": 4}}
    assert store.path.stat().st_mode & 0o777 == 0o600
    store.path.write_text("{not json")
    assert store.load() == {}


@pytest.mark.parametrize(("text", "share"), [
    ("Name: HAProxy\nIdle_pct: 100\nRun_queue: 0\n", 0.0), ("Idle_pct: 0", 1.0),
    ("Idle_pct: 73\n", 0.27), ("Idle_pct: 250", 0.0), ("Idle_pct: x", None), ("", None)])
def test_load_share_from_show_info(text: str, share: float | None) -> None:
    assert hb.load_share(text) == share


def test_parse_controllers() -> None:
    assert hb.parse_controllers(["127.0.0.1:5555", "[::1]:5556", " 10.0.0.1:1 "]) == [
        ("127.0.0.1", 5555), ("::1", 5556), ("10.0.0.1", 1)]
    for bad in ("127.0.0.1", ":5555", "127.0.0.1:x", "127.0.0.1:0", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            hb.parse_controllers([bad])


# -- one beat over loopback --------------------------------------------------------------


@contextlib.contextmanager
def fake_stats_socket(path: Path, answers: dict[str, list[str]]) -> Iterator[None]:
    """A Unix socket answering each command with the next of its ``answers``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                queue = answers.get(conn.recv(1024).decode().strip(), [])
                conn.sendall((queue.pop(0) if queue else "").encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(2)
        server.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short path: a Unix socket path is limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="amph-hb-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _receivers(count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        socks.append(sock)
    return socks


def test_beats_round_robin_with_deltas_persisted(workdir: Path) -> None:
    receivers = _receivers(2)
    controllers = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in receivers]
    later = SHOW_STAT.replace(",2,172,717,0,0,0,,,,,OPEN,", ",5,400,1700,0,0,2,,,,,OPEN,")
    assert later != SHOW_STAT
    sockets = [workdir / "one.sock", workdir / "missing.sock"]
    try:
        with fake_stats_socket(sockets[0], {"show stat": [SHOW_STAT, later, later],
                                            "show info": ["Name: HAProxy\nIdle_pct: 100\n",
                                                          "Idle_pct: 37\n"]}):
            sender = hb.HeartbeatSender("amp-1", "k3y", controllers, 1, workdir,
                                        lambda: sockets)
            sent = [sender.beat() for _ in range(2)]
            # A restarted agent: new boot id, seq from 0, but no traffic counted twice.
            again = hb.HeartbeatSender("amp-1", "k3y", controllers, 1, workdir,
                                       lambda: sockets)
            sent.append(again.beat())
        got = [codec.decode(receivers[i % 2].recv(codec.RECV_BUFFER), "k3y")
               for i in range(3)]
    finally:
        for sock in receivers:
            sock.close()
    assert got == sent
    assert [m["seq"] for m in got] == [0, 1, 0]
    assert got[0]["boot"] == got[1]["boot"] != got[2]["boot"]
    assert got[0]["ver"] == 3 and got[0]["id"] == "amp-1"
    assert [m["listeners"][LISTENER]["stats"] for m in got] == [
        {"tx": 717, "rx": 172, "conns": 0, "totconns": 2, "ereq": 0},
        {"tx": 983, "rx": 228, "conns": 0, "totconns": 3, "ereq": 2},
        {"tx": 0, "rx": 0, "conns": 0, "totconns": 0, "ereq": 0}]
    assert got[0]["pools"][POOL]["status"] == "UP"
    # How busy HAProxy is, from its idle share; nothing when it does not say.
    assert [m.get("load") for m in got] == [0.0, 0.63, None]
    with pytest.raises(codec.InvalidHeartbeat):
        codec.decode(codec.encode(sent[0], "another key"), "k3y")


def test_loop_survives_missing_socket_and_stops(workdir: Path) -> None:
    (receiver,) = _receivers(1)
    try:
        sender = hb.HeartbeatSender("amp-2", "k", [f"127.0.0.1:{receiver.getsockname()[1]}"],
                                    0.1, workdir, lambda: [workdir / "nothing.sock"])
        sender.start()
        started = time.monotonic()
        messages = [codec.decode(receiver.recv(codec.RECV_BUFFER), "k") for _ in range(3)]
        elapsed = time.monotonic() - started
        sender.stop()
        assert sender._thread is None
    finally:
        receiver.close()
    assert [m["seq"] for m in messages] == [0, 1, 2]
    assert all(m["listeners"] == {} and m["pools"] == {} for m in messages)
    assert 0.15 <= elapsed < 2  # paced by the interval, not a busy loop


def test_withheld_while_not_fit(workdir: Path) -> None:
    (receiver,) = _receivers(1)
    fit = [False]
    try:
        sender = hb.HeartbeatSender("amp-3", "k", [f"127.0.0.1:{receiver.getsockname()[1]}"],
                                    1, workdir, list, may_send=lambda: fit[0])
        assert sender.beat() is None
        fit[0] = True
        sent = sender.beat()
        assert sent is not None and sent["seq"] == 0
        assert codec.decode(receiver.recv(codec.RECV_BUFFER), "k") == sent
    finally:
        receiver.close()
