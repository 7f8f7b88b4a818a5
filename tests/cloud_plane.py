"""A control plane in cloud mode for end-to-end tests and benchmarks: `amphorae up` with
Octavia's cloud drivers (allowed_address_pairs_driver, compute_nova_driver,
amphora_haproxy_rest_driver, barbican_cert_manager) and Keystone auth, against the real
services of tests/cloud.py, whose Nova runs the netns virt driver (tests/nova_virt).

:func:`running_plane` makes, around it: the management network (service user, through
tests/nova_env.py), a VIP and a member network of project-a-member (Neutron allocating
.10-.199), member namespaces m1, m2 (.201, .202, HTTP) and a client namespace (.250 on the
VIP network) on the bridges the virt driver plugs those networks into, and a Barbican
certificate container of a test CA's certificate for ``www.e2e.example``. Everything is
named ``amph-…`` and removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack
import requests

from amphorae.common import pki
from tests import cloud as osdev
from tests import dataplane as dp
from tests import leftovers, netns, nova_env, servers
from tests.functional.test_barbican_cert_manager import Store
from tests.members import MemberFarm
from tests.nova_env import Env

POOL = ("10", "199")  # Neutron's allocation range (last octet) on the VIP and member subnets
MEMBERS = {"m1": 201, "m2": 202}
CLIENT_HOST = 250
SERVER_NAME = "www.e2e.example"
ACTIVE_TIMEOUT = 300.0  # boots queue behind the rig's single-worker Nova API
GONE_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True)
class Blocks:
    """The caller's three /24s (inside 198.19.200.0/21: the virt driver's gateway block)."""

    mgmt: str
    vip: str
    member: str


@dataclasses.dataclass
class Plane:
    """The control plane and what the test made around it."""

    env: Env
    url: str
    state: Path
    log: Path
    member: openstack.connection.Connection  # project-a-member on our API
    admin: openstack.connection.Connection  # Keystone admin on our API
    vip_net: Any
    vip_subnet: Any
    member_subnet: Any
    client_ns: str
    members: dict[str, str]  # name -> address
    tls_ref: str
    server_cert: pki.CertKey
    ca: pki.CertKey
    config: Path
    processes: dict[str, subprocess.Popen[bytes]]  # `amphorae <command>` by command

    def logs(self, lines: int = 80) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self, command: str) -> subprocess.Popen[bytes]:
        """Run ``amphorae <command>`` on this plane's configuration, logging into the
        plane's log (each line says which process wrote it)."""
        proc = _spawn(command, self.config, self.log)
        self.processes[command] = proc
        return proc

    def kill(self, command: str) -> None:
        """SIGKILL the process group of ``amphorae <command>`` (a crash), and reap it."""
        proc = self.processes.pop(command)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    @property
    def deployment_id(self) -> str:
        return (self.state / "deployment-id").read_text().strip()


def _on_our_api(cloud: osdev.Cloud, url: str, user: str, project: str,
                password: str = osdev.PASSWORD) -> openstack.connection.Connection:
    """A Keystone login whose load-balancer calls go to the API under test."""
    return openstack.connection.Connection(
        auth=cloud.auth(user, project, password), region_name=osdev.REGION,
        identity_api_version="3", interface="public", load_balancer_endpoint_override=url)


def _config(cloud: osdev.Cloud, env: Env, blocks: Blocks, state: Path, port: int,
            hm_port: int, extra: str) -> Path:
    login = cloud.service_login()
    path = state / "amphorae.conf"
    path.write_text(f"""[DEFAULT]
state_path = {state}

[api_settings]
bind_host = 127.0.0.1
bind_port = {port}
api_workers = 1
auth_strategy = keystone

[keystone_authtoken]
www_authenticate_uri = {cloud.auth_url}
{login}service_token_roles_required = true

[service_auth]
{login}
[neutron]
region_name = {osdev.REGION}
valid_interfaces = internal

[nova]
region_name = {osdev.REGION}
valid_interfaces = internal
enable_anti_affinity = true
# The rig has two compute hosts: a pair's replacement is booted while the failed
# amphora's server still exists, which hard anti-affinity cannot place (docs/cloud-e2e.md).
anti_affinity_policy = soft-anti-affinity

[glance]
region_name = {osdev.REGION}
valid_interfaces = internal

[database]
connection = sqlite:///{state}/amphorae.sqlite

[controller_worker]
network_driver = allowed_address_pairs_driver
compute_driver = compute_nova_driver
amphora_driver = amphora_haproxy_rest_driver
amp_image_tag = {env.tag}
amp_flavor_id = {env.flavor_id}
amp_boot_network_list = {env.network_id}
amp_active_wait_sec = 1
amp_active_retries = 240

[certificates]
cert_manager = barbican_cert_manager
region_name = {osdev.REGION}
endpoint_type = internalURL

[health_manager]
bind_ip = 0.0.0.0
bind_port = {hm_port}
controller_ip_port_list = {blocks.mgmt.rsplit('.', 1)[0]}.1:{hm_port}
heartbeat_timeout = 30

[house_keeping]
cleanup_interval = 5
{extra}""")
    return path


