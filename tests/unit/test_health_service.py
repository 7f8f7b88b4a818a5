"""The health manager's receive path and counter line (health/service.py), without a
database: datagrams drained from a real UDP socket on loopback, and the counter line
that operators read and bench/health.py parses."""

from __future__ import annotations

import logging
import socket
import time
import types
from collections.abc import Iterator

import pytest
from bench.health import parse_line

from amphorae.common import heartbeat as codec
from amphorae.health import service, update

KEY = "unit-test-heartbeat-key"


def conf() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        health_manager=types.SimpleNamespace(
            bind_ip="127.0.0.1", bind_port=0, controller_ip_port_list=[], heartbeat_key=KEY,
            heartbeat_interval=1, heartbeat_timeout=5, health_check_interval=1,
            failover_threshold=None),
        controller_worker=types.SimpleNamespace(compute_driver="compute_noop_driver"),
        autoscaling=types.SimpleNamespace(enabled=False, interval=1.0))


@pytest.fixture
def manager() -> service.HealthManager:
    return service.HealthManager(url="sqlite://", conf=conf())


@pytest.fixture
def bound(manager: service.HealthManager) -> Iterator[socket.socket]:
    sock = manager.socket()
    sock.setblocking(False)
    yield sock
    sock.close()


def datagram(seq: int, key: str = KEY) -> bytes:
    return codec.encode(codec.build_message("amp-1", seq, {}, {}), key)


def send(sock: socket.socket, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for d in datagrams:
            out.sendto(d, sock.getsockname())
    time.sleep(0.05)  # loopback delivery


def receiver(manager: service.HealthManager) -> service.Receiver:
    return service.Receiver(manager.key, manager.queue, manager.counters)


def test_one_wake_up_reads_every_waiting_datagram(manager: service.HealthManager,
                                                  bound: socket.socket) -> None:
    old = datagram(1)
    unsigned = datagram(4)[:-codec.HEX_DIGEST_LEN]
    send(bound, old, datagram(2), datagram(3, key="not-the-key"), unsigned, old)
    service._drain(bound, receiver(manager), bytearray(codec.RECV_BUFFER))
    assert manager.counters == {"received": 5, "accepted": 2, "forged": 1, "unsigned": 1,
                                "replayed": 1}
    assert [r.message["seq"] for r in manager.queue] == [1, 2]


def test_a_wake_up_reads_at_most_drain_datagrams(manager: service.HealthManager,
                                                 bound: socket.socket,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "DRAIN", 2)
    send(bound, *(datagram(seq) for seq in range(1, 6)))
    rec = receiver(manager)
    buffer = bytearray(codec.RECV_BUFFER)
    service._drain(bound, rec, buffer)
    assert manager.counters["received"] == 2
    service._drain(bound, rec, buffer)
    service._drain(bound, rec, buffer)
    service._drain(bound, rec, buffer)  # nothing left: returns at once
    assert manager.counters["accepted"] == 5


def test_the_counter_line_is_info_only_when_heartbeats_were_refused_or_lost(
        manager: service.HealthManager, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=service.LOG.name)

    def levels() -> list[str]:
        found = [r.levelname for r in caplog.records if "heartbeats:" in r.getMessage()]
        caplog.clear()
        return found

    manager.counters.update(received=10, accepted=10, written=10)
    manager.log_counters()
    assert levels() == ["DEBUG"]  # heartbeats flowing as they should
    manager.counters.update(received=10, accepted=9, written=9, withheld=1, ignored=1)
    manager.log_counters()
    assert levels() == ["DEBUG"]
    manager.counters.update(received=2, forged=1, replayed=1)
    manager.log_counters()
    assert levels() == ["INFO"]  # refused heartbeats: worth a line
    manager.counters.update(received=1, accepted=1, written=1)
    manager.log_counters()
    assert levels() == ["DEBUG"]  # the refusals are not counted twice
    manager.counters.update(received=1, accepted=1, written=1)
    manager.log_counters(final=True)
    assert levels() == ["INFO"]  # the summary on stop


def test_the_counter_line_is_logged_when_something_changed_and_parses(
        manager: service.HealthManager, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=service.LOG.name)
    manager.counters.update(received=7, accepted=5, forged=2, written=4, withheld=1)
    manager.queue.append(update.Received({"id": "a"}, 0.0))
    manager.batches.add(0.010, 0.200)
    manager.batches.add(0.030, 0.100)
    manager.log_counters()
    manager.queue.clear()
    manager.log_counters()  # nothing changed and nothing queued: no line
    lines = [r for r in caplog.records if "heartbeats:" in r.getMessage()]
    assert len(lines) == 1
    text = f"2030-01-01 12:00:00,000 1 INFO {service.LOG.name}: {lines[0].getMessage()}"
    parsed = parse_line(text)
    assert parsed is not None
    assert {k: parsed.counts[k] for k in ("received", "accepted", "forged", "written",
                                         "withheld", "replayed", "queued")} == {
        "received": 7, "accepted": 5, "forged": 2, "written": 4, "withheld": 1,
        "replayed": 0, "queued": 1}
    assert (parsed.batches, parsed.write_mean_ms, parsed.write_max_ms,
            parsed.wait_max_ms) == (2, 20.0, 30.0, 200.0)
    assert manager.batches.count == 0  # each line covers its own interval


def test_the_autoscaler_samples_only_while_heartbeats_are_written(
        manager: service.HealthManager) -> None:
    """No heartbeat written, no load to sample: the loop sleeps instead of ticking every
    interval; each written batch allows one tick; stop() ends the wait."""
    import threading

    ticks: list[float] = []
    manager.autoscaler = types.SimpleNamespace(tick=ticks.append)  # type: ignore[assignment]
    manager.autoscale_interval = 0.02
    loop = threading.Thread(target=manager._autoscale_loop)
    loop.start()
    try:
        time.sleep(0.3)
        assert ticks == []
        manager.written.set()
        deadline = time.monotonic() + 2
        while not ticks and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert len(ticks) == 1
    finally:
        manager.stop()
        loop.join(2)
    assert not loop.is_alive()
