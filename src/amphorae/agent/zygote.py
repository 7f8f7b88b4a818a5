"""A warm parent for netns amphorae's agents: fork instead of start an interpreter.

An agent's start was mostly Python's: the interpreter and the agent's imports cost
~110 ms of CPU per amphora (on a 2-CPU host creating 100 load balancers, a fifth of
the work). The zygote imports them once and forks a child per amphora. The child
joins the amphora's network namespace, starts a session of its own, takes the
amphora's directory as its working directory and its log as stdout/stderr, and runs
the agent's main as ``amphorae agent`` would: from there on it is the same agent.

The host side (drivers/compute/zygote.py) starts ``python -m amphorae.agent.zygote``
with pipes: one JSON request per line on stdin, one JSON answer per line on stdout
(``{"pid": N}`` or ``{"error": "..."}``). stdin's end (the worker is gone) ends the
zygote; its agents live on, as agents started with ``ip netns exec`` outlived the
worker. The zygote reaps the agents that end before it does.

It stays single-threaded (fork copies only the calling thread) and imports only what
the agent imports. Unlike ``ip netns exec`` it does not remount /sys or bind files of
/etc/netns/<name>: the agent reads neither.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import traceback
from collections.abc import Mapping
from typing import Any, BinaryIO

# What an agent imports: loaded once, here.
from amphorae.agent import main as agent_main
from amphorae.agent import server as _server  # noqa: F401

CLONE_NEWNET = 0x40000000


PR_SET_NAME = 15
NAME = b"amphorae-agent"  # what ps -e and top show (the command line stays the zygote's)


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _child(request: Mapping[str, Any], answer: int) -> None:
    """In the forked child: become the agent. Never returns."""
    code, answered = 1, False
    try:
        os.setsid()
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(NAME), 0, 0, 0)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the agent waits for its children
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _setns(request["netns"])
        os.chdir(request["cwd"])
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        for target, source in ((0, null), (1, log), (2, log)):
            os.dup2(source, target)
        os.close(null)
        os.close(log)
        os.write(answer, b"ok")  # the parent answers only once the child is in place
        os.close(answer)
        answered = True
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own streams
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.argv = ["amphorae", "agent", *request["config_args"]]
        code = agent_main.main(list(request["config_args"]))
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException as exc:  # the child must end here, whatever happened
        if answered:
            traceback.print_exc()
        else:
            with contextlib.suppress(OSError):
                os.write(answer, f"{type(exc).__name__}: {exc}".encode())
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def spawn(request: Mapping[str, Any]) -> dict[str, Any]:
    """Fork an agent for ``request`` (netns, cwd, log, config_args: ``--config-file=PATH``
    as amphorae.cli hands them on); its pid or the error."""
    ready, answer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready)
        _child(request, answer)
    os.close(answer)
    with os.fdopen(ready, "rb") as reply:
        said = reply.read(4096)
    if said == b"ok":
        return {"pid": pid}
    return {"error": said.decode(errors="replace") or "the agent's child exited"}


def _reap(_signum: int, _frame: object) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the worker to handle
    for line in requests:
        try:
            out = spawn(json.loads(line))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(out).encode() + b"\n")
        answers.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
