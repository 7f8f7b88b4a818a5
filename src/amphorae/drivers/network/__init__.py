"""Network drivers: where VIP and member addresses come from."""

from amphorae.drivers.network.local import LocalNetworkDriver, get_driver

__all__ = ["LocalNetworkDriver", "get_driver"]
