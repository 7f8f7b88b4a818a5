"""Reading a JSON request body into a schema, turning every failure into a 400 that
names the field, as Octavia's WSME layer words it."""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any, TypeVar

import falcon
import pydantic

from amphorae.common import errors

S = TypeVar("S", bound=pydantic.BaseModel)

MAX_BODY = 1024 * 1024
# Far deeper than any request body (a fully populated load balancer is 8 levels) and far
# below the depth at which the JSON parser's recursion fails.
MAX_DEPTH = 32
DISCARD_MAX = 16 * MAX_BODY

_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"?', re.DOTALL)  # possessive: linear time
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")


def read_json(req: falcon.Request) -> Any:
    """The body as JSON: at most MAX_BODY bytes of UTF-8, nested at most MAX_DEPTH deep."""
    declared = req.content_length or 0
    raw = b"" if declared > MAX_BODY else req.bounded_stream.read(MAX_BODY + 1)
    if declared > MAX_BODY or len(raw) > MAX_BODY:
        _discard(req.bounded_stream)
        raise falcon.HTTPContentTooLarge(
            description=f"Request body is larger than {MAX_BODY} bytes.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.BadRequest(f"Request body is not UTF-8: {exc}") from None
    if not text.strip():
        return None
    if _depth(text) > MAX_DEPTH:
        raise errors.BadRequest(f"Request body is nested deeper than {MAX_DEPTH} levels.")
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except ValueError as exc:
        raise errors.BadRequest(f"Malformed JSON in request body: {exc}") from None


def _discard(stream: Any) -> None:
    """Read what is left of a refused body, up to DISCARD_MAX: the server keeps the
    connection only once the body is consumed, and a client still sending into a closed
    one never sees the answer."""
    left = DISCARD_MAX
    while left > 0 and (chunk := stream.read(min(left, 65536))):
        left -= len(chunk)


def _depth(text: str) -> int:
    """How deep the arrays and objects of ``text`` nest, counted before parsing it (the
    parser recurses, and fails past a thousand levels); at least the parser's depth for
    any text, JSON or not."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def envelope(req: falcon.Request, key: str) -> Any:
    """The object under the single root key of a POST/PUT body."""
    body = read_json(req)
    if not isinstance(body, dict) or key not in body:
        raise errors.InvalidInput(field=key, value=_short(body), reason="Mandatory field missing.")
    extra = sorted(set(body) - {key})
    if extra:
        raise errors.UnknownAttribute(argument="body", attribute=", ".join(extra))
    _refuse_unstorable(body[key], [])
    return body[key]


def _refuse_unstorable(value: Any, path: list[str]) -> None:
    """No string may hold a NUL character (PostgreSQL cannot store one) or a lone
    surrogate (a "\\ud800" escape: no database can encode it)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise errors.InvalidInput(field=".".join(path) or "body", value=_short(value),
                                      reason="NUL characters are not allowed.")
        if _SURROGATE.search(value):
            raise errors.InvalidInput(field=".".join(path) or "body",
                                      value=_short(value.encode("utf-8", "replace").decode()),
                                      reason="Lone surrogates are not valid Unicode.")
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_unstorable(k, path)
            _refuse_unstorable(v, [*path, str(k)])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_unstorable(v, [*path, str(i)])


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
    return errors.InvalidInput(field=field, value=_short(err.get("input")), reason=_reason(err))


# pydantic's error kinds in WSME's words (what Octavia answers), with the limit from the
# error's context; our own validators' messages (value_error) are already worded so.
_REASONS = {
    "greater_than_equal": "Value should be greater or equal to {ge}",
    "greater_than": "Value should be greater than {gt}",
    "less_than_equal": "Value should be lower or equal to {le}",
    "less_than": "Value should be lower than {lt}",
    "string_too_short": "Value should have a minimum character requirement of {min_length}",
    "string_too_long": "Value should have a maximum character requirement of {max_length}",
    "too_short": "Value should have at least {min_length} items",
    "too_long": "Value should have at most {max_length} items",
    "string_pattern_mismatch": "Value should match the pattern {pattern}",
    "literal_error": "Value should be one of: {expected}",
    "enum": "Value should be one of: {expected}",
    "int_type": "Value should be an integer",
    "int_parsing": "Value should be an integer",
    "int_from_float": "Value should be an integer",
    "float_type": "Value should be a number",
    "float_parsing": "Value should be a number",
    "string_type": "Value should be a string",
    "bool_type": "Value should be a boolean",
    "bool_parsing": "Value should be a boolean",
    "list_type": "Value should be a list",
    "dict_type": "Value should be a JSON object",
    "model_type": "Value should be a JSON object",
    "model_attributes_type": "Value should be a JSON object",
}


def _reason(err: Any) -> str:
    template = _REASONS.get(err["type"])
    if template is not None:
        try:
            return template.format(**err.get("ctx", {}))
        except (KeyError, IndexError):
            pass  # a context without the limit: pydantic's own words below
    # Any other kind: pydantic's sentence, its subject ("Input", "List"...) the value's.
    return _PYDANTIC_SUBJECT.sub("Value should", str(err["msg"]).removeprefix("Value error, "))


_PYDANTIC_SUBJECT = re.compile(r"^(Input|String|List|Dictionary|Tuple|Set|Object) should")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."
