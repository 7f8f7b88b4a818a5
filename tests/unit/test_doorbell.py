"""The same-host doorbell (common/doorbell.py) with real UNIX sockets."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from amphorae.common import doorbell


@pytest.fixture
def bell(tmp_path: Path):  # type: ignore[no-untyped-def]
    bell = doorbell.Bell(tmp_path / "db.sqlite.wakeup")
    yield bell
    bell.close()


def test_the_directory_is_beside_a_sqlite_file() -> None:
    assert doorbell.directory_for("sqlite:////var/lib/amphorae/amphorae.sqlite") == \
        Path("/var/lib/amphorae/amphorae.sqlite.wakeup")
    assert doorbell.directory_for("sqlite://") is None
    assert doorbell.directory_for("sqlite:///:memory:") is None
    assert doorbell.directory_for("postgresql+psycopg://u@h/db") is None


def test_a_ring_wakes_every_bell_at_once(bell: doorbell.Bell) -> None:
    other = doorbell.Bell(bell.path.parent)
    try:
        doorbell.ring(bell.path.parent)
        started = time.monotonic()
        assert bell.wait(5) and other.wait(5)
        assert time.monotonic() - started < 1
    finally:
        other.close()


def test_without_a_ring_a_bell_waits_its_timeout(bell: doorbell.Bell) -> None:
    started = time.monotonic()
    assert not bell.wait(0.2)
    assert time.monotonic() - started >= 0.19


def test_rings_meanwhile_are_answered_by_one_wake(bell: doorbell.Bell) -> None:
    for _ in range(5):
        doorbell.ring(bell.path.parent)
    assert bell.wait(1)
    assert not bell.wait(0.05)


def test_a_poke_from_another_thread_wakes_the_waiter(bell: doorbell.Bell) -> None:
    threading.Timer(0.05, bell.poke).start()
    assert bell.wait(5)


def test_a_dead_waiters_socket_is_removed_and_close_removes_its_own(
        bell: doorbell.Bell, tmp_path: Path) -> None:
    dead = doorbell.Bell(bell.path.parent)
    dead.sock.close()  # as a killed process leaves it: the file, nobody bound
    doorbell.ring(bell.path.parent)
    assert not dead.path.exists() and bell.path.exists()
    bell.close()
    assert not bell.path.exists()


def test_ringing_a_missing_directory_does_nothing(tmp_path: Path) -> None:
    doorbell.ring(tmp_path / "nothing-here")
