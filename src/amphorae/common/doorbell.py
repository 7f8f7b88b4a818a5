"""A doorbell between processes on one host, for SQLite, which has no LISTEN/NOTIFY.

Who waits binds a UNIX datagram socket in a directory beside the database file; who has
news sends one byte to every socket there. A waiter sleeps in ``select`` until a byte
arrives or its timeout passes, so an idle worker costs nothing while a job still starts
within milliseconds of the commit that wrote it. A ring is best effort: a lost one (a
full socket buffer, a directory it may not write) only delays the work until the
waiter's timeout.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import socket
from pathlib import Path

from sqlalchemy.engine import make_url

SUFFIX = ".sock"


def directory_for(database_url: str) -> Path | None:
    """The doorbell directory of a SQLite database file (``<file>.wakeup``); None for
    another database or one in memory."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}.wakeup")


def ring(directory: Path) -> None:
    """Wake every waiter in ``directory``; a socket nobody holds any more (its process
    was killed) is removed."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(SUFFIX)]
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for name in names:
            path = directory / name
            try:
                sender.sendto(b"\0", str(path))
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    path.unlink()
            except OSError:  # a full buffer: that waiter has a ring pending anyway
                pass


class Bell:
    """One waiter's socket in ``directory`` (made if missing)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(str(self.path))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def wait(self, timeout: float) -> bool:
        """Until rung or ``timeout`` seconds passed; whether it was rung. Rings that
        came in meanwhile are all answered by this one wake."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        while True:
            try:
                self.sock.recv(64)
            except BlockingIOError:
                return bool(ready)

    def poke(self) -> None:
        """Wake this waiter from another thread of its process."""
        with contextlib.suppress(OSError), \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"\0", str(self.path))

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
