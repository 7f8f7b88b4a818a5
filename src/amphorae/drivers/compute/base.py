"""What the controller needs from a compute driver: amphorae that come and go."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# Compute status of an amphora, from what exists on the host.
BUILDING = "BUILDING"
ACTIVE = "ACTIVE"
DELETED = "DELETED"
ERROR = "ERROR"


class ComputeDriver(Protocol):
    def create(self, amphora_id: str) -> object:
        """Build the amphora; on failure nothing is left behind and the error is raised."""

    def delete(self, amphora_id: str) -> None:
        """Remove every trace of the amphora; fine on half-created or absent ones."""

    def status(self, amphora_id: str) -> str:
        """One of BUILDING, ACTIVE, DELETED, ERROR."""

    def start_process(self, amphora_id: str, argv: Sequence[str],
                      name: str | None = None) -> int:
        """Run ``argv`` inside the amphora as a tracked child; returns its pid."""
