"""The agent's WSGI application: a router over path templates, JSON answers and the
agent's error shape ``{"message", "details"}``, on the standard library only.

A web framework cost each amphora ~11 MiB and ~40 ms at start for what the agent uses of
it: ~20 routes, bodies read whole, JSON or plain text answers. Resources keep the
``on_<method>(req, resp, **fields)`` shape. What clients see is what falcon answered:
405 with ``Allow`` (and 200 to OPTIONS), one trailing slash ignored, JSON by default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

LOG = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 413: "Content Too Large",
           500: "Internal Server Error"}
# Methods are looked up as on_<method>, so only these names may reach getattr.
METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")


def status_line(code: int) -> str:
    return f"{code} {REASONS.get(code, 'Unknown')}"


class AgentError(Exception):
    """An answer other than success, in the agent's own shape."""

    def __init__(self, status: int, message: str, details: Any = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "details": self.details}


def _generic(status: int, headers: dict[str, str] | None = None) -> AgentError:
    """The router's own errors (no route, no such method): the status as the message."""
    return AgentError(status, status_line(status), "", headers)


class Request:
    def __init__(self, method: str, path: str, body: bytes) -> None:
        self.method = method
        self.path = path
        self.body = body


class Response:
    def __init__(self) -> None:
        self.status = 200
        self.media: Any = None
        self.data: bytes | None = None
        self.content_type = JSON
        self.headers: dict[str, str] = {}

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @etag.setter
    def etag(self, value: str) -> None:
        self.headers["etag"] = f'"{value}"'

    def set_header(self, name: str, value: str) -> None:
        self.headers[name.lower()] = value

    def body(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.media is None:
            return b""
        return json.dumps(self.media, ensure_ascii=False).encode()


Responder = Callable[..., None]


class App:
    """Routes ``/a/{field}/b`` templates to resources; at each path level a literal
    segment is preferred to a field, as the agent's clients have always been answered."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._routes: list[tuple[tuple[str | None, ...], tuple[str, ...], Any]] = []

    def add_route(self, template: str, resource: Any) -> None:
        segments = tuple(template.strip("/").split("/")) if template != "/" else ("",)
        pattern = tuple(None if s.startswith("{") else s for s in segments)
        names = tuple(s[1:-1] for s in segments if s.startswith("{"))
        self._routes.append((pattern, names, resource))
        self._routes.sort(key=lambda route: [part is None for part in route[0]])

    def find(self, path: str) -> tuple[Any, dict[str, str]] | None:
        """The resource of ``path`` and its fields, or None."""
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        segments = path.lstrip("/").split("/")
        for pattern, names, resource in self._routes:
            if len(pattern) == len(segments) and all(
                    p is None or p == s for p, s in zip(pattern, segments, strict=True)):
                values = [s for p, s in zip(pattern, segments, strict=True) if p is None]
                return resource, dict(zip(names, values, strict=True))
        return None

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        resp = Response()
        try:
            self._handle(method, environ, resp)
        except AgentError as exc:
            resp = self._error(exc)
        except Exception as exc:  # no traceback leaves the process
            LOG.exception("%s %s failed", method, environ.get("PATH_INFO"))
            resp = self._error(AgentError(500, "Internal error",
                                          f"{type(exc).__name__}: {exc}"))
        body = resp.body()
        headers = [("content-type", resp.content_type), *resp.headers.items(),
                   ("content-length", str(len(body)))]
        start_response(status_line(resp.status), headers)
        return [b"" if method == "HEAD" else body]

    def _handle(self, method: str, environ: dict[str, Any], resp: Response) -> None:
        # Read before routing: an error answered while the client is still sending would
        # reset the connection and lose the answer.
        body = self._read(environ)
        # WSGI hands the path over as latin-1; clients send UTF-8.
        path = (environ.get("PATH_INFO") or "/").encode("iso-8859-1").decode(
            "utf-8", "replace")
        found = self.find(path)
        if found is None:
            raise _generic(404)
        resource, fields = found
        allowed = [m for m in METHODS if m != "OPTIONS" and hasattr(resource, f"on_{m.lower()}")]
        if method == "OPTIONS":
            resp.headers["allow"] = ", ".join(allowed)
            return
        if method not in allowed:
            raise _generic(405, {"allow": ", ".join([*allowed, "OPTIONS"])})
        responder: Responder = getattr(resource, f"on_{method.lower()}")
        responder(Request(method, path, body), resp, **fields)

    def _read(self, environ: dict[str, Any]) -> bytes:
        text = environ.get("CONTENT_LENGTH") or ""
        if not text:
            return b""
        try:
            length = int(text)
        except ValueError:
            raise _bad_length("a number") from None
        if length < 0:
            raise _bad_length("a positive number")
        if length > self.max_body:
            raise AgentError(413, "Request too large", f"limit {self.max_body} bytes")
        return environ["wsgi.input"].read(length) if length else b""

    @staticmethod
    def _error(exc: AgentError) -> Response:
        resp = Response()
        resp.status = exc.status
        resp.media = exc.to_dict()
        resp.headers.update(exc.headers)
        return resp


def _bad_length(must_be: str) -> AgentError:
    return AgentError(400, "Invalid header value",
                      'The value provided for the "Content-Length" header is invalid. '
                      f"The value of the header must be {must_be}.")
