"""A health monitor's expected_codes: HAProxy checks HTTP members against them, the agent
checks the members of UDP pools itself, so both must read the same text the same way."""

from __future__ import annotations

import re


def parse_expected_codes(text: str | None) -> tuple[int, ...]:
    """Octavia's expected_codes ("200", "200,202", "200-204", mixes) expanded and sorted.

    None or blank means 200, as in Octavia. Codes must lie in 100-599.
    """
    if text is None or not text.strip():
        return (200,)
    codes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d{3})(?:\s*-\s*(\d{3}))?", part)
        if not m:
            raise ValueError(f"invalid expected_codes item {part!r} in {text!r}")
        low = int(m.group(1))
        high = int(m.group(2)) if m.group(2) else low
        if not 100 <= low <= high <= 599:
            raise ValueError(f"invalid expected_codes range {part!r} in {text!r}")
        codes.update(range(low, high + 1))
    return tuple(sorted(codes))
