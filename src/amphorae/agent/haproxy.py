"""One HAProxy per load balancer, one process each, supervised by the agent.

Each load balancer has a folder under the agent's base path (``contract.layout.LbFiles``,
which the controller renders with too).

HAProxy runs as a daemon (``-D``) in a session of its own, so that it outlives a restart
of the agent; a new agent finds it again through the pid file. There is no master
process: master-worker mode costs a second process (12 MiB RSS of an amphora's ~42,
docs/memory.md) for what the agent does itself. A reload starts a new HAProxy on the
new config that takes the listening sockets from the running one over its stats socket
(``-x``; the config says ``expose-fd listeners``) and then tells it to finish (``-sf``:
it stops accepting and serves its connections to their end or ``hard-stop-after``), so
no connection is refused meanwhile. The launcher exits once the new process has bound
its sockets and written the pid file: its exit status is the start's or reload's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from amphorae.agent import runtime, runtime_plan
from amphorae.agent.errors import ToolError
from amphorae.contract.layout import LbFiles
from amphorae.contract.peers import peer_name

LOG = logging.getLogger(__name__)

# Load balancer ids are UUIDs in practice; anything else that could name a path is refused.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_CLI_TIMEOUT = 1.0
_POLL = 0.02
LOG_LIMIT = 1024 * 1024


class HaproxyError(ToolError):
    """An HAProxy operation failed; ``details`` holds HAProxy's own words."""


class InvalidConfig(HaproxyError):
    """``haproxy -c`` refused a configuration."""


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def unix_command(path: Path, command: str, timeout: float = _CLI_TIMEOUT) -> str:
    """Send one command to an HAProxy CLI socket and return the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)  # without it HAProxy's CLI waits for more commands
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def parse_info(text: str) -> dict[str, str]:
    """The stats socket's ``show info``: field -> value."""
    return {key: value.strip() for key, sep, value in
            (line.partition(":") for line in text.splitlines()) if sep}


def serving_pid(stats_socket: Path) -> int:
    """The pid of the HAProxy answering on ``stats_socket``: a reload is a new pid."""
    return int(parse_info(unix_command(stats_socket, "show info"))["Pid"])


