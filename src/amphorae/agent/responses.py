"""The agent's request and response plumbing shared by its endpoint modules: the error
shape, the body read by the ReadBody middleware, and the two answers that carry an ETag."""

from __future__ import annotations

import hashlib
from typing import Any

import falcon

from amphorae.common import constants as c


class AgentError(falcon.HTTPError):
    """An error in the agent's own shape: ``{"message", "details"}``."""

    def __init__(self, status: str, message: str, details: Any = "") -> None:
        super().__init__(status)
        self.message = message
        self.details = details

    def to_dict(self, obj_type: type = dict) -> dict[str, Any]:
        return obj_type(message=self.message, details=self.details)


def body(req: falcon.Request) -> bytes:
    return bytes(req.context.body)  # read by the API's ReadBody middleware


def stored(resp: falcon.Response, data: bytes) -> None:
    """Answer an upload: OK, with the MD5 of what was stored as the ETag."""
    resp.etag = hashlib.md5(data).hexdigest()
    resp.media = {"message": "OK"}


def send_text(resp: falcon.Response, data: bytes, running: bytes | None = None) -> None:
    """Answer with a stored file as plain text, its MD5 as the ETag; with ``running``,
    the MD5 of that (what the running process loaded) as ``X-Running-ETag``."""
    resp.content_type = falcon.MEDIA_TEXT
    resp.etag = hashlib.md5(data).hexdigest()
    if running is not None:
        resp.set_header(c.RUNNING_ETAG_HEADER, hashlib.md5(running).hexdigest())
    resp.data = data
