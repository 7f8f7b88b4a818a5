"""A sample configuration file rendered from the registered options."""

from __future__ import annotations

import io
import textwrap

from oslo_config import cfg

from amphorae.common import config


def _format_default(opt: cfg.Opt) -> str:
    value = opt.default
    if value is None:
        return "<None>"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    return str(value)


def render(groups: list[tuple[str, list[cfg.Opt]]] | None = None) -> str:
    """The sample file for ``groups`` (default: the control plane's options)."""
    out = io.StringIO()
    merged: dict[str, list[cfg.Opt]] = {}  # a group several modules add to: one section
    for group, opts in groups if groups is not None else config.list_opts():
        merged.setdefault(group, []).extend(opts)
    for group, opts in merged.items():
        out.write(f"[{group}]\n\n")
        for opt in opts:
            if opt.help:
                for line in textwrap.wrap(opt.help, 76):
                    out.write(f"# {line}\n")
            kind = type(opt).__name__.removesuffix("Opt").lower() or "string"
            out.write(f"# ({kind} value)\n")
            if opt.secret:
                out.write(f"#{opt.dest} = <secret>\n\n")
            else:
                out.write(f"#{opt.dest} = {_format_default(opt)}\n\n")
    return out.getvalue()
