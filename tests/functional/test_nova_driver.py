"""The Nova compute driver against the real Nova, Glance and Neutron of tests/cloud.py
(a server goes ACTIVE after a few seconds on one of two compute hosts).

As admin, each run makes an image tagged ``amph-image-<hex>`` (a few bytes), a flavor
``amph-flavor-<hex>`` and, as the service user, a management network ``amph-mgmt-<hex>``
with a subnet in 198.19.96.0/24 (tests/nova_env.py). Nova runs the netns virt driver
(tests/nova_virt): these servers carry the agent's files, so each boots as a namespace
running the agent; the subnet lies outside the driver's gateway block, so its bridge has
no address and no packet leaves the namespaces. The driver runs as the service user with
a deployment id of its own, so it sees only the servers these tests made; everything is
deleted at the end, also when a test fails, and each test checks that the driver itself
left no server behind.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
import yaml
from cryptography import x509

from amphorae.common import config, pki
from amphorae.common import constants as c
from amphorae.db import engine
from amphorae.db import models as m
from amphorae.drivers.compute import agent_config, base
from amphorae.drivers.compute import nova as nova_mod
from amphorae.drivers.compute.nova import NovaComputeDriver
from amphorae.worker.queue import Claim
from amphorae.worker.reconciler import NotYet, Reconciler
from tests import cloud as osdev
from tests import fake_drivers as fake
from tests import nova_env
from tests.functional.test_reconciler import amphorae, new_lb, statuses
from tests.nova_env import Env

MGMT_CIDR = "198.19.96.0/24"
ACTIVE_TIMEOUT = 90.0  # fake virt: 4-6 s each, more while other helpers boot too
GONE_TIMEOUT = 60.0


_wait = nova_env.wait


@pytest.fixture(scope="module")
def env(cloud: osdev.Cloud) -> Iterator[Env]:
    with nova_env.nova_env(cloud, MGMT_CIDR) as made:
        yield made


@pytest.fixture
def conf(env: Env, tmp_path: Path) -> Iterator[object]:
    overrides = {
        ("state_path", None): str(tmp_path),
        ("amp_image_tag", "controller_worker"): env.tag,
        ("amp_flavor_id", "controller_worker"): env.flavor_id,
        ("amp_boot_network_list", "controller_worker"): [env.network_id],
        ("enable_anti_affinity", "nova"): True,
        ("controller_ip_port_list", "health_manager"): ["198.19.96.1:5555"],
    }
    for (name, group), value in overrides.items():
        config.CONF.set_override(name, value, group=group)
    yield config.CONF
    for name, group in overrides:
        config.CONF.clear_override(name, group=group)


def _servers_of(conn: openstack.connection.Connection, deployment: str) -> list[Any]:
    return [s for s in conn.compute.servers(details=True, all_projects=True)
            if (s.metadata or {}).get(nova_mod.META_DEPLOYMENT) == deployment]


@pytest.fixture
def make_driver(env: Env, conf: object) -> Iterator[Callable[..., NovaComputeDriver]]:
    """Drivers of a deployment of this test's own; its servers and server groups are
    removed at the end (and were they left by the driver, the test fails)."""
    deployment = f"amph-test-{secrets.token_hex(4)}"
    groups: list[str] = []

    def make(deployment_id: str = deployment) -> NovaComputeDriver:
        driver = NovaComputeDriver(config.CONF, env.service, deployment=deployment_id)
        create = driver.create_server_group

        def tracked(lb_id: str) -> str | None:
            groups.append(lb_id)
            return create(lb_id)

        driver.create_server_group = tracked  # type: ignore[method-assign]
        return driver

    yield make
    for server in _servers_of(env.admin, deployment):
        env.admin.compute.delete_server(server, ignore_missing=True)
    for lb_id in groups:
        for group in env.admin.compute.server_groups(all_projects=True):
            if group.name == nova_mod.SERVER_GROUP_PREFIX + lb_id:
                env.admin.compute.delete_server_group(group, ignore_missing=True)
    _wait("the test's servers to be gone", lambda: not _servers_of(env.admin, deployment),
          GONE_TIMEOUT)


def _until_active(driver: NovaComputeDriver, amphora_id: str,
                  group: str | None = None) -> base.Instance:
    def built() -> base.Instance | None:
        instance = driver.build(amphora_id, group)
        assert instance.status in (base.BUILDING, base.ACTIVE), instance
        return instance if instance.status == base.ACTIVE else None

    return _wait(f"amphora {amphora_id} ACTIVE", built, ACTIVE_TIMEOUT, 1.0)


def _delete_and_wait(env: Env, driver: NovaComputeDriver, *amphora_ids: str) -> None:
    for amphora_id in amphora_ids:
        driver.delete(amphora_id)
    _wait("the servers to be gone",
          lambda: not [s for s in _servers_of(env.admin, driver.deployment)
                       if s.metadata[nova_mod.META_AMPHORA] in amphora_ids], GONE_TIMEOUT)


def test_build_answers_building_then_active_with_its_management_address(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    driver = make_driver()
    amp_id = str(uuid.uuid4())
    first = driver.build(amp_id)
    assert first.status == base.BUILDING and first.lb_network_ip is None
    active = _until_active(driver, amp_id)
    assert active.compute_id == first.compute_id and driver.status(amp_id) == base.ACTIVE
    server = env.admin.compute.get_server(active.compute_id)
    assert server.name == f"amphora-{amp_id}"
    assert server.image.id == env.image_id and server.flavor.original_name.startswith(
        "amph-flavor-")
    assert server.has_config_drive in (True, "True")
    (port,) = env.admin.network.ports(device_id=server.id)
    assert port.network_id == env.network_id
    assert active.lb_network_ip == port.fixed_ips[0]["ip_address"]
    assert ipaddress.ip_address(active.lb_network_ip) in ipaddress.ip_network(MGMT_CIDR)
    assert active.cert_expiration is not None
    assert [i.amphora_id for i in driver.list_instances()] == [amp_id]


def test_user_data_carries_the_agents_configuration_and_certificates(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    config.CONF.set_override("user_data_config_drive", True, group="controller_worker")
    try:
        driver = make_driver()
    finally:
        config.CONF.clear_override("user_data_config_drive", group="controller_worker")
    amp_id = str(uuid.uuid4())
    instance = driver.build(amp_id)
    server = env.admin.compute.get_server(instance.compute_id)
    text = base64.b64decode(server.user_data).decode()
    assert text.startswith("#cloud-config\n")
    files = {f["path"]: base64.b64decode(f["content"])
             for f in yaml.safe_load(text)["write_files"]}
    layout = agent_config.VM_LAYOUT
    assert set(files) == {layout.server_cert, layout.client_ca, agent_config.VM_AGENT_CONF}
    agent_conf = files[agent_config.VM_AGENT_CONF].decode()
    assert f"amphora_id = {amp_id}\n" in agent_conf
    assert f"agent_server_cert = {layout.server_cert}\n" in agent_conf
    assert "controller_ip_port_list = 198.19.96.1:5555\n" in agent_conf
    assert f"heartbeat_key = {config.heartbeat_key(config.CONF)}\n" in agent_conf
    # The agent's certificate names the amphora and chains to the controller's CA.
    ca = driver.controller_ca.ca.cert
    cert = x509.load_pem_x509_certificate(files[layout.server_cert])
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == amp_id
    cert.verify_directly_issued_by(ca)
    assert files[layout.client_ca] == driver.controller_ca.ca.cert_pem()
    assert b"PRIVATE KEY" in files[layout.server_cert]
    assert instance.cert_expiration == pki.cert_expiration(cert)


def test_a_pair_in_its_anti_affinity_group_lands_on_two_hosts(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    driver = make_driver()
    lb_id = str(uuid.uuid4())
    group = driver.create_server_group(lb_id)
    assert group is not None and driver.create_server_group(lb_id) == group  # found again
    (found,) = [g for g in env.admin.compute.server_groups(all_projects=True)
                if g.name == f"octavia-lb-{lb_id}"]
    assert found.policy == "anti-affinity"
    pair = [str(uuid.uuid4()), str(uuid.uuid4())]
    for amp_id in pair:
        assert driver.build(amp_id, group).status == base.BUILDING
    servers = [env.admin.compute.get_server(_until_active(driver, a, group).compute_id)
               for a in pair]
    assert {s.compute_host for s in servers} == {"amph-compute-1", "amph-compute-2"}
    assert set(env.admin.compute.get_server_group(group).member_ids) == {
        s.id for s in servers}
    _delete_and_wait(env, driver, *pair)
    driver.delete_server_group(lb_id)
    assert not [g for g in env.admin.compute.server_groups(all_projects=True)
                if g.name == f"octavia-lb-{lb_id}"]
    driver.delete_server_group(lb_id)  # absent: fine


def test_a_build_repeated_after_a_crash_finds_its_server(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    amp_id = str(uuid.uuid4())
    first = make_driver().build(amp_id)
    # The worker died; another one (nothing in memory) builds the same amphora again.
    again = make_driver().build(amp_id)
    assert again.compute_id == first.compute_id
    # Two builds that raced both asked Nova: the oldest server stays, the other goes.
    # Nova's created_at counts whole seconds; within one the tie is broken by id.
    time.sleep(1.1)
    racer = make_driver()
    racer._boot(amp_id, None)
    assert len(_servers_of(env.admin, racer.deployment)) == 2
    assert racer.build(amp_id).compute_id == first.compute_id
    _wait("the second server to go", lambda: [s.id for s in _servers_of(
        env.admin, racer.deployment)] == [first.compute_id], GONE_TIMEOUT)


def test_delete_leaves_nothing_and_minds_no_absent_server(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    driver = make_driver()
    amp_id = str(uuid.uuid4())
    server_id = _until_active(driver, amp_id).compute_id
    _delete_and_wait(env, driver, amp_id)
    assert driver.status(amp_id) == base.DELETED and driver.list_instances() == []
    _wait("its port to go", lambda: not list(env.admin.network.ports(device_id=server_id)),
          GONE_TIMEOUT)
    driver.delete(amp_id)
    driver.delete(str(uuid.uuid4()))


def test_list_instances_shows_only_this_deployments_servers(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    ours, theirs = make_driver(), make_driver(f"amph-test-{secrets.token_hex(4)}")
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    ours.build(mine)
    try:
        theirs.build(other)
        assert [i.amphora_id for i in ours.list_instances()] == [mine]
        assert ours.status(other) == base.DELETED
    finally:
        _delete_and_wait(env, theirs, other)


def test_a_missing_image_tag_is_a_clear_error_and_boots_nothing(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    config.CONF.set_override("amp_image_tag", f"amph-image-{secrets.token_hex(4)}",
                             group="controller_worker")
    try:
        driver = make_driver()
    finally:
        config.CONF.clear_override("amp_image_tag", group="controller_worker")
    with pytest.raises(nova_mod.ComputeBuildError,
                       match=r"no active Glance image is tagged 'amph-image-\w+'.*"
                             r"amp_image_tag"):
        driver.build(str(uuid.uuid4()))
    assert driver.list_instances() == []


def test_an_unset_flavor_names_the_option(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    config.CONF.set_override("amp_flavor_id", "", group="controller_worker")
    try:
        driver = make_driver()
    finally:
        config.CONF.clear_override("amp_flavor_id", group="controller_worker")
    with pytest.raises(nova_mod.ComputeBuildError, match=r"amp_flavor_id: not set"):
        driver.build(str(uuid.uuid4()))


def test_the_reconciler_follows_a_pair_of_vms_to_active_and_tears_it_down(
        env: Env, make_driver: Callable[..., NovaComputeDriver], database_url: str,
        tmp_path: Path) -> None:
    """The worker's path with this driver (network and amphora drivers recording only:
    fake virt runs no agent): runs stop with NotYet while Nova boots, and the run that
    finds both servers ACTIVE records their ids and management addresses; the teardown
    removes servers and server group."""
    driver = make_driver()
    recording = fake.FakeCloud()
    reconciler = Reconciler(recording.drivers(str(tmp_path)), database_url)
    reconciler.d = dataclasses.replace(reconciler.d, compute=driver)
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_STANDBY)
    claim = Claim(target=ids["lb"], load_balancer_id=ids["lb"], job_ids=(),
                  actions=frozenset([(c.JOB_RECONCILE, None)]), attempts=1)

    def run() -> bool:
        try:
            reconciler.run(claim)
        except NotYet:
            return False
        return True

    waits = 0
    while not run():
        waits += 1
        assert waits < ACTIVE_TIMEOUT, "the pair never became ACTIVE"
        time.sleep(1)
    assert waits >= 1  # a VM takes seconds: at least one run had to come back
    assert statuses(database_url, ids)["lb"] == c.ACTIVE
    pair = amphorae(database_url, ids["lb"])
    servers = {s.id: s for s in _servers_of(env.admin, driver.deployment)}
    assert {a.compute_id for a in pair} == set(servers)
    assert all(ipaddress.ip_address(a.lb_network_ip) in ipaddress.ip_network(MGMT_CIDR)
               for a in pair)
    assert {s.compute_host for s in servers.values()} == {"amph-compute-1",
                                                          "amph-compute-2"}
    with engine.transaction(url=database_url) as session:
        session.get_one(m.LoadBalancer, ids["lb"]).provisioning_status = c.PENDING_DELETE
    assert run()
    assert statuses(database_url, ids)["lb"] == c.DELETED
    _wait("the pair's servers to go", lambda: not _servers_of(env.admin, driver.deployment),
          GONE_TIMEOUT)
    assert not [g for g in env.admin.compute.server_groups(all_projects=True)
                if g.name == f"octavia-lb-{ids['lb']}"]


def test_opaque_names_are_found_again(
        env: Env, make_driver: Callable[..., NovaComputeDriver]) -> None:
    config.CONF.set_override("random_amphora_name_length", 12, group="nova")
    try:
        driver, after_a_crash = make_driver(), make_driver()
    finally:
        config.CONF.clear_override("random_amphora_name_length", group="nova")
    amp_id = str(uuid.uuid4())
    first = driver.build(amp_id)
    server = env.admin.compute.get_server(first.compute_id)
    assert len(server.name) == 12 and server.name.startswith("a") and amp_id not in server.name
    assert after_a_crash.build(amp_id).compute_id == first.compute_id
    _delete_and_wait(env, driver, amp_id)
