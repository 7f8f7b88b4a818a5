"""NetnsComputeDriver.running: whether an amphora's process lives, read from its pid
file and /proc only (the health manager asks it of every amphora every second)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from amphorae.drivers.compute import netns

AMPHORA = "0123abcd-0000-4000-8000-000000000000"


def test_a_live_process_runs_and_a_dead_or_foreign_one_does_not(tmp_path: Path) -> None:
    driver = netns.NetnsComputeDriver(state_dir=str(tmp_path), management_bridge="amph-unitg",
                                      deployment="unit")
    folder = tmp_path / netns.short_id(AMPHORA)
    folder.mkdir()
    assert not driver.running(AMPHORA, "agent")  # no pid file
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=folder)
    try:
        (folder / "agent.pid").write_text(f"{proc.pid}\n")
        assert driver.running(AMPHORA, "agent")
        # A recycled pid: the process works elsewhere, so it is not the amphora's.
        (folder / "agent.pid").write_text(f"{os.getpid()}\n")
        assert not driver.running(AMPHORA, "agent")
        (folder / "agent.pid").write_text(f"{proc.pid}\n")
    finally:
        proc.kill()
    deadline = time.monotonic() + 5
    while _state(proc.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _state(proc.pid) == "Z"
    assert not driver.running(AMPHORA, "agent")  # dead, a zombie until reaped
    proc.wait()
    assert not driver.running(AMPHORA, "agent")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