class Supervisor:
    """The HAProxy instances of an amphora. Thread-safe: every operation on one load
    balancer holds that load balancer's lock."""

    def __init__(self, base_path: str | os.PathLike[str], haproxy_cmd: str, *,
                 amphora_id: str | None = None, start_timeout: float = 10.0,
                 stop_timeout: float = 10.0) -> None:
        self.base = Path(base_path)
        self.haproxy_cmd = haproxy_cmd
        self.peer = peer_name(amphora_id) if amphora_id else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.drains = runtime.Drains(unix_command, self.lock, self._record_server_state,
                                     state_file=lambda lb_id: self.files(lb_id).drains)
        self.base.mkdir(parents=True, exist_ok=True, mode=0o755)

    # -- bookkeeping ---------------------------------------------------------------

    def files(self, lb_id: str) -> LbFiles:
        if not valid_id(lb_id):
            raise ValueError(f"invalid load balancer id {lb_id!r}")
        return LbFiles(self.base / lb_id)

    def lock(self, lb_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(lb_id, threading.Lock())

    def load_balancers(self) -> list[str]:
        """Ids of the load balancers that have an installed config."""
        if not self.base.is_dir():
            return []
        return sorted(entry.name for entry in self.base.iterdir()
                      if valid_id(entry.name) and (entry / "haproxy.cfg").is_file())

    def adopt(self) -> list[str]:
        """After an agent restart: the load balancers whose HAProxy still runs, with the
        drains the previous agent left; stale pid files of dead ones are removed."""
        running = []
        for lb_id in self.load_balancers():
            if self.pid(lb_id) is not None:
                running.append(lb_id)
                self.drains.restore(lb_id)
            else:
                self.files(lb_id).pid_file.unlink(missing_ok=True)
        if running:
            LOG.info("adopted running HAProxy of %s", ", ".join(running))
        return running

    def pid(self, lb_id: str) -> int | None:
        """The current HAProxy of ``lb_id``, or None. The pid must run HAProxy on this
        load balancer's config, so a recycled pid is not mistaken for it."""
        files = self.files(lb_id)
        try:
            pid = int(files.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _is_haproxy_for(pid, files.config) else None

    def processes(self, lb_id: str) -> list[int]:
        """Every HAProxy of ``lb_id``: the current one and those that reloads told to
        finish and that still serve connections."""
        return _haproxy_processes(self.files(lb_id).config)

    def running(self, lb_id: str) -> bool:
        return self.pid(lb_id) is not None

    def running_config(self, lb_id: str) -> bytes | None:
        """The config the running HAProxy of ``lb_id`` loaded; None when it is down."""
        return RunningCopy(self.files(lb_id).running_config).read() \
            if self.running(lb_id) else None

    # -- configuration -------------------------------------------------------------

    def version(self) -> str:
        out = subprocess.run([self.haproxy_cmd, "-v"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
        match = re.search(r"version (\S+)", out)
        return match.group(1) if match else "unknown"

    def check(self, config: Path) -> None:
        """``haproxy -c``; raises InvalidConfig with HAProxy's output."""
        cmd = [self.haproxy_cmd, "-c", "-f", os.fspath(config)]
        if self.peer:
            cmd += ["-L", self.peer]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise InvalidConfig("Invalid request", (proc.stdout + proc.stderr).strip())

    def install_config(self, lb_id: str, text: bytes) -> None:
        """Validate ``text`` as the config of ``lb_id`` and swap it in atomically; on
        failure the previous config stays (the refused one is kept as .failed)."""
        files = self.files(lb_id)
        with self.lock(lb_id):
            files.root.mkdir(mode=0o755, exist_ok=True)
            files.cert_dir.mkdir(mode=0o700, exist_ok=True)
            write_file(files.new_config, text, 0o644)
            try:
                self.check(files.new_config)
            except InvalidConfig:
                os.replace(files.new_config, files.failed_config)
                raise
            os.replace(files.new_config, files.config)

    # -- processes -----------------------------------------------------------------

    def start(self, lb_id: str) -> str:
        with self.lock(lb_id):
            return self._start(lb_id)

    def reload(self, lb_id: str) -> str:
        """Make the running HAProxy match the installed config: through the runtime API
        when only members changed (runtime_plan), else a new HAProxy that takes over the
        listening sockets; a load balancer whose HAProxy is down is started."""
        with self.lock(lb_id):
            pid = self.pid(lb_id)
            if pid is None:
                return self._start(lb_id)
            files = self.files(lb_id)
            loading = files.config.read_bytes()
            outcome = self._update(lb_id, files, loading)
            if outcome is not None:
                return outcome
            self.drains.forget(lb_id)
            self.check(files.config)
            self._save_server_state(files)
            self._launch(lb_id, "reload", "-x", os.fspath(files.stats_socket),
                         "-sf", str(pid))
            RunningCopy(files.running_config).loaded(loading)
            return "reloaded"

    def _update(self, lb_id: str, files: LbFiles, loading: bytes) -> str | None:
        """Apply the change from the running config to ``loading`` at runtime; None
        when it needs a reload (structural, or HAProxy refused a command)."""
        running = RunningCopy(files.running_config).read()
        if running is None:
            return None
        actions = runtime_plan.plan(running.decode(errors="replace"),
                                    loading.decode(errors="replace"))
        if not actions:  # structural, or nothing to change: a reload asked for as such
            return None
        try:
            sent = self.drains.apply(lb_id, files.stats_socket, actions)
        except (runtime.RuntimeRefused, OSError) as exc:
            LOG.warning("runtime update of %s failed, reloading: %s %s", lb_id, exc,
                        getattr(exc, "details", ""))
            return None
        RunningCopy(files.running_config).loaded(loading)
        self._save_server_state(files)
        LOG.info("updated HAProxy of %s at runtime (%d commands)", lb_id, sent)
        return f"updated at runtime ({sent} commands)"

    def _record_server_state(self, lb_id: str) -> None:
        self._save_server_state(self.files(lb_id))

    def stop(self, lb_id: str) -> str:
        with self.lock(lb_id):
            return self._stop(lb_id)

    def delete(self, lb_id: str) -> None:
        """Stop ``lb_id`` and remove all its files; unknown ids are fine."""
        files = self.files(lb_id)
        with self.lock(lb_id):
            self._stop(lb_id)
            shutil.rmtree(files.root, ignore_errors=True)

    def _start(self, lb_id: str) -> str:
        files = self.files(lb_id)
        if self.pid(lb_id) is not None:
            return "already running"
        self.drains.forget(lb_id)
        if not files.config.is_file():
            raise FileNotFoundError(lb_id)
        loading = files.config.read_bytes()
        files.pid_file.unlink(missing_ok=True)
        # load-server-state-from-file needs the file at the first start; "1" is the
        # format version, with no server yet.
        if not files.server_state.exists():
            write_file(files.server_state, b"1\n", 0o600)
        pid = self._launch(lb_id, "start")
        RunningCopy(files.running_config).loaded(loading)
        LOG.info("started HAProxy of %s (pid %d)", lb_id, pid)
        return "started"

    def _launch(self, lb_id: str, what: str, *extra: str) -> int:
        """Run HAProxy's launcher on the installed config; the new process's pid once
        it has bound its sockets. On failure, HAProxy's messages are the details."""
        files = self.files(lb_id)
        cmd = [self.haproxy_cmd, "-D", "-f", os.fspath(files.config),
               "-p", os.fspath(files.pid_file), *extra]
        if self.peer:
            cmd += ["-L", self.peer]
        offset = _bound_log(files.log)
        try:
            with open(files.log, "ab") as log:
                launcher = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, start_new_session=True,
                                          timeout=self.start_timeout, check=False)
        except subprocess.TimeoutExpired:
            raise HaproxyError(f"HAProxy did not {what} within {self.start_timeout}s",
                               _tail(files.log, offset)) from None
        pid = self.pid(lb_id)
        if launcher.returncode != 0 or pid is None:
            raise HaproxyError(f"HAProxy failed to {what}", _tail(files.log, offset))
        return pid

    def _stop(self, lb_id: str) -> str:
        files = self.files(lb_id)
        self.drains.forget(lb_id)
        current = self.pid(lb_id)
        pids = self.processes(lb_id)
        if pids:
            # Soft stop first (listeners close, established connections finish), then a
            # hard one, then a kill: a stop ends with the processes gone, also those
            # that earlier reloads left finishing their connections.
            steps = ((signal.SIGUSR1, self.stop_timeout), (signal.SIGTERM, 5.0),
                     (signal.SIGKILL, 5.0))
            for sig, grace in steps:
                for pid in pids:
                    _signal(pid, sig)
                if _wait_gone(pids, time.monotonic() + grace):
                    break
            LOG.info("stopped HAProxy of %s", lb_id)
        files.pid_file.unlink(missing_ok=True)
        files.running_config.unlink(missing_ok=True)
        return "not running" if current is None else "stopped"

    def _save_server_state(self, files: LbFiles) -> None:
        """What the worker knows of its servers (health, weights, admin state), so that
        the next one (after a reload, or a restart) starts from it rather than from
        scratch. Saved also after each runtime change: a restart would otherwise bring
        back an admin state (e.g. maintenance) that the runtime API has since lifted."""
        try:
            state = unix_command(files.stats_socket, "show servers state")
        except OSError as exc:
            LOG.debug("no server state saved for %s: %s", files.root.name, exc)
            return
        write_file(files.server_state, state.encode(), 0o600)


@dataclass(frozen=True)
class RunningCopy:
    """A copy of what a process (HAProxy, keepalived) was last started or reloaded with,
    beside its installed config. An upload installs a file without a reload; a controller
    that died between the two would otherwise find the new file installed and never
    reload, leaving the old configuration serving."""

    copy: Path

    def loaded(self, data: bytes) -> None:
        """The process now runs ``data`` (its config, read before it was loaded)."""
        write_file(self.copy, data, 0o644)

    def read(self) -> bytes | None:
        try:
            return self.copy.read_bytes()
        except FileNotFoundError:
            return None


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temp file + rename), ``mode`` set before any byte lands."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pids: list[int], until: float) -> bool:
    while any(_alive(pid) for pid in pids):
        if time.monotonic() >= until:
            return False
        time.sleep(_POLL)
    return True


def _is_haproxy_for(pid: int, config: Path) -> bool:
    if not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(config) in argv and b"haproxy" in argv[0]


def _haproxy_processes(config: Path) -> list[int]:
    """Live HAProxy processes started on ``config`` (its path is in their command line;
    each load balancer's config has a path of its own)."""
    return [int(entry.name) for entry in os.scandir("/proc")
            if entry.name.isdigit() and _is_haproxy_for(int(entry.name), config)]


def _bound_log(path: Path) -> int:
    """HAProxy's log, emptied once it passes LOG_LIMIT (HAProxy appends with
    O_APPEND, so it goes on writing at the new end); returns its current size."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size > LOG_LIMIT:
        os.truncate(path, 0)
        return 0
    return size


def _tail(path: Path, offset: int = 0, limit: int = 4000) -> str:
    """What HAProxy wrote since ``offset``, at most its last ``limit`` bytes."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace").strip()
