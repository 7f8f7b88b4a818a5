"""One HTTP/1.0 exchange on an accepted connection, answered by a WSGI application.

What the agent's clients need of an HTTP server is small: a request with a body of a
known length, a whole answer, the connection closed after it (as wsgiref did). wsgiref
and http.server import email, http.client, html and mimetypes: ~2.4 MiB of every amphora.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO
from urllib.parse import unquote

LOG = logging.getLogger(__name__)

MAX_LINE = 65536  # as http.server: longer request or header lines are refused
MAX_HEADERS = 100
SOFTWARE = "amphorae-agent"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BadRequest(Exception):
    pass


def read_head(rfile: BinaryIO) -> tuple[str, dict[str, Any]] | None:
    """The request line and a WSGI environ of its head; None if the client sent nothing."""
    line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise BadRequest("request line too long")
    request_line = line.decode("iso-8859-1").rstrip("\r\n")
    words = request_line.split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise BadRequest(f"bad request line {request_line!r}")
    method, target, protocol = words
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": unquote(path, "iso-8859-1"),
        "QUERY_STRING": query, "SERVER_PROTOCOL": protocol, "SCRIPT_NAME": ""}
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise BadRequest("header line too long")
        if line in (b"\r\n", b"\n", b""):
            return request_line, environ
        name, colon, value = line.decode("iso-8859-1").partition(":")
        if not colon:
            raise BadRequest(f"bad header line {line[:80]!r}")
        key = name.strip().upper().replace("-", "_")
        if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            key = f"HTTP_{key}"
        value = value.strip()
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    raise BadRequest(f"more than {MAX_HEADERS} headers")


def exchange(app: WsgiApp, conn: socket.socket, client: tuple[Any, ...],
             server: tuple[str, int]) -> None:
    """Read one request from ``conn``, answer it through ``app``."""
    with conn.makefile("rb") as rfile:
        try:
            head = read_head(rfile)
        except BadRequest as exc:
            body = json.dumps({"message": "Bad request", "details": str(exc)}).encode()
            _send(conn, "400 Bad Request", [("content-type", "application/json"),
                                            ("content-length", str(len(body)))], body)
            LOG.debug("%s: 400 %s", client[0], exc)
            return
        if head is None:
            return
        request_line, environ = head
        environ.update({
            "SERVER_NAME": server[0], "SERVER_PORT": str(server[1]),
            "REMOTE_ADDR": client[0], "wsgi.version": (1, 0), "wsgi.url_scheme": "https",
            "wsgi.input": rfile, "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False})
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            started[:] = [status, headers]
            return _no_write

        body = b"".join(app(environ, start_response))
    status, headers = started
    _send(conn, status, headers, body)
    LOG.debug('%s "%s" %s %d', client[0], request_line, status.split()[0], len(body))


def _no_write(data: bytes) -> None:
    raise NotImplementedError("write() of WSGI: the agent's application returns its body")


def _send(conn: socket.socket, status: str, headers: list[tuple[str, str]],
          body: bytes) -> None:
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    lines = [f"HTTP/1.0 {status}", f"Date: {date}", f"Server: {SOFTWARE}",
             *(f"{name}: {value}" for name, value in headers)]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + body)
