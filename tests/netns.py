"""Throwaway network namespaces for tests that need the real kernel (nft, keepalived).

Every namespace is named ``amph-<purpose>-<random>`` and deleted when its ``with`` block
ends, also when the test fails. Tests that need them call :func:`require_root` first: it
skips without root, but fails under CI, where a skip would hide a missing check.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests import leftovers


def require_root() -> None:
    if os.geteuid() == 0:
        return
    message = "needs root for network namespaces"
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI must not skip it")
    pytest.skip(message)


def run(*args: str, ns: str | None = None, check: bool = True,
        timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, inside namespace ``ns`` when given; output is captured as text."""
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


@contextlib.contextmanager
def namespace(purpose: str) -> Iterator[str]:
    """A new, empty network namespace with loopback up; removed on exit."""
    name = f"amph-{purpose}-{secrets.token_hex(3)}"
    leftovers.register(name)
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        # Deleting the namespace also removes every interface inside it.
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def crash_namespace(ns: str, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process in ``ns`` until none is left (the namespace and its
    addresses stay, as with a hung machine); the pids killed.

    All are stopped first: keepalived's children get SIGTERM when their parent dies
    (PR_SET_PDEATHSIG) and would otherwise leave gracefully, handing a VIP over at once
    instead of crashing."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while pids := [int(p) for p in run("ip", "netns", "pids", ns).stdout.split()]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {ns} survive SIGKILL")
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        killed += pids
        time.sleep(0.01)
    return sorted(set(killed))
