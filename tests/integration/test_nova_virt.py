"""The netns virt driver (tests/nova_virt) under the real Nova of tests/cloud.py: a server
booted by the Nova compute driver runs our agent in a namespace, reachable over mutual
TLS on its Neutron address; interface attach plugs a port; delete removes it all.

Addresses: the management subnet 198.19.200.0/24, a second network 198.19.201.0/24 (the
virt driver puts their gateways on its bridges: both lie in its 198.19.200.0/21).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amphorae.common import config
from amphorae.drivers.compute import agent_config, base
from amphorae.drivers.compute.nova import NovaComputeDriver
from tests import cloud as osdev
from tests import nova_env
from tests.nova_env import Env

pytestmark = pytest.mark.skipif(not Path("/proc/self/ns/net").exists(), reason="no netns")

MGMT_CIDR = "198.19.200.0/24"
SECOND_CIDR = "198.19.201.0/24"
ACTIVE_TIMEOUT = 120.0
GONE_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def env(cloud: osdev.Cloud) -> Iterator[Env]:
    with nova_env.nova_env(cloud, MGMT_CIDR) as made:
        yield made


@pytest.fixture(params=[False, True], ids=["config-drive", "cloud-init"])
def driver(request: pytest.FixtureRequest, env: Env,
           tmp_path: Path) -> Iterator[NovaComputeDriver]:
    overrides = {
        ("state_path", None): str(tmp_path),
        ("amp_image_tag", "controller_worker"): env.tag,
        ("amp_flavor_id", "controller_worker"): env.flavor_id,
        ("amp_boot_network_list", "controller_worker"): [env.network_id],
        ("user_data_config_drive", "controller_worker"): request.param,
        ("controller_ip_port_list", "health_manager"): ["198.19.200.1:5555"],
    }
    for (name, group), value in overrides.items():
        config.CONF.set_override(name, value, group=group)
    drv = NovaComputeDriver(config.CONF, env.service,
                            deployment=f"amph-test-{secrets.token_hex(4)}")
    try:
        yield drv
    finally:
        for instance in drv.list_instances():
            drv.delete(instance.amphora_id)
        nova_env.wait("the test's servers to be gone", lambda: not drv.list_instances(),
                      GONE_TIMEOUT)
        for name, group in overrides:
            config.CONF.clear_override(name, group=group)


def test_a_server_runs_our_agent_in_a_namespace_until_deleted(
        env: Env, driver: NovaComputeDriver) -> None:
    amp_id = str(uuid.uuid4())
    first = driver.build(amp_id)
    nova_env.register_server(first.compute_id)

    def active() -> base.Instance | None:
        instance = driver.build(amp_id)
        assert instance.status in (base.BUILDING, base.ACTIVE), instance
        return instance if instance.status == base.ACTIVE else None

    instance = nova_env.wait("the server ACTIVE", active, ACTIVE_TIMEOUT, 1.0)
    assert instance.lb_network_ip is not None
    ns = nova_env.namespace(instance.compute_id)
    (port,) = env.admin.network.ports(device_id=instance.compute_id)
    eth0 = nova_env.ns_links(ns)["eth0"]
    assert eth0["address"] == port.mac_address
    assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == [
        instance.lb_network_ip]

    # ACTIVE means the agent answers: over mutual TLS, with the controller CA's client
    # certificate, on the Neutron address, through the bridge holding the gateway.
    client = agent_config.ControllerCA(agent_config.ca_dir(config.CONF)).client(
        amp_id, instance.lb_network_ip, max_retries=0)
    assert client.info().api_version

    _attach_and_detach_a_port(env, instance.compute_id, ns)

    pids = _pids(ns)
    assert pids, "the agent runs inside the namespace"
    driver.delete(amp_id)
    nova_env.wait("the server gone", lambda: driver.status(amp_id) == base.DELETED,
                  GONE_TIMEOUT)
    nova_env.wait("the namespace gone", lambda: not nova_env.netns_exists(ns), GONE_TIMEOUT)
    assert not nova_env.host_links(nova_env.veth_prefix(instance.compute_id))
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]


def _attach_and_detach_a_port(env: Env, server_id: str, ns: str) -> None:
    """As the Neutron network driver plugs VIP and member ports: Nova interface attach."""
    service = env.service
    net = service.network.create_network(name=f"amph-nvtest-{secrets.token_hex(4)}")
    try:
        subnet = service.network.create_subnet(network_id=net.id, ip_version=4,
                                               cidr=SECOND_CIDR)
        port = service.network.create_port(network_id=net.id, name="amph-nvtest-port")
        service.compute.create_server_interface(server_id, port_id=port.id)
        eth1 = nova_env.wait("eth1 in the namespace",
                             lambda: nova_env.ns_links(ns).get("eth1"), 60)
        assert eth1["address"] == port.mac_address
        assert port.fixed_ips[0]["ip_address"] in [a["local"] for a in eth1["addr_info"]]
        assert port.fixed_ips[0]["subnet_id"] == subnet.id
        service.compute.delete_server_interface(port.id, server=server_id)
        nova_env.wait("eth1 gone", lambda: "eth1" not in nova_env.ns_links(ns), 60)
        nova_env.wait("its bridge gone",
                      lambda: not nova_env.host_links(nova_env.bridge(net.id)), 30)
    finally:
        for p in service.network.ports(network_id=net.id):
            service.network.delete_port(p, ignore_missing=True)
        service.network.delete_network(net, ignore_missing=True)


def _pids(ns: str) -> list[int]:
    import subprocess

    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                         timeout=30, check=False).stdout
    return [int(p) for p in out.split()]


def test_a_server_without_the_agents_files_stays_a_fake_instance(env: Env) -> None:
    """As with Nova's fake driver: ACTIVE at once, nothing made on the host."""
    server = env.service.compute.create_server(
        name=f"amph-nvplain-{secrets.token_hex(4)}", image_id=env.image_id,
        flavor_id=env.flavor_id, networks=[{"uuid": env.network_id}])
    nova_env.register_server(server.id)
    try:
        active = env.service.compute.wait_for_server(server, wait=ACTIVE_TIMEOUT)
        assert active.status == "ACTIVE"
        assert not nova_env.netns_exists(nova_env.namespace(server.id))
        assert not nova_env.host_links(nova_env.veth_prefix(server.id))
    finally:
        env.service.compute.delete_server(server, ignore_missing=True)
        env.service.compute.wait_for_delete(server, wait=GONE_TIMEOUT)
