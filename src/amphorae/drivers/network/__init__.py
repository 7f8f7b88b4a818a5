"""Network drivers: where VIP and member addresses come from."""

from __future__ import annotations

from amphorae.common import config
from amphorae.drivers.network.local import LocalNetworkDriver

NOOP = "network_noop_driver"


def get_driver() -> LocalNetworkDriver:
    """The configured driver (``[controller_worker] network_driver``)."""
    if config.CONF.controller_worker.network_driver == NOOP:
        from amphorae.drivers.noop import NoopNetworkDriver

        return NoopNetworkDriver()
    return LocalNetworkDriver()


__all__ = ["LocalNetworkDriver", "get_driver"]
