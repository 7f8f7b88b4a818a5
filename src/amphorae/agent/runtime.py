"""Applies :mod:`runtime_plan` actions to a running HAProxy over its stats socket, and
finishes the drains they start.

A drain's end (maintenance, remaining sessions cut, server deleted) is due once the
server carries no session or its timeout passed; a background thread checks the draining
servers every ``poll`` seconds, under the load balancer's lock. Each load balancer's
drains are also written to a small JSON file (``state_file``), their deadlines in wall
clock time: an agent restarted mid-drain restores them (:meth:`Drains.restore`) and ends
each when it would have, rather than leaving the server draining until the next reload.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from amphorae.agent import runtime_plan as rp
from amphorae.agent.errors import ToolError

LOG = logging.getLogger(__name__)

# What HAProxy answers to the commands runtime_plan writes when they succeed.
_OK = frozenset({"", "New server registered.", "Server deleted."})
# Attempts at a drain's end before giving up on it (``del server`` waits for the last
# idle connection to close); the server is in maintenance by then.
END_ATTEMPTS = 25


class RuntimeRefused(ToolError):
    """HAProxy refused a runtime command; the caller falls back to a reload."""


Send = Callable[[Path, str], str]


def run(send: Send, socket: Path, command: str) -> None:
    answer = send(socket, command).strip()
    if answer not in _OK:
        raise RuntimeRefused("HAProxy refused a runtime command", f"{command}: {answer}")


def capped_maxconn(send: Send, socket: Path, command: str) -> str:
    """``set maxconn global`` refuses a value above the one the process started with
    ("Value out of range."): a raise stops there, the safe side, until the next reload."""
    wanted = int(command.split()[-1])
    for line in send(socket, "show info").splitlines():
        key, _, value = line.partition(":")
        if key == "Hard_maxconn" and value.strip().isdigit():
            wanted = min(wanted, int(value))
    return f"set maxconn global {wanted}"


def sessions(send: Send, socket: Path) -> dict[tuple[str, str], int]:
    """Sessions and queued requests per (backend, server), from ``show stat``."""
    text = send(socket, "show stat -1 4 -1").lstrip("# ")
    found = {}
    for row in csv.DictReader(text.splitlines()):
        try:
            found[(row["pxname"], row["svname"])] = int(row["scur"] or 0) + int(
                row["qcur"] or 0)
        except (KeyError, ValueError):
            continue
    return found


@dataclass
class _Drain:
    socket: Path
    action: rp.Action
    deadline: float | None
    attempts: int = 0


class Drains:
    """The draining servers of every load balancer of one agent.

    ``lock_for(lb_id)`` is the load balancer's lock: :meth:`apply` and :meth:`forget` are
    called holding it, the thread takes it. ``changed(lb_id)`` runs (under it) after a
    drain ended, to record the new server state. ``state_file(lb_id)``, when given, is
    where that load balancer's drains are kept for the next agent.
    """

    def __init__(self, send: Send, lock_for: Callable[[str], threading.Lock],
                 changed: Callable[[str], None], poll: float = 0.2,
                 state_file: Callable[[str], Path] | None = None) -> None:
        self.send = send
        self.lock_for = lock_for
        self.changed = changed
        self.poll = poll
        self.state_file = state_file
        self._pending: dict[str, dict[tuple[str, str], _Drain]] = {}
        self._guard = threading.Condition()
        self._thread: threading.Thread | None = None

    def apply(self, lb_id: str, socket: Path, actions: Iterable[rp.Action]) -> int:
        """Run ``actions`` (in their order); returns the number of commands sent. Raises
        RuntimeRefused at the first refusal (the caller reloads, so the drains of this
        load balancer are then forgotten)."""
        try:
            return self._apply(lb_id, socket, actions)
        finally:
            with self._guard:
                self._save(lb_id)

    def _apply(self, lb_id: str, socket: Path, actions: Iterable[rp.Action]) -> int:
        sent = 0
        for action in actions:
            with self._guard:
                pending = self._pending.get(lb_id, {})
                earlier = pending.get(action.key) if action.kind != rp.MAXCONN else None
                if earlier is not None and action.kind != rp.WEIGHT:
                    del pending[action.key]  # this action decides the server's fate now
            if earlier is not None and action.kind == rp.ADD:
                # Re-added while its removal drains: that removal ends now, as the name
                # is still taken.
                sent += self._run(socket, earlier.action.then)
            commands = action.now
            if action.kind == rp.MAXCONN:
                commands = (capped_maxconn(self.send, socket, action.now[0]),)
            sent += self._run(socket, commands)
            if action.then:
                timeout = action.drain_timeout
                with self._guard:
                    self._pending.setdefault(lb_id, {})[action.key] = _Drain(
                        socket, action, None if timeout is None else time.monotonic() + timeout)
                    self._start()
        return sent

    def forget(self, lb_id: str) -> None:
        """``lb_id`` reloads or stops: the old worker keeps its draining servers until
        their connections end or ``hard-stop-after``; the new one reads the config."""
        with self._guard:
            self._pending.pop(lb_id, None)
            self._save(lb_id)

    def restore(self, lb_id: str) -> int:
        """After an agent restart: the drains of ``lb_id`` the previous agent left, each
        with what remained of its timeout; how many."""
        if self.state_file is None:
            return 0
        path = self.state_file(lb_id)
        try:
            saved = json.loads(path.read_text())["drains"]
            now, wall = time.monotonic(), time.time()
            restored = {}
            for item in saved:
                action = rp.Action(item["kind"], item["backend"], item["server"], (),
                                   tuple(item["then"]), item["drain_timeout"])
                left = None if item["deadline"] is None else max(0.0, item["deadline"] - wall)
                restored[action.key] = _Drain(Path(item["socket"]), action,
                                              None if left is None else now + left)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            LOG.warning("drains of %s not restored from %s: %s", lb_id, path, exc)
            return 0
        with self._guard:
            self._pending.setdefault(lb_id, {}).update(restored)
            if restored:
                self._start()
        LOG.info("restored %d drains of %s", len(restored), lb_id)
        return len(restored)

    def _save(self, lb_id: str) -> None:
        """Write ``lb_id``'s drains to its state file (none: no file); holding _guard."""
        if self.state_file is None:
            return
        path = self.state_file(lb_id)
        pending = self._pending.get(lb_id)
        try:
            if not pending:
                path.unlink(missing_ok=True)
                return
            now, wall = time.monotonic(), time.time()
            items = [{"kind": d.action.kind, "backend": d.action.backend,
                      "server": d.action.server, "then": list(d.action.then),
                      "drain_timeout": d.action.drain_timeout, "socket": str(d.socket),
                      "deadline": None if d.deadline is None else wall + d.deadline - now}
                     for d in pending.values()]
            temporary = path.with_name(f"{path.name}.new")
            temporary.write_text(json.dumps({"version": 1, "drains": items}))
            os.replace(temporary, path)
        except OSError as exc:  # the load balancer's folder is gone: nothing to keep
            LOG.warning("drains of %s not saved to %s: %s", lb_id, path, exc)

    def draining(self, lb_id: str) -> list[tuple[str, str]]:
        with self._guard:
            return sorted(self._pending.get(lb_id, {}))

    def _run(self, socket: Path, commands: Iterable[str]) -> int:
        count = 0
        for command in commands:
            run(self.send, socket, command)
            count += 1
        return count

    # -- the thread ----------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="haproxy-drains",
                                            daemon=True)
            self._thread.start()
        self._guard.notify_all()

    def _loop(self) -> None:
        while True:
            with self._guard:
                while not self._pending:
                    self._guard.wait()
            time.sleep(self.poll)  # a drain just started is not due yet
            with self._guard:
                lbs = list(self._pending)
            for lb_id in lbs:
                try:
                    self.step(lb_id)
                except Exception:  # one load balancer's trouble stops no other drain
                    LOG.exception("drains of %s", lb_id)

    def step(self, lb_id: str) -> None:
        """End the drains of ``lb_id`` that are due."""
        with self.lock_for(lb_id):
            with self._guard:
                pending = dict(self._pending.get(lb_id, {}))
            if not pending:
                return
            socket = next(iter(pending.values())).socket
            try:
                load = sessions(self.send, socket)
            except OSError as exc:
                LOG.warning("drains of %s: no statistics: %s", lb_id, exc)
                return
            now = time.monotonic()
            ended = False
            for key, drain in pending.items():
                timed_out = drain.deadline is not None and now >= drain.deadline
                if load.get(key, 0) > 0 and not timed_out:
                    continue
                if self._end(lb_id, key, drain):
                    ended = True
            if ended:
                self.changed(lb_id)

    def _end(self, lb_id: str, key: tuple[str, str], drain: _Drain) -> bool:
        try:
            self._run(drain.socket, drain.action.then)
        except (RuntimeRefused, OSError) as exc:
            drain.attempts += 1
            if drain.attempts < END_ATTEMPTS:
                return False
            LOG.warning("drain of %s/%s in %s not finished: %s", *key, lb_id, exc)
        with self._guard:
            pending = self._pending.get(lb_id, {})
            if pending.get(key) is drain:
                del pending[key]
            if not pending:
                self._pending.pop(lb_id, None)
            self._save(lb_id)
        LOG.info("%s/%s of %s drained (%s)", *key, lb_id, drain.action.kind)
        return True
