"""The agent's HTTP exchange (agent/httpd.py) over a real socket pair: what a request
turns into for the WSGI application, the answer on the wire, refused heads."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from amphorae.agent import httpd, wsgi


class Echo:
    """Answers what the application saw of the request."""

    def on_put(self, req: wsgi.Request, resp: wsgi.Response, name: str) -> None:
        resp.status = 202
        resp.media = {"name": name, "body": req.body.decode()}


def app() -> wsgi.App:
    application = wsgi.App(max_body=1024)
    application.add_route("/echo/{name}", Echo())
    return application


def exchange(raw: bytes) -> bytes:
    """Send ``raw`` to one exchange, close our sending side, return all of the answer."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        worker = threading.Thread(target=httpd.exchange,
                                  args=(app(), theirs, ("198.18.192.1", 1), ("x", 9443)))
        worker.start()
        ours.sendall(raw)
        ours.shutdown(socket.SHUT_WR)
        worker.join(10)
        assert not worker.is_alive()
        theirs.close()
        chunks = []
        while chunk := ours.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split(answer: bytes) -> tuple[str, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert int(headers["content-length"]) == len(body)
    return status, headers, json.loads(body)


def test_a_request_with_a_body_is_answered_and_closed() -> None:
    status, headers, body = split(exchange(
        b"PUT /echo/a%2Bb?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"))
    assert status == "HTTP/1.0 202 Accepted"
    assert headers["content-type"] == "application/json"
    assert headers["server"] == httpd.SOFTWARE and headers["date"].endswith(" GMT")
    assert body == {"name": "a+b", "body": "hello"}  # the path is percent-decoded


def test_the_application_answers_its_own_errors() -> None:
    status, headers, body = split(exchange(b"GET /echo/a HTTP/1.1\r\n\r\n"))
    assert status == "HTTP/1.0 405 Method Not Allowed"
    assert headers["allow"] == "PUT, OPTIONS"
    assert body == {"message": "405 Method Not Allowed", "details": ""}


def test_a_bad_head_is_a_400_naming_what() -> None:
    for raw, named in ((b"GARBAGE\r\n\r\n", "bad request line"),
                       (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "bad header line"),
                       (b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 101 + b"\r\n", "headers"),
                       (b"GET /" + b"a" * httpd.MAX_LINE + b" HTTP/1.1\r\n\r\n", "too long")):
        status, _, body = split(exchange(raw))
        assert status == "HTTP/1.0 400 Bad Request"
        assert body["message"] == "Bad request" and named in body["details"], body


def test_a_client_that_sends_nothing_gets_nothing() -> None:
    assert exchange(b"") == b""
