"""List queries as Octavia serves them: filters, tag filters, sorting, marker pagination
with ``*_links``, and field selection. One SQL query per page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import falcon
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    Select,
    SmallInteger,
    String,
    and_,
    exists,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import Session

from amphorae.common import config, errors
from amphorae.db.models import Tag

PAGING_PARAMS = {"limit", "marker", "page_reverse", "sort", "sort_key", "sort_dir", "fields"}
TAG_PARAMS = ("tags", "tags-any", "not-tags", "not-tags-any")
TRUE = {"true", "1", "yes", "on", "y", "t"}
FALSE = {"false", "0", "no", "off", "n", "f"}
MAX_LIMIT = 2 ** 31 - 1


@dataclasses.dataclass(frozen=True)
class Collection:
    """How one resource type is listed."""

    model: type
    key: str
    links_key: str
    # API attribute name -> column, for filtering and sorting.
    columns: dict[str, Any]
    # API attribute name -> relationship to join before filtering/sorting on it.
    joins: dict[str, Any] = dataclasses.field(default_factory=dict)
    taggable: bool = True
    # Extra query parameters the controller handles itself (e.g. project_id).
    extra_params: frozenset[str] = frozenset()
    # Filters whose values are a closed set: anything else is a 400 naming the filter.
    choices: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ListParams:
    limit: int | None
    marker: str | None
    page_reverse: bool
    sort: list[tuple[str, str]]
    fields: list[str] | None
    filters: dict[str, str]
    tags: dict[str, list[str]]
    raw_sort: dict[str, str]


def _one(value: str | list[str]) -> str:
    return value[-1] if isinstance(value, list) else value


def _many(value: str | list[str]) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [part for v in values for part in v.split(",") if part]


def parse(req: falcon.Request, coll: Collection) -> ListParams:
    params = req.params
    limit = _limit(params.get("limit"))
    sort, raw_sort = _sort(params, coll)
    fields = _many(params["fields"]) if "fields" in params else None
    tags = {name: _many(params[name]) for name in TAG_PARAMS if name in params}
    if tags and not coll.taggable:
        raise errors.InvalidFilterArgument()
    for name, values in tags.items():
        for tag in values:
            _check_length(Tag.tag.type, name, tag)
    filters: dict[str, str] = {}
    for name, value in params.items():
        if name in PAGING_PARAMS or name in TAG_PARAMS:
            continue
        if name in coll.extra_params:
            # Handled by the controller, checked here like any filter on its column.
            if name in coll.columns and isinstance(value, str):
                _coerce(coll.columns[name], name, value)
            continue
        if name not in coll.columns or isinstance(value, list):
            raise errors.InvalidFilterArgument()
        _coerce(coll.columns[name], name, value)
        if name in coll.choices and value not in coll.choices[name]:
            raise errors.InvalidInput(
                field=name, value=value,
                reason=f"Value should be one of {', '.join(coll.choices[name])}.")
        filters[name] = value
    marker = _one(params["marker"]) if "marker" in params else None
    page_reverse = _one(params.get("page_reverse", "False")).lower() == "true"
    return ListParams(limit, marker, page_reverse, sort, fields, filters, tags, raw_sort)


def _limit(value: str | list[str] | None) -> int | None:
    cap_text = config.CONF.api_settings.pagination_max_limit
    cap = None if cap_text == "infinite" else int(cap_text)
    if value is None:
        return cap
    text = _one(value)
    if text == "infinite":
        return cap
    try:
        limit = int(text)
    except ValueError:
        raise errors.PagingError(f"Supplied pagination limit '{text}' is not valid.") from None
    if limit < 1:
        return cap
    # Beyond any row count, and within what a database takes as a LIMIT.
    return min(limit, cap or MAX_LIMIT)


def _sort(params: dict[str, Any], coll: Collection) -> tuple[list[tuple[str, str]], dict]:
    keys: list[tuple[str, str]] = []
    raw: dict[str, str] = {}
    if "sort" in params:
        raw["sort"] = _one(params["sort"])
        for part in raw["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            keys.append((key, direction.lower() or "asc"))
    elif "sort_key" in params:
        raw["sort_key"] = _one(params["sort_key"])
        names = raw["sort_key"].split(",")
        dirs = _one(params["sort_dir"]).split(",") if "sort_dir" in params else []
        if "sort_dir" in params:
            raw["sort_dir"] = _one(params["sort_dir"])
        keys = [(k.strip(), (dirs[i].strip().lower() if i < len(dirs) else "asc"))
                for i, k in enumerate(names)]
    for key, direction in keys:
        if key not in coll.columns:
            raise errors.BadRequest(f"Supplied sort key '{key}' is not valid.")
        if direction not in ("asc", "desc"):
            raise errors.PagingError(f"Supplied sort direction '{direction}' is not valid.")
    return keys, raw


def _coerce(column: Any, name: str, text: str) -> Any:
    """The filter's value as its column holds it: a 400 when it cannot be one (Octavia's
    words), or when the column cannot hold it (naming the filter), never a database error."""
    kind = getattr(column, "type", None)
    if isinstance(kind, Boolean):
        low = text.lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        raise errors.InvalidFilterArgument()
    if isinstance(kind, Integer):
        try:
            value = int(text)
        except ValueError:
            raise errors.InvalidFilterArgument() from None
        lowest, highest = _int_range(kind)
        if not lowest <= value <= highest:
            raise _beyond(name, text, f"Value should be an integer from {lowest} to {highest}.")
        return value
    if isinstance(kind, DateTime):
        try:
            return dt.datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=None)
        except ValueError:
            raise errors.InvalidFilterArgument() from None
    if isinstance(kind, Float):
        try:
            number = float(text)
        except ValueError:
            raise errors.InvalidFilterArgument() from None
        if not math.isfinite(number):
            raise _beyond(name, text, "Value should be a finite number.")
        return number
    _check_length(kind, name, text)
    return text


def _int_range(kind: Integer) -> tuple[int, int]:
    # As the schema declares the column (PostgreSQL's sizes), so both databases agree.
    bits = 64 if isinstance(kind, BigInteger) else 16 if isinstance(kind, SmallInteger) else 32
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _check_length(kind: Any, name: str, text: str) -> None:
    length = getattr(kind, "length", None)
    if isinstance(kind, String) and length and len(text) > length:
        raise _beyond(name, text, f"Value should have at most {length} characters.")


def _beyond(name: str, text: str, reason: str) -> errors.APIError:
    shown = text if len(text) <= 100 else text[:97] + "..."
    return errors.InvalidInput(field=name, value=shown, reason=reason)


def _tag_clause(model: type, kind: str, tags: list[str]) -> Any:
    def has(tag: str) -> Any:
        return exists().where(Tag.resource_id == model.id, Tag.tag == tag)

    any_of = exists().where(Tag.resource_id == model.id, Tag.tag.in_(tags))
    if kind == "tags":
        return and_(*(has(t) for t in tags))
    if kind == "tags-any":
        return any_of
    if kind == "not-tags":
        return not_(and_(*(has(t) for t in tags)))
    return not_(any_of)


def query(coll: Collection, lp: ListParams, base: Select | None = None) -> Select:
    """The filtered, sorted (not yet paginated) select."""
    stmt = base if base is not None else select(coll.model)
    joined: set[str] = set()

    def join_for(name: str) -> None:
        nonlocal stmt
        rel = coll.joins.get(name)
        if rel is not None and str(rel) not in joined:
            joined.add(str(rel))
            stmt = stmt.join(rel)

    for name, text in lp.filters.items():
        join_for(name)
        column = coll.columns[name]
        stmt = stmt.where(column == _coerce(column, name, text))
    for kind, tags in lp.tags.items():
        if tags:
            stmt = stmt.where(_tag_clause(coll.model, kind, tags))
    for name, _ in lp.sort:
        join_for(name)
    return stmt


def _order(coll: Collection, lp: ListParams) -> list[tuple[Any, str]]:
    keys = [(coll.columns[k], d) for k, d in lp.sort]
    names = {k for k, _ in lp.sort}
    for default in ("created_at", "id"):
        if default not in names and hasattr(coll.model, default):
            keys.append((getattr(coll.model, default), "asc"))
    if lp.page_reverse:
        keys = [(col, "desc" if d == "asc" else "asc") for col, d in keys]
    return keys


def _after_marker(keys: list[tuple[Any, str]], values: Sequence[Any]) -> Any:
    """Rows strictly after the marker row in the given order."""
    clauses = []
    for i, (col, direction) in enumerate(keys):
        value = values[i]
        equal_prefix = [keys[j][0] == values[j] if values[j] is not None else keys[j][0].is_(None)
                        for j in range(i)]
        if value is None:
            step = col.is_not(None) if direction == "asc" else None
        else:
            step = col > value if direction == "asc" else or_(col < value, col.is_(None))
        if step is not None:
            clauses.append(and_(*equal_prefix, step))
    return or_(*clauses)


def _order_by(session: Session, keys: list[tuple[Any, str]]) -> list[Any]:
    # NULL sorts lowest everywhere (as SQLite and MariaDB do), so markers work alike.
    pg = session.get_bind().dialect.name == "postgresql"
    out = []
    for col, direction in keys:
        term = col.asc() if direction == "asc" else col.desc()
        if pg:
            term = term.nulls_first() if direction == "asc" else term.nulls_last()
        out.append(term)
    return out


def page(session: Session, coll: Collection, lp: ListParams, stmt: Select,
         req: falcon.Request, scalars: bool = True) -> tuple[list[Any], list[dict[str, str]]]:
    """One page of ``stmt`` (ORM objects, or plain rows with ``scalars=False``)."""
    keys = _order(coll, lp)
    if lp.marker:
        values = session.execute(
            stmt.with_only_columns(*(col for col, _ in keys)).where(coll.model.id == lp.marker)
        ).first()
        if values is None:
            raise errors.BadRequest(f"Supplied pagination marker '{lp.marker}' is not valid.")
        stmt = stmt.where(_after_marker(keys, values))
    stmt = stmt.order_by(*_order_by(session, keys))
    if lp.limit is not None:
        stmt = stmt.limit(lp.limit + 1)
    rows = list(session.scalars(stmt).unique()) if scalars else list(session.execute(stmt))
    more = lp.limit is not None and len(rows) > lp.limit
    rows = rows[: lp.limit] if lp.limit is not None else rows
    if lp.page_reverse:
        rows.reverse()
    return rows, _links(req, lp, rows, more)


def _links(req: falcon.Request, lp: ListParams, rows: list[Any],
           more: bool) -> list[dict[str, str]]:
    if not rows:
        return []
    base = config.CONF.api_settings.api_base_uri
    url = (base.rstrip("/") + req.path) if base else req.prefix + req.path
    common: dict[str, Any] = {}
    if lp.limit is not None:
        common["limit"] = lp.limit
    common.update(lp.raw_sort)
    common.update(lp.filters)
    for kind, tags in lp.tags.items():
        common[kind] = ",".join(tags)
    def href(**extra: Any) -> str:
        # Octavia writes sort values as given ("sort=name:asc,id:desc").
        return f"{url}?{urllib.parse.urlencode({**common, **extra}, safe=':,')}"

    links = []  # previous first, as Octavia lists them
    has_next = more if not lp.page_reverse else bool(lp.marker)
    has_prev = bool(lp.marker) if not lp.page_reverse else more
    if has_prev:
        links.append({"href": href(marker=rows[0].id, page_reverse="True"), "rel": "previous"})
    if has_next:
        links.append({"href": href(marker=rows[-1].id), "rel": "next"})
    return links


def select_fields(view: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if not fields:
        return view
    return {k: v for k, v in view.items() if k in fields}


def render(rows: list[Any], to_view: Callable[[Any], dict[str, Any]],
           fields: list[str] | None) -> list[dict[str, Any]]:
    return [select_fields(to_view(r), fields) for r in rows]
