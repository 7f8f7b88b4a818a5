"""The UDP part of a load balancer as the JSON document the controller sends the agent.

An amphora balances UDP listeners with nftables (contract.nftables), and its agent health
checks their members itself, so it needs the model rather than a rendered script: it
re-renders the rules whenever the set of healthy members changes. The document holds
the load balancer with its UDP listeners and their default pools only::

    {"version": 1, "load_balancer": <dataclasses.asdict(LoadBalancer)>}

:func:`render` produces it (sorted keys: the same model always gives the same bytes, so
the controller can compare it with what the agent holds); :func:`parse` rebuilds the
model, refusing unknown fields and values of the wrong type with ValueError.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from amphorae.common import constants
from amphorae.contract import model

VERSION = 1


def udp_part(lb: model.LoadBalancer) -> model.LoadBalancer:
    """``lb`` with only its UDP listeners and the pools they use; no HAProxy peers."""
    listeners = tuple(li for li in lb.listeners if li.protocol == constants.UDP)
    used = {li.default_pool_id for li in listeners}
    return dataclasses.replace(lb, listeners=listeners, peers=(),
                               pools=tuple(p for p in lb.pools if p.id in used))


def render(lb: model.LoadBalancer) -> str:
    document = {"version": VERSION, "load_balancer": dataclasses.asdict(udp_part(lb))}
    return json.dumps(document, sort_keys=True, indent=1) + "\n"


def parse(text: str | bytes) -> model.LoadBalancer:
    """The load balancer of a document made by :func:`render`."""
    try:
        document = json.loads(text)
    except ValueError as exc:  # also bad UTF-8
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError(f"expected an object with \"version\": {VERSION}")
    if set(document) != {"version", "load_balancer"}:
        raise ValueError("expected exactly the fields version and load_balancer")
    return _dataclass(model.LoadBalancer, document["load_balancer"], "load_balancer")


_T = typing.TypeVar("_T")


def _dataclass(cls: type[_T], data: Any, where: str) -> _T:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {name: _value(hints[name], value, f"{where}.{name}")
              for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"{where}: {exc}") from None


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _value(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} items")
        return tuple(_value(a, v, f"{where}[{i}]")
                     for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is an int in Python, but not in this document.
    if isinstance(hint, type) and isinstance(value, hint) and (
            hint is bool or not isinstance(value, bool)):
        return value
    raise ValueError(f"{where}: expected {getattr(hint, '__name__', hint)}, "
                     f"not {type(value).__name__}")
