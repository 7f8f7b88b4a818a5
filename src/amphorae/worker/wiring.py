"""The worker's drivers, as configured in ``[controller_worker]``."""

from __future__ import annotations

import os
from pathlib import Path

from oslo_config import cfg

from amphorae.common import config
from amphorae.drivers import agent_client, network
from amphorae.drivers.amphora import AmphoraRef, RestAmphoraDriver
from amphorae.drivers.compute import amphora_boot, netns
from amphorae.drivers.network import ports
from amphorae.worker.reconciler import Drivers

COMPUTE = ("compute_netns_driver", "compute_noop_driver")
AMPHORA = ("amphora_haproxy_rest_driver", "amphora_noop_driver")
NETWORK = ("network_local_driver", network.NOOP)


def ca_dir(conf: cfg.ConfigOpts = config.CONF) -> str:
    """The controller's CA (issues agent server and controller client certificates)."""
    return os.path.join(config.state_path(conf), "ca")


def build(conf: cfg.ConfigOpts = config.CONF) -> Drivers:
    worker = conf.controller_worker
    for label, name, known in (("compute_driver", worker.compute_driver, COMPUTE),
                               ("amphora_driver", worker.amphora_driver, AMPHORA),
                               ("network_driver", worker.network_driver, NETWORK)):
        if name not in known:
            raise ValueError(f"[controller_worker] {label} = {name}: not one of "
                             f"{', '.join(known)}")
    from amphorae.drivers import noop

    if worker.compute_driver == "compute_noop_driver":
        compute = noop.NoopCompute()
        booter = None
    else:
        booter = amphora_boot.AmphoraBooter(netns.NetnsComputeDriver(conf), ca_dir(conf),
                                            cert_validity=conf.certificates.cert_validity_time,
                                            heartbeat=heartbeat_target(conf))
        compute = booter
    if worker.amphora_driver == "amphora_noop_driver" or booter is None:
        amphora = noop.NoopAmphoraDriver()
    else:
        amphora = _rest_driver(booter, conf)
    plugger = (noop.NoopPlugger() if worker.network_driver == network.NOOP
               or booter is None else ports.PortPlugger())
    return Drivers(compute=compute, plugger=plugger, amphora=amphora,
                   network=network.get_driver())


def heartbeat_target(conf: cfg.ConfigOpts) -> amphora_boot.HeartbeatTarget:
    from amphorae.drivers.compute.heartbeat_endpoints import endpoints

    _, controllers = endpoints(conf)
    return amphora_boot.HeartbeatTarget(key=config.heartbeat_key(conf),
                                        controllers=tuple(controllers),
                                        interval=conf.health_manager.heartbeat_interval)


def _rest_driver(booter: amphora_boot.AmphoraBooter,
                 conf: cfg.ConfigOpts) -> RestAmphoraDriver:
    ha = conf.haproxy_amphora

    def client_for(amp: AmphoraRef) -> agent_client.AgentClient:
        return booter.client(amp.id, amp.management_ip,
                             max_retries=ha.active_connection_max_retries,
                             retry_interval=ha.active_connection_retry_interval)

    def base_path(amp: AmphoraRef) -> Path:
        return booter.folder(amp.id) / amphora_boot.AGENT_BASE

    return RestAmphoraDriver(client_for, base_path)
