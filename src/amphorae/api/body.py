"""Reading a JSON request body into a schema, turning every failure into a 400 that
names the field, as Octavia's WSME layer words it."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import falcon
import pydantic

from amphorae.common import errors

S = TypeVar("S", bound=pydantic.BaseModel)

MAX_BODY = 1024 * 1024


def read_json(req: falcon.Request) -> Any:
    raw = req.bounded_stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise errors.BadRequest("Request body is too large.")
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.BadRequest(f"Malformed JSON in request body: {exc}") from None


def envelope(req: falcon.Request, key: str) -> Any:
    """The object under the single root key of a POST/PUT body."""
    body = read_json(req)
    if not isinstance(body, dict) or key not in body:
        raise errors.InvalidInput(field=key, value=_short(body), reason="Mandatory field missing.")
    extra = sorted(set(body) - {key})
    if extra:
        raise errors.UnknownAttribute(argument="body", attribute=", ".join(extra))
    _refuse_nul(body[key], [])
    return body[key]


def _refuse_nul(value: Any, path: list[str]) -> None:
    """No stored string may hold a NUL character (PostgreSQL cannot store one)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise errors.InvalidInput(field=".".join(path) or "body", value=_short(value),
                                      reason="NUL characters are not allowed.")
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_nul(k, path)
            _refuse_nul(v, [*path, str(k)])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_nul(v, [*path, str(i)])


def parse(req: falcon.Request, key: str, schema: type[S]) -> S:
    return validate(envelope(req, key), key, schema)


def validate(data: Any, key: str, schema: type[S]) -> S:
    if not isinstance(data, dict):
        raise errors.InvalidInput(field=key, value=_short(data),
                                  reason="Value should be a JSON object.")
    try:
        return schema.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _as_api_error(exc, key, data) from None


def _as_api_error(exc: pydantic.ValidationError, key: str, data: Any) -> errors.APIError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "extra_forbidden":
        parent = ".".join([key, *loc[:-1]])
        return errors.UnknownAttribute(argument=parent, attribute=loc[-1])
    field = ".".join(loc) or key
    if err["type"] == "missing":
        return errors.InvalidInput(field=field, value="None", reason="Mandatory field missing.")
    reason = err["msg"].removeprefix("Value error, ")
    return errors.InvalidInput(field=field, value=_short(err.get("input")), reason=reason)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."
