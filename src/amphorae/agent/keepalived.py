"""keepalived (VRRP) of an ACTIVE_STANDBY amphora, supervised by the agent. Its files are
in ``<base>/vrrp.d`` (``contract.layout.VrrpFiles``).

keepalived runs with ``--dont-fork`` as a child of the agent in a session of its own, so
it survives a restart of the agent (which finds it again through the pid file) and the
parent pid is the one we started. A reload is keepalived's own (SIGHUP: it re-reads the
config; VIPs it keeps holding stay up). A stop is SIGTERM, which makes keepalived remove
its VIPs before it exits; the stop returns once the process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from amphorae.agent import haproxy as hap
from amphorae.agent.errors import ToolError
from amphorae.contract.layout import VrrpFiles

LOG = logging.getLogger(__name__)
_POLL = 0.05


class KeepalivedError(ToolError):
    """keepalived failed to start, reload or stop; ``details`` is its output."""


class InvalidConfig(KeepalivedError):
    """``keepalived -t`` refused a configuration."""


def default_command() -> str:
    return shutil.which("keepalived") or "/usr/sbin/keepalived"


class Keepalived:
    """The one keepalived of an amphora. Thread-safe: every operation holds one lock."""

    def __init__(self, base_path: str | os.PathLike[str], keepalived_cmd: str | None = None,
                 *, start_timeout: float = 10.0, stop_timeout: float = 10.0) -> None:
        self.files = VrrpFiles.under(base_path)
        self.cmd = keepalived_cmd or default_command()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    # -- files ---------------------------------------------------------------------

    def _mkdir(self) -> None:
        # keepalived's script security refuses scripts under directories others can write.
        self.files.root.mkdir(parents=True, mode=0o755, exist_ok=True)

    def check(self, config: Path) -> None:
        """``keepalived -t``; raises InvalidConfig with keepalived's output. ``-e``: a
        missing file is an error, not an empty config."""
        proc = subprocess.run([self.cmd, "-t", "-e", "-f", os.fspath(config)],
                              capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise InvalidConfig("Invalid request", (proc.stdout + proc.stderr).strip())

    def install_config(self, text: bytes) -> None:
        """Check ``text`` and swap it in atomically; on failure the previous config stays
        (the refused one is kept as .failed)."""
        with self._lock:
            self._mkdir()
            hap.write_file(self.files.new_config, text, 0o644)
            try:
                self.check(self.files.new_config)
            except InvalidConfig:
                os.replace(self.files.new_config, self.files.failed_config)
                raise
            os.replace(self.files.new_config, self.files.config)

    def install_check_script(self, text: bytes) -> None:
        with self._lock:
            self._mkdir()
            hap.write_file(self.files.check_script, text, 0o755)

    def has_config(self) -> bool:
        return self.files.config.is_file()

    # -- process -------------------------------------------------------------------

    def pid(self) -> int | None:
        """The live keepalived parent running our config, or None. A recycled pid running
        something else is not mistaken for it."""
        child = self._child
        if child is not None and child.poll() is not None:
            self._child = child = None  # reaped
        try:
            pid: int | None = int(self.files.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = child.pid if child is not None else None
        if pid is None or not _is_keepalived_for(pid, self.files.config):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def running_config(self) -> bytes | None:
        """The config the running keepalived was started or reloaded with, or None."""
        return self._copy().read() if self.running() else None

    def _copy(self) -> hap.RunningCopy:
        return hap.RunningCopy(self.files.running_config)

    def start(self) -> str:
        """Start keepalived; one already running is reloaded instead (Octavia's start)."""
        with self._lock:
            if self.pid() is not None:
                return self._reload()
            return self._start()

    def reload(self) -> str:
        """SIGHUP; a keepalived that is down is started."""
        with self._lock:
            if self.pid() is None:
                return self._start()
            return self._reload()

    def stop(self) -> str:
        with self._lock:
            return self._stop()

    def _start(self) -> str:
        files = self.files
        if not files.config.is_file():
            raise FileNotFoundError(files.config)
        loading = files.config.read_bytes()
        for path in (files.pid_file, files.vrrp_pid_file, files.checkers_pid_file,
                     files.bfd_pid_file):
            path.unlink(missing_ok=True)
        cmd = [self.cmd, "--dont-fork", "--log-console", "--log-detail", "--no-syslog",
               "-f", os.fspath(files.config), "-p", os.fspath(files.pid_file),
               "-r", os.fspath(files.vrrp_pid_file), "-c", os.fspath(files.checkers_pid_file),
               "-b", os.fspath(files.bfd_pid_file)]
        offset = hap._bound_log(files.log)
        with open(files.log, "ab") as log:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True, close_fds=True)
        self._child = child
        # Started means: the parent wrote its pid file and the VRRP child is up.
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                self._child = None
                raise KeepalivedError("keepalived failed to start",
                                      hap._tail(files.log, offset))
            if _read_pid(files.pid_file) == child.pid and _live_pid(files.vrrp_pid_file):
                self._copy().loaded(loading)
                LOG.info("started keepalived (pid %d)", child.pid)
                return "started"
            time.sleep(_POLL)
        self._kill(child.pid)
        raise KeepalivedError(f"keepalived did not start within {self.start_timeout}s",
                              hap._tail(files.log, offset))

    def _reload(self) -> str:
        pid = self.pid()
        if pid is None:
            raise KeepalivedError("keepalived is not running")
        loading = self.files.config.read_bytes()
        self.check(self.files.config)
        os.kill(pid, signal.SIGHUP)
        self._copy().loaded(loading)
        LOG.info("reloaded keepalived (pid %d)", pid)
        return "reloaded"

    def _stop(self) -> str:
        pid = self.pid()
        if pid is None:
            return "not running"
        hap._signal(pid, signal.SIGTERM)  # keepalived drops its VIPs, then exits
        if not self._wait_gone(pid, time.monotonic() + self.stop_timeout):
            LOG.warning("keepalived (pid %d) ignored SIGTERM; killing it", pid)
            self._kill(pid)
        for path in (self.files.pid_file, self.files.vrrp_pid_file,
                     self.files.checkers_pid_file, self.files.bfd_pid_file,
                     self.files.running_config):
            path.unlink(missing_ok=True)
        LOG.info("stopped keepalived")
        return "stopped"

    def _kill(self, pid: int) -> None:
        """SIGKILL the whole session (the parent and its VRRP/checker children)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self._wait_gone(pid, time.monotonic() + 5.0)

    def _wait_gone(self, pid: int, until: float) -> bool:
        while time.monotonic() < until:
            child = self._child
            if child is not None and child.pid == pid:
                if child.poll() is not None:
                    self._child = None
                    return True
            elif not hap._alive(pid):
                return True
            time.sleep(_POLL)
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _live_pid(path: Path) -> bool:
    pid = _read_pid(path)
    return pid is not None and hap._alive(pid)


def _is_keepalived_for(pid: int, config: Path) -> bool:
    if not hap._alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(config) in argv and b"keepalived" in argv[0]
