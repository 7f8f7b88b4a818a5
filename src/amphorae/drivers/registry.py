"""One registry for every driver: chosen by Octavia's option values in
``[controller_worker]`` (``compute_driver``, ``network_driver``, ``amphora_driver``) and
``[certificates] cert_manager``, found through entry points as OpenStack services find
theirs (stevedore), so a driver shipped in another package plugs in by name.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from oslo_config import cfg
from stevedore import driver as stevedore_driver
from stevedore import exception as stevedore_exception
from stevedore import extension

from amphorae.common import config
from amphorae.common.cert_manager import CertManager
from amphorae.drivers.amphora.base import AmphoraDriver
from amphorae.drivers.compute.base import ComputeDriver
from amphorae.drivers.network.base import NetworkDriver

COMPUTE = "amphorae.compute.drivers"
NETWORK = "amphorae.network.drivers"
AMPHORA = "amphorae.amphora.drivers"
CERT_MANAGER = "amphorae.cert_manager.backend"


@functools.cache  # the API asks per request (amphora_class); entry points are a scan
def driver_class(namespace: str, name: str, option: str) -> Any:
    """The class registered as ``name``; a name nobody registered is a configuration
    error that lists the known ones."""
    try:
        return stevedore_driver.DriverManager(namespace, name).driver
    except stevedore_exception.NoMatches:
        known = sorted(extension.ExtensionManager(namespace).names())
        raise ValueError(f"{option} = {name}: not one of {', '.join(known)}") from None


def compute(conf: cfg.ConfigOpts = config.CONF) -> ComputeDriver:
    name = conf.controller_worker.compute_driver
    cls = driver_class(COMPUTE, name, "[controller_worker] compute_driver")
    return cls.from_config(conf)  # type: ignore[no-any-return]


def network(conf: cfg.ConfigOpts = config.CONF) -> NetworkDriver:
    name = conf.controller_worker.network_driver
    cls = driver_class(NETWORK, name, "[controller_worker] network_driver")
    return cls.from_config(conf)  # type: ignore[no-any-return]


@functools.cache
def shared_network() -> NetworkDriver:
    """The API's network driver: one per process, for the configuration it started with."""
    return network(config.CONF)


def amphora_class(conf: cfg.ConfigOpts = config.CONF) -> type[AmphoraDriver]:
    name = conf.controller_worker.amphora_driver
    return driver_class(AMPHORA, name, "[controller_worker] amphora_driver")  # type: ignore[no-any-return]


def amphora(compute_driver: ComputeDriver, conf: cfg.ConfigOpts = config.CONF
            ) -> AmphoraDriver:
    return amphora_class(conf).from_config(conf, compute_driver)


def cert_manager(conf: cfg.ConfigOpts = config.CONF) -> CertManager:
    name = conf.certificates.cert_manager
    cls = driver_class(CERT_MANAGER, name, "[certificates] cert_manager")
    return cls()  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True)
class Drivers:
    """What a reconcile works with."""

    compute: ComputeDriver
    network: NetworkDriver
    amphora: AmphoraDriver
    cert_manager: CertManager


def load(conf: cfg.ConfigOpts = config.CONF) -> Drivers:
    """Every configured driver; a bad name fails here, at the service's start."""
    compute_driver = compute(conf)
    return Drivers(compute=compute_driver, network=network(conf),
                   amphora=amphora(compute_driver, conf), cert_manager=cert_manager(conf))
