"""The agent's request and response plumbing shared by its endpoint modules: the body
read by the application, and the two answers that carry an ETag."""

from __future__ import annotations

import hashlib

from amphorae.agent.wsgi import TEXT, Request, Response
from amphorae.common import constants as c


def body(req: Request) -> bytes:
    return req.body  # read whole by wsgi.App before routing


def stored(resp: Response, data: bytes) -> None:
    """Answer an upload: OK, with the MD5 of what was stored as the ETag."""
    resp.etag = hashlib.md5(data).hexdigest()
    resp.media = {"message": "OK"}


def send_text(resp: Response, data: bytes, running: bytes | None = None) -> None:
    """Answer with a stored file as plain text, its MD5 as the ETag; with ``running``,
    the MD5 of that (what the running process loaded) as ``X-Running-ETag``."""
    resp.content_type = TEXT
    resp.etag = hashlib.md5(data).hexdigest()
    if running is not None:
        resp.set_header(c.RUNNING_ETAG_HEADER, hashlib.md5(running).hexdigest())
    resp.data = data
