"""The host's end of the agent zygote (amphorae/agent/zygote.py): agents forked from a
warm interpreter instead of started cold.

Started on first use, one per process that boots amphorae; requests go one at a time
over its pipes. When it cannot be started or dies, :meth:`Zygote.spawn` raises
:class:`ZygoteError` and the caller starts the agent the cold way: the zygote only
makes boots cheaper, never possible.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

LOG = logging.getLogger(__name__)


class ZygoteError(RuntimeError):
    """No agent was forked: start it another way."""


class Zygote:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def spawn(self, netns: str, cwd: Path, log: Path, config_file: str) -> int:
        """Fork ``amphorae agent --config-file <config_file>`` into network namespace
        ``netns`` (a name under /run/netns), in a session of its own, working in
        ``cwd``, output appended to ``log``; its pid once it is in the namespace."""
        request = json.dumps({"netns": f"/run/netns/{netns}", "cwd": str(cwd),
                              "log": str(log),
                              "config_args": [f"--config-file={config_file}"]}
                             ).encode() + b"\n"
        with self._lock:
            proc = self._running()
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(request)
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError as exc:
                self._stop()
                raise ZygoteError(f"agent zygote: {exc}") from exc
        if not line:
            self._stop()
            raise ZygoteError("agent zygote exited")
        answer = json.loads(line)
        if "pid" not in answer:
            raise ZygoteError(f"agent zygote: {answer.get('error')}")
        return int(answer["pid"])

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "amphorae.agent.zygote"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                raise ZygoteError(f"agent zygote not started: {exc}") from exc
            LOG.debug("agent zygote started (pid %d)", self._proc.pid)
        return self._proc

    def _stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """End the zygote (the agents it forked live on)."""
        with self._lock:
            if self._proc is not None:
                with contextlib.suppress(OSError):
                    assert self._proc.stdin is not None
                    self._proc.stdin.close()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._stop()
                self._proc = None
