"""End to end in cloud mode: `amphorae up` with Octavia's cloud drivers
(allowed_address_pairs_driver, compute_nova_driver, amphora_haproxy_rest_driver,
barbican_cert_manager) and Keystone auth, against the real services of tests/cloud.py,
with Nova's netns virt driver (tests/nova_virt) booting each amphora as a namespace that
runs our agent.

A project member (keystone-dev's project-a-member) drives it through openstacksdk: a
SINGLE and an ACTIVE_STANDBY load balancer on a Neutron VIP subnet, a TERMINATED_HTTPS
listener whose certificate container lives in Barbican, a pool with two members on a
second Neutron subnet (HTTP servers in namespaces on that network's bridge) and a health
monitor. HTTPS goes from a client namespace on the VIP network through the VIP; an
amphora failover replaces the Nova server and traffic flows again; a cascade delete
leaves no port, security group, server or server group.

Addresses (this test's block in 198.19.200.0/21): management 198.19.204.0/24, VIP
198.19.205.0/24, members 198.19.206.0/24. Neutron allocates from .10-.199; the members
and the client sit above. Every cloud object is named ``amph-e2e-<hex>...`` (or what
Octavia names it) and deleted at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest

from amphorae.common import pki
from tests import cloud as osdev
from tests import dataplane as dp
from tests import leftovers, netns, nova_env, servers
from tests.functional.test_barbican_cert_manager import Store
from tests.members import MemberFarm
from tests.nova_env import Env

MGMT_CIDR = "198.19.204.0/24"
VIP_CIDR = "198.19.205.0/24"
MEMBER_CIDR = "198.19.206.0/24"
POOL = ("10", "199")  # Neutron's allocation range (last octet) on the VIP and member subnets
MEMBERS = {"m1": 201, "m2": 202}
CLIENT_HOST = 250
ACTIVE_TIMEOUT = 300.0  # boots queue behind the rig's single-worker Nova API
GONE_TIMEOUT = 120.0
FIGURES = Path("/tmp/amph-cloud-e2e-figures.json")


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

    def logs(self, lines: int = 80) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _on_our_api(cloud: osdev.Cloud, url: str, user: str, project: str,
                password: str = osdev.PASSWORD) -> openstack.connection.Connection:
    """A Keystone login whose load-balancer calls go to the API under test."""
    return openstack.connection.Connection(
        auth=cloud.auth(user, project, password), region_name=osdev.REGION,
        identity_api_version="3", interface="public", load_balancer_endpoint_override=url)


def _config(cloud: osdev.Cloud, env: Env, state: Path, port: int, hm_port: int) -> Path:
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
controller_ip_port_list = {MGMT_CIDR.rsplit('.', 1)[0]}.1:{hm_port}
heartbeat_timeout = 30

[house_keeping]
cleanup_interval = 5
""")
    return path


