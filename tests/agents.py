"""Helpers for tests that run a real amphora agent process."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def kill_everything_under(root: Path) -> None:
    """SIGKILL every process whose command line names ``root``: the agent and what it
    started (HAProxy, keepalived), which outlive the agent by design."""
    marker = os.fsencode(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)


def agent_command(config: Path) -> list[str]:
    """The agent's command line. AMPHORAE_AGENT_COVERAGE=1 runs it under coverage
    (parallel data files in the current directory; coverage must be importable)."""
    if os.environ.get("AMPHORAE_AGENT_COVERAGE"):
        return [sys.executable, "-m", "coverage", "run", "-p", "--source=amphorae",
                "-m", "amphorae.cli", "agent", "--config-file", str(config)]
    return [str(VENV_BIN / "amphorae"), "agent", "--config-file", str(config)]