def _spawn(command: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([str(servers.VENV_BIN / "amphorae"), command,
                                 "--config-file", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def _running(commands: tuple[str, ...], config: Path, url: str, log: Path
             ) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """``amphorae <command>`` for each (``up``, or ``api``, ``worker``, ...), until the
    API answers; every one still running is stopped at the end."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for command in commands:
            processes[command] = _spawn(command, config, log)

        def up() -> bool:
            for proc in processes.values():
                assert proc.poll() is None, log.read_text()[-3000:]
            try:
                requests.get(url + "/", timeout=1)
            except OSError:
                return False
            return True

        dp.wait_for(up, "the API answering", timeout=90)
        yield processes
    finally:
        for proc in processes.values():
            servers.stop_group(proc, 20)


def _user_networks(conn: openstack.connection.Connection, hexid: str, blocks: Blocks,
                   made: list[Callable[[], object]]) -> tuple[Any, Any, Any, Any]:
    nets = []
    for label, cidr in (("vip", blocks.vip), ("members", blocks.member)):
        net = conn.network.create_network(name=f"amph-e2e-{hexid}-{label}")
        leftovers.register(nova_env.bridge(net.id))
        made.append(lambda net=net: _delete_network(conn, net))
        base = cidr.rsplit(".", 1)[0]
        subnet = conn.network.create_subnet(
            name=f"amph-e2e-{hexid}-{label}", network_id=net.id, ip_version=4, cidr=cidr,
            allocation_pools=[{"start": f"{base}.{POOL[0]}", "end": f"{base}.{POOL[1]}"}])
        nets += [net, subnet]
    return nets[0], nets[1], nets[2], nets[3]


def _delete_network(conn: openstack.connection.Connection, net: Any) -> None:
    for port in conn.network.ports(network_id=net.id):
        with contextlib.suppress(openstack.exceptions.SDKException):
            conn.network.delete_port(port, ignore_missing=True)
    conn.network.delete_network(net, ignore_missing=True)


@contextlib.contextmanager
def running_plane(cloud: osdev.Cloud, blocks: Blocks, state: Path,
                  commands: tuple[str, ...] = ("up",), extra_config: str = "",
                  ) -> Iterator[Plane]:
    """The control plane and everything around it (see the module's docstring), in
    ``state`` (a directory the caller made, named ``amph…`` under the temporary one):
    ``amphorae up``, or each of ``commands`` as a process of its own (a test that kills
    one); ``extra_config`` is appended to the configuration file."""
    hexid = secrets.token_hex(3)
    leftovers.register(state, f"amph-{hexid}")  # and the member/client namespaces
    user = cloud.connect()  # project-a-member in project-a
    made: list[Callable[[], object]] = []
    store = Store(user)
    made.append(store.clean)
    try:
        with nova_env.nova_env(cloud, blocks.mgmt) as env:
            vip_net, vip_subnet, member_net, member_subnet = _user_networks(
                user, hexid, blocks, made)
            # The member and client namespaces sit on the bridges the virt driver plugs
            # the amphorae's ports into (made here first; removed at the end).
            farms = []
            for net, cidr in ((member_net, blocks.member), (vip_net, blocks.vip)):
                bridge = nova_env.bridge(net.id)
                farm = MemberFarm(hexid, bridge, cidr, state)
                farms.append(farm)
                made.append(lambda farm=farm, bridge=bridge: (
                    farm.close(), netns.run("ip", "link", "delete", bridge, check=False)))
            member_farm, client_farm = farms
            members = {name: member_farm.add(name, host) for name, host in MEMBERS.items()}
            client_farm.add("client", CLIENT_HOST)
            ca = pki.create_ca("amphorae e2e CA", digest=dp.DIGEST)
            server_cert = pki.issue_server_cert(ca, SERVER_NAME, validity=3600,
                                                digest=dp.DIGEST)
            tls_ref = store.container("tls", certificate=server_cert.cert_pem(),
                                      private_key=server_cert.key_pem())
            port, hm_port = servers.free_port(), servers.free_port()
            url = f"http://127.0.0.1:{port}"
            config = _config(cloud, env, blocks, state, port, hm_port, extra_config)
            log = state / "up.log"
            with _running(commands, config, url, log) as processes:
                yield Plane(env, url, state, log, _on_our_api(cloud, url, "project-a-member",
                                                              "project-a"),
                            _on_our_api(cloud, url, "admin", "admin", osdev.ADMIN_PASSWORD),
                            vip_net, vip_subnet, member_subnet, client_farm.namespace("client"),
                            members, tls_ref, server_cert, ca, config, processes)
            for undo in reversed(made):
                undo()
            made.clear()
    finally:
        for undo in reversed(made):
            with contextlib.suppress(Exception):
                undo()



def wait_lb(plane: Plane, lb_id: str, timeout: float = ACTIVE_TIMEOUT) -> Any:
    found: dict[str, Any] = {}

    def active() -> bool:
        found["lb"] = lb = plane.member.load_balancer.get_load_balancer(lb_id)
        assert lb.provisioning_status != "ERROR", f"{lb_id} ERROR:\n{plane.logs()}"
        return bool(lb.provisioning_status == "ACTIVE")

    dp.wait_for(active, f"load balancer {lb_id} ACTIVE", timeout=timeout)
    return found["lb"]


def wait_gone(plane: Plane, lb_id: str) -> None:
    def gone() -> bool:
        try:
            lb = plane.member.load_balancer.get_load_balancer(lb_id)
        except openstack.exceptions.NotFoundException:
            return True
        return bool(lb.provisioning_status == "DELETED")

    dp.wait_for(gone, f"load balancer {lb_id} deleted", timeout=GONE_TIMEOUT)


def amphorae(plane: Plane, lb_id: str) -> list[Any]:
    return [a for a in plane.admin.load_balancer.amphorae(loadbalancer_id=lb_id)
            if a.status != "DELETED"]


def pair_flavor(plane: Plane) -> str:
    lbs = plane.admin.load_balancer
    name = f"amph-e2e-pair-{secrets.token_hex(3)}"
    profile = lbs.create_flavor_profile(
        name=name, provider_name="amphora",
        flavor_data=json.dumps({"loadbalancer_topology": "ACTIVE_STANDBY"}))
    return str(lbs.create_flavor(name=name, flavor_profile_id=profile.id, is_enabled=True).id)