@contextlib.contextmanager
def _running_up(config: Path, url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(servers.VENV_BIN / "amphorae"), "up", "--config-file",
                                 str(config)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        def up() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                import requests

                requests.get(url + "/", timeout=1)
            except OSError:
                return False
            return True

        dp.wait_for(up, "the API answering", timeout=90)
        yield proc
    finally:
        servers.stop_group(proc, 20)


def _user_networks(conn: openstack.connection.Connection, hexid: str,
                   made: list[Callable[[], object]]) -> tuple[Any, Any, Any, Any]:
    nets = []
    for label, cidr in (("vip", VIP_CIDR), ("members", MEMBER_CIDR)):
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


@pytest.fixture(scope="module")
def plane(cloud: osdev.Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    netns.require_root()
    hexid = secrets.token_hex(3)
    state = tmp_path_factory.mktemp(f"amph-e2e-{hexid}")
    leftovers.register(state, f"amph-{hexid}")  # and the member/client namespaces
    user = cloud.connect()  # project-a-member in project-a
    made: list[Callable[[], object]] = []
    store = Store(user)
    made.append(store.clean)
    try:
        with nova_env.nova_env(cloud, MGMT_CIDR) as env:
            vip_net, vip_subnet, member_net, member_subnet = _user_networks(user, hexid, made)
            # The member and client namespaces sit on the bridges the virt driver plugs
            # the amphorae's ports into (made here first; removed at the end).
            farms = []
            for net, cidr in ((member_net, MEMBER_CIDR), (vip_net, VIP_CIDR)):
                bridge = nova_env.bridge(net.id)
                farm = MemberFarm(hexid, bridge, cidr, state)
                farms.append(farm)
                made.append(lambda farm=farm, bridge=bridge: (
                    farm.close(), netns.run("ip", "link", "delete", bridge, check=False)))
            member_farm, client_farm = farms
            members = {name: member_farm.add(name, host) for name, host in MEMBERS.items()}
            client_farm.add("client", CLIENT_HOST)
            ca = pki.create_ca("amphorae e2e CA", digest=dp.DIGEST)
            server_cert = pki.issue_server_cert(ca, "www.e2e.example", validity=3600,
                                                digest=dp.DIGEST)
            tls_ref = store.container("tls", certificate=server_cert.cert_pem(),
                                      private_key=server_cert.key_pem())
            port, hm_port = servers.free_port(), servers.free_port()
            url = f"http://127.0.0.1:{port}"
            config = _config(cloud, env, state, port, hm_port)
            log = state / "up.log"
            with _running_up(config, url, log):
                yield Plane(env, url, state, log, _on_our_api(cloud, url, "project-a-member",
                                                              "project-a"),
                            _on_our_api(cloud, url, "admin", "admin", osdev.ADMIN_PASSWORD),
                            vip_net, vip_subnet, member_subnet, client_farm.namespace("client"),
                            members, tls_ref, server_cert, ca)
            for undo in reversed(made):
                undo()
            made.clear()
    finally:
        for undo in reversed(made):
            with contextlib.suppress(Exception):
                undo()


# -- helpers -------------------------------------------------------------------------------

def _wait_lb(plane: Plane, lb_id: str, timeout: float = ACTIVE_TIMEOUT) -> Any:
    found: dict[str, Any] = {}

    def active() -> bool:
        found["lb"] = lb = plane.member.load_balancer.get_load_balancer(lb_id)
        assert lb.provisioning_status != "ERROR", f"{lb_id} ERROR:\n{plane.logs()}"
        return bool(lb.provisioning_status == "ACTIVE")

    dp.wait_for(active, f"load balancer {lb_id} ACTIVE", timeout=timeout)
    return found["lb"]


def _https(plane: Plane, vip: str, count: int) -> list[str]:
    """``count`` HTTPS requests from the client namespace through the VIP; the bodies."""
    plane.state.joinpath("ca.pem").write_bytes(plane.ca.cert_pem())
    bodies = []
    for _ in range(count):
        done = netns.run("curl", "-sS", "--max-time", "5", "--cacert",
                         str(plane.state / "ca.pem"), "--resolve",
                         f"www.e2e.example:443:{vip}", "https://www.e2e.example/",
                         ns=plane.client_ns, check=False)
        bodies.append(done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr}")
    return bodies


def _served_by_members(plane: Plane, vip: str, timeout: float = 60.0) -> list[str]:
    """Waits until both members answer through the VIP (round robin); the answers."""
    seen: dict[str, list[str]] = {}

    def both() -> bool:
        seen["bodies"] = bodies = _https(plane, vip, 4)
        return {dp_member(b) for b in bodies} == set(plane.members)

    try:
        dp.wait_for(both, f"both members through {vip}", timeout=timeout)
    except AssertionError:
        raise AssertionError(f"answers: {seen.get('bodies')}\n{plane.logs()}") from None
    return seen["bodies"]


def dp_member(body: str) -> str | None:
    """The member server names itself in its answer (tests/dataplane.py)."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return str(json.loads(body)["member"])
    return body.split()[0] if body and not body.startswith("error") else None


def _amphorae(plane: Plane, lb_id: str) -> list[Any]:
    return [a for a in plane.admin.load_balancer.amphorae(loadbalancer_id=lb_id)
            if a.status != "DELETED"]


def neutron_view(plane: Plane, lb_id: str, amphorae: list[Any]) -> dict[str, Any]:
    """The Neutron objects of a load balancer as the service user sees them."""
    net = plane.env.service.network
    vip_ports = list(plane.env.admin.network.ports(name=f"octavia-lb-{lb_id}"))
    view: dict[str, Any] = {"vip_port": [_port(p) for p in vip_ports], "amphorae": {}}
    for amp in amphorae:
        view["amphorae"][amp.id] = {
            "role": amp.role, "compute_id": amp.compute_id,
            "ports": [_port(p) for p in plane.env.admin.network.ports(
                device_id=amp.compute_id)]}
    groups = list(net.security_groups(name=f"lb-{lb_id}"))
    view["security_groups"] = [{
        "name": g.name, "project_id": g.project_id,
        "rules": sorted((r["direction"], r["ethertype"], r["protocol"],
                         r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"],
                         r["remote_group_id"] and "self") for r in g.security_group_rules)}
        for g in groups]
    return view


def _port(p: Any) -> dict[str, Any]:
    return {"name": p.name, "network_id": p.network_id, "device_owner": p.device_owner,
            "device_id": p.device_id, "admin_state_up": p.is_admin_state_up,
            "fixed_ips": [f["ip_address"] for f in p.fixed_ips],
            "allowed_address_pairs": [a["ip_address"] for a in p.allowed_address_pairs or []],
            "security_groups": len(p.security_group_ids or []), "project_id": p.project_id}


def _record(key: str, value: Any) -> None:
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[key] = value
    FIGURES.write_text(json.dumps(data, indent=1, default=str))


# -- the test ------------------------------------------------------------------------------

@pytest.mark.parametrize("topology", ["SINGLE", "ACTIVE_STANDBY"])
def test_https_through_the_vip_failover_and_cascade_delete(plane: Plane, topology: str) -> None:
    lbs = plane.member.load_balancer
    flavor_id = _pair_flavor(plane) if topology == "ACTIVE_STANDBY" else None
    started = time.monotonic()
    lb = lbs.create_load_balancer(name=f"amph-e2e-{topology.lower()}",
                                  vip_subnet_id=plane.vip_subnet.id,
                                  **({"flavor_id": flavor_id} if flavor_id else {}))
    try:
        lb = _wait_lb(plane, lb.id)
        post_to_active = time.monotonic() - started
        for amp in _amphorae(plane, lb.id):
            nova_env.register_server(amp.compute_id)
        listener = lbs.create_listener(loadbalancer_id=lb.id, protocol="TERMINATED_HTTPS",
                                       protocol_port=443,
                                       default_tls_container_ref=plane.tls_ref)
        _wait_lb(plane, lb.id)
        pool = lbs.create_pool(listener_id=listener.id, protocol="HTTP",
                               lb_algorithm="ROUND_ROBIN")
        _wait_lb(plane, lb.id)
        for name, address in plane.members.items():
            lbs.create_member(pool, name=name, address=address, protocol_port=dp.HTTP.port,
                              subnet_id=plane.member_subnet.id)
            _wait_lb(plane, lb.id)
        lbs.create_health_monitor(pool_id=pool.id, type="HTTP", delay=2, timeout=1,
                                  max_retries=2, url_path="/")
        _wait_lb(plane, lb.id)

        amps = _amphorae(plane, lb.id)
        assert len(amps) == (1 if topology == "SINGLE" else 2)
        view = neutron_view(plane, lb.id, amps)
        _record(f"{topology}: neutron", view)
        _record(f"{topology}: POST->ACTIVE s", round(post_to_active, 1))
        _check_neutron(plane, lb, view)

        _served_by_members(plane, lb.vip_address)

        # Failover of one amphora (the MASTER of a pair): a new Nova server replaces it.
        victim = next(a for a in amps if a.role in ("STANDALONE", "MASTER"))
        plane.admin.load_balancer.failover_amphora(victim.id)
        dp.wait_for(lambda: victim.compute_id not in
                    {a.compute_id for a in _amphorae(plane, lb.id)}
                    and lbs.get_load_balancer(lb.id).provisioning_status == "ACTIVE",
                    "the failover done", timeout=ACTIVE_TIMEOUT)
        for amp in _amphorae(plane, lb.id):
            nova_env.register_server(amp.compute_id)
        nova_env.wait("the old server gone", lambda: not _server_exists(plane,
                                                                        victim.compute_id),
                      GONE_TIMEOUT, 1.0)
        _served_by_members(plane, lb.vip_address)
        final_amps = _amphorae(plane, lb.id)
    except BaseException:
        print(plane.logs(200))
        with contextlib.suppress(Exception):  # the fixture's networks need the ports gone
            lbs.delete_load_balancer(lb.id, cascade=True, ignore_missing=True)
            _wait_gone(plane, lb.id)
            _check_nothing_left(plane, lb.id, _amphorae(plane, lb.id))
        raise
    lbs.delete_load_balancer(lb.id, cascade=True)
    _wait_gone(plane, lb.id)
    _check_nothing_left(plane, lb.id, [victim, *final_amps])


def _pair_flavor(plane: Plane) -> str:
    lbs = plane.admin.load_balancer
    name = f"amph-e2e-pair-{secrets.token_hex(3)}"
    profile = lbs.create_flavor_profile(
        name=name, provider_name="amphora",
        flavor_data=json.dumps({"loadbalancer_topology": "ACTIVE_STANDBY"}))
    return str(lbs.create_flavor(name=name, flavor_profile_id=profile.id, is_enabled=True).id)


def _server_exists(plane: Plane, server_id: str) -> bool:
    try:
        server = plane.env.admin.compute.get_server(server_id)
    except openstack.exceptions.NotFoundException:
        return False
    return server.status != "DELETED"


def _wait_gone(plane: Plane, lb_id: str) -> None:
    def gone() -> bool:
        try:
            lb = plane.member.load_balancer.get_load_balancer(lb_id)
        except openstack.exceptions.NotFoundException:
            return True
        return bool(lb.provisioning_status == "DELETED")

    dp.wait_for(gone, f"load balancer {lb_id} deleted", timeout=GONE_TIMEOUT)


def _check_neutron(plane: Plane, lb: Any, view: dict[str, Any]) -> None:
    """What Octavia makes: the VIP port (admin down, the user's project), one port per
    amphora on the VIP network with the VIP as allowed address pair, both in the
    ``lb-<id>`` group, which opens the listener's port."""
    (vip_port,) = view["vip_port"]
    assert vip_port["fixed_ips"] == [lb.vip_address]
    assert vip_port["device_owner"] == "Octavia" and not vip_port["admin_state_up"]
    assert vip_port["project_id"] == plane.member.current_project_id
    for amp in view["amphorae"].values():
        on_vip = [p for p in amp["ports"] if p["network_id"] == plane.vip_net.id]
        assert len(on_vip) == 1, amp
        assert on_vip[0]["allowed_address_pairs"] == [lb.vip_address]
        assert on_vip[0]["device_owner"].startswith("compute:")
        assert on_vip[0]["name"].startswith("octavia-lb-vrrp-")
    (group,) = view["security_groups"]
    assert ("ingress", "IPv4", "tcp", 443, 443, None, None) in group["rules"]


def _check_nothing_left(plane: Plane, lb_id: str, amps: list[Any]) -> None:
    """No port, security group, server or server group of the load balancer, listed as
    the service user and as admin."""
    for conn in (plane.env.service, plane.env.admin):
        def left(conn: openstack.connection.Connection = conn) -> list[str]:
            found = [p.name for p in conn.network.ports() if lb_id in (p.name or "")
                     or any(a.id in (p.name or "") for a in amps)]
            found += [g.name for g in conn.network.security_groups() if lb_id in g.name]
            found += [s.name for s in conn.compute.servers(all_projects=True)
                      if any(a.id in s.name for a in amps)]
            found += [g.name for g in conn.compute.server_groups(all_projects=True)
                      if lb_id in g.name]
            return found

        try:
            nova_env.wait("nothing left", lambda left=left: not left(), GONE_TIMEOUT, 2.0)
        except AssertionError:
            raise AssertionError(f"left behind: {left()}\n{plane.logs()}") from None
    for amp in amps:
        assert not nova_env.netns_exists(nova_env.namespace(amp.compute_id))

