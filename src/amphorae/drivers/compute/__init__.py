"""Compute drivers: where amphorae run (the embedded default: network namespaces)."""

from amphorae.drivers.compute.base import ACTIVE, BUILDING, DELETED, ERROR, ComputeDriver

__all__ = ["ACTIVE", "BUILDING", "DELETED", "ERROR", "ComputeDriver"]
