"""The failure of a data-plane tool the agent drives (haproxy, keepalived, nft)."""

from __future__ import annotations


class ToolError(Exception):
    """``message`` says what failed; ``details`` holds the tool's own output."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details
