"""The Neutron network driver (allowed_address_pairs_driver) against the real Neutron and
Nova (fake virt) of tests/cloud.py: VIP ports made, adopted and released; amphora ports
with the VIPs as allowed address pairs, attached to real Nova servers; the security group
``lb-<id>`` with the rules Octavia makes, following listener changes; a plug interrupted
half-way completed by the next; user errors mapped to the API's; and nothing left.

Everything made here is named ``amph-nd-...`` (or by the driver, ``octavia-lb-...-<random
id>``, ``lb-<random id>``) and removed in teardown, also when a test fails. Subnets:
198.19.160.0/24 and 198.19.161.0/24 (VIP network), 198.19.162.0/24 (members) — Neutron
objects only, no packet is sent.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openstack.exceptions as os_exc
import pytest
from oslo_config import cfg

from amphorae.common import errors
from amphorae.drivers import cloud as cloud_conf
from amphorae.drivers.network import neutron_security
from amphorae.drivers.network.base import (
    Amphora,
    Opening,
    Subnet,
    VipPlug,
    VipSecurity,
)
from amphorae.drivers.network.neutron import NeutronNetworkDriver
from tests import cloud as osdev
from tests import servers

VIP_CIDR, VIP2_CIDR, MEMBER_CIDR = "198.19.160.0/24", "198.19.161.0/24", "198.19.162.0/24"
EGRESS_DEFAULTS = {("egress", "IPv4", None, None, None, None, None),
                   ("egress", "IPv6", None, None, None, None, None)}


def _hex() -> str:
    return secrets.token_hex(4)


def service_auth(cloud: osdev.Cloud) -> str:
    """The [service_auth] and [neutron]/[nova] sections that log in as the control
    plane's service user (tests/functional/test_cloud_connection.py)."""
    return f"""
[service_auth]
{cloud.service_login()}
[neutron]
region_name = {osdev.REGION}
valid_interfaces = internal

[nova]
region_name = {osdev.REGION}
valid_interfaces = internal
"""


@pytest.fixture(scope="module")
def driver(cloud: osdev.Cloud, tmp_path_factory: pytest.TempPathFactory
           ) -> NeutronNetworkDriver:
    path = tmp_path_factory.mktemp("amph-nd") / "amphorae.conf"
    path.write_text(service_auth(cloud))
    conf = cfg.ConfigOpts()
    cloud_conf.register(conf)
    conf(["--config-file", str(path)], project="amphorae-test", default_config_files=[])
    return NeutronNetworkDriver(cloud_conf.connection(conf), max_retries=5,
                                retry_interval=1, port_detach_timeout=30,
                                deployment=f"amph-nd-{_hex()}")


@pytest.fixture(scope="module")
def admin(cloud: osdev.Cloud) -> Any:
    return cloud.admin()


@pytest.fixture(scope="module")
def user(cloud: osdev.Cloud) -> Any:
    return cloud.connect()  # project-a-member: the load balancers' owner


def _subnet(raw: Any) -> Subnet:
    import ipaddress

    return Subnet(raw.id, raw.name, raw.network_id, ipaddress.ip_network(raw.cidr),
                  raw.gateway_ip)


class Nets:
    """The user's VIP network (two subnets) and member network."""

    def __init__(self, user: Any) -> None:
        tag = _hex()
        self.vip_net = user.network.create_network(name=f"amph-nd-vip-{tag}")
        self.member_net = user.network.create_network(name=f"amph-nd-member-{tag}")
        self.vip = _subnet(user.network.create_subnet(
            name=f"amph-nd-vip-{tag}", network_id=self.vip_net.id, cidr=VIP_CIDR,
            ip_version=4))
        self.vip2 = _subnet(user.network.create_subnet(
            name=f"amph-nd-vip2-{tag}", network_id=self.vip_net.id, cidr=VIP2_CIDR,
            ip_version=4))
        self.member = _subnet(user.network.create_subnet(
            name=f"amph-nd-member-{tag}", network_id=self.member_net.id, cidr=MEMBER_CIDR,
            ip_version=4))
        self.project_id = user.current_project_id

    def ports(self, admin: Any) -> list[Any]:
        return [*admin.network.ports(network_id=self.vip_net.id),
                *admin.network.ports(network_id=self.member_net.id)]

    def remove(self, admin: Any) -> None:
        for port in self.ports(admin):
            with contextlib.suppress(os_exc.NotFoundException):
                admin.network.delete_port(port)
        for net in (self.vip_net, self.member_net):
            admin.network.delete_network(net, ignore_missing=True)


@pytest.fixture
def nets(user: Any, admin: Any) -> Iterator[Nets]:
    made = Nets(user)
    try:
        yield made
    finally:
        made.remove(admin)


@pytest.fixture(scope="module")
def boot(admin: Any, driver: NeutronNetworkDriver) -> Iterator[Any]:
    """``boot()``: a Nova server of the service user (an amphora's instance), without
    ports, from a tiny image and flavor uploaded for this module; all deleted after."""
    tag = _hex()
    image = admin.image.create_image(name=f"amph-img-{tag}", data=io.BytesIO(b"\0" * 512),
                                     disk_format="raw", container_format="bare",
                                     visibility="public")
    flavor = admin.compute.create_flavor(name=f"amph-flavor-{tag}", ram=64, vcpus=1, disk=0)
    compute = driver.conn.compute
    made: list[Any] = []

    def _boot() -> Any:
        server = compute.create_server(name=f"amph-nd-amp-{_hex()}", image_id=image.id,
                                       flavor_id=flavor.id, networks="none")
        made.append(server)
        return compute.wait_for_server(server, wait=120)

    try:
        yield _boot
    finally:
        for server in made:
            compute.delete_server(server, ignore_missing=True)
        for server in made:
            with contextlib.suppress(os_exc.ResourceNotFound):
                compute.wait_for_delete(server, wait=120)
        admin.compute.delete_flavor(flavor, ignore_missing=True)
        admin.image.delete_image(image, ignore_missing=True)


@pytest.fixture
def lb_id(driver: NeutronNetworkDriver) -> Iterator[str]:
    """A load balancer id; whatever the driver made for it is removed after the test."""
    lb = str(uuid.uuid4())
    try:
        yield lb
    finally:
        driver.deallocate_vip(lb)


def _rules(conn: Any, group_id: str) -> set[tuple[Any, ...]]:
    return {(r.direction, r.ether_type, r.protocol, r.port_range_min, r.port_range_max,
             r.remote_ip_prefix, "self" if r.remote_group_id == group_id else r.remote_group_id)
            for r in conn.network.security_group_rules(security_group_id=group_id)}


def _pairs(raw: Any) -> list[str]:
    return sorted(p["ip_address"] for p in raw.allowed_address_pairs)


def _group(driver: NeutronNetworkDriver, lb: str) -> Any:
    groups = neutron_security.find_groups(driver.conn, lb)
    assert len(groups) == 1, groups
    return groups[0]


def _left(driver: NeutronNetworkDriver, nets: Nets, admin: Any, lb: str,
          amphorae: list[str]) -> list[str]:
    """What the driver made for ``lb`` and its amphorae and still exists."""
    names = {f"octavia-lb-{lb}", *(f"octavia-lb-vrrp-{a}" for a in amphorae),
             *(f"octavia-lb-member-{a}" for a in amphorae)}
    left = [f"port {p.name}" for p in nets.ports(admin) if p.name in names]
    left += [f"port {p.id} on lb-{lb}" for p in admin.network.ports(device_id=f"lb-{lb}")]
    left += [f"security group {g.name}" for g in admin.network.security_groups(
        name=f"lb-{lb}")]
    return left


def http_listener(port: int = 80, *cidrs: str) -> tuple[Opening, ...]:
    return tuple(Opening("tcp", port, c) for c in cidrs) or (Opening("tcp", port),)


# -- VIPs ---------------------------------------------------------------------------------


def test_vip_port_made_extended_found_again_and_deleted(
        driver: NeutronNetworkDriver, nets: Nets, admin: Any, lb_id: str) -> None:
    vip = driver.allocate_vip(lb_id, nets.vip, project_id=nets.project_id)
    raw = admin.network.get_port(vip.id)
    assert (raw.name, raw.device_owner, raw.device_id) == (
        f"octavia-lb-{lb_id}", "Octavia", f"lb-{lb_id}")
    assert raw.is_admin_state_up is False
    assert raw.project_id == nets.project_id
    assert vip.subnet_id == nets.vip.id and vip.network_id == nets.vip_net.id
    # The API retried: the same port and address.
    assert driver.allocate_vip(lb_id, nets.vip, project_id=nets.project_id) == vip
    # An additional VIP is one more fixed IP on the same port, at the address asked.
    extra = driver.allocate_vip(lb_id, nets.vip2, "198.19.161.40")
    assert extra.id == vip.id and extra.ip_address == "198.19.161.40"
    assert sorted(f["ip_address"] for f in admin.network.get_port(vip.id).fixed_ips) == \
        sorted([vip.ip_address, "198.19.161.40"])
    assert driver.get_port(vip.id) == vip
    driver.deallocate_vip(lb_id)
    assert driver.get_port(vip.id) is None
    assert _left(driver, nets, admin, lb_id, []) == []
    driver.deallocate_vip(lb_id)  # nothing left: fine


def test_vip_user_errors(driver: NeutronNetworkDriver, nets: Nets, admin: Any,
                         lb_id: str) -> None:
    taken = driver.allocate_vip(lb_id, nets.vip, "198.19.160.50")
    other = str(uuid.uuid4())
    try:
        with pytest.raises(errors.Conflict, match=re.escape("198.19.160.50")):
            driver.allocate_vip(other, nets.vip, "198.19.160.50")
        with pytest.raises(errors.ValidationError, match=re.escape("198.19.170.5")):
            driver.allocate_vip(other, nets.vip, "198.19.170.5")
        # One Neutron refuses although our subnet value would allow it (the network
        # address is no host address).
        with pytest.raises(errors.ValidationError, match=re.escape("vip_address 198.19.160.0")):
            driver.allocate_vip(other, nets.vip, "198.19.160.0")
        gone = Subnet(str(uuid.uuid4()), "gone", nets.vip_net.id, nets.vip.cidr, None)
        with pytest.raises(errors.InvalidSubresource, match=gone.id):
            driver.allocate_vip(other, gone)
        assert driver.get_subnet(gone.id) is None
        assert driver.get_subnet("not-an-id") is None
        assert driver.get_port(str(uuid.uuid4())) is None
        assert driver.get_network(str(uuid.uuid4())) is None
        with pytest.raises(errors.InvalidSubresource):
            driver.adopt_vip_port(other, str(uuid.uuid4()))
        with pytest.raises(errors.BadRequest, match=f"lb-{lb_id}"):
            driver.adopt_vip_port(other, taken.id)  # our VIP port is someone's device
    finally:
        driver.deallocate_vip(other)
    assert _left(driver, nets, admin, other, []) == []


def test_lookups(driver: NeutronNetworkDriver, nets: Nets) -> None:
    network = driver.get_network(nets.vip_net.id)
    assert network is not None and network.name == nets.vip_net.name
    assert sorted(s.id for s in network.subnets) == sorted([nets.vip.id, nets.vip2.id])
    subnet = driver.get_subnet(nets.member.id)
    assert subnet == nets.member
    assert str(subnet.cidr) == MEMBER_CIDR and subnet.gateway_ip == "198.19.162.1"
    assert driver.serves_networks is False


def test_adopted_port_is_marked_secured_and_released_not_deleted(
        driver: NeutronNetworkDriver, nets: Nets, user: Any, admin: Any,
        lb_id: str) -> None:
    own = user.network.create_port(name=f"amph-nd-user-{_hex()}", network_id=nets.vip_net.id,
                                   fixed_ips=[{"subnet_id": nets.vip.id}])
    before = sorted(own.security_group_ids)
    port = driver.adopt_vip_port(lb_id, own.id)
    assert (port.id, port.device_id) == (own.id, f"lb-{lb_id}")
    assert driver.adopt_vip_port(lb_id, own.id) == port  # again: the same
    with pytest.raises(errors.BadRequest, match="already used"):
        driver.adopt_vip_port(str(uuid.uuid4()), own.id)
    driver.secure_vip(VipSecurity(lb_id, (port.ip_address,), http_listener(), vrrp=False))
    group = _group(driver, lb_id)
    assert sorted(admin.network.get_port(own.id).security_group_ids) == \
        sorted([*before, group.id])  # the user's groups stay
    driver.deallocate_vip(lb_id)
    kept = admin.network.get_port(own.id)
    assert (kept.name, kept.device_id, sorted(kept.security_group_ids)) == (
        own.name, "", before)
    assert _left(driver, nets, admin, lb_id, []) == []


# -- amphorae -----------------------------------------------------------------------------


def _plug(driver: NeutronNetworkDriver, lb: str, vip: str, amp: str, compute_id: str,
          members: list[Subnet], nets: Nets, vrrp: bool) -> Any:
    return driver.plug(Amphora(amp, compute_id),
                       VipPlug(lb, nets.vip.id, (vip,), vrrp=vrrp), members)


def _interfaces(driver: NeutronNetworkDriver, server: Any) -> set[str]:
    return {i.port_id for i in driver.conn.compute.server_interfaces(server)}


def test_single_life(driver: NeutronNetworkDriver, nets: Nets, admin: Any, lb_id: str,
                     boot: Any) -> None:
    server = boot()
    amp = str(uuid.uuid4())
    vip = driver.allocate_vip(lb_id, nets.vip, project_id=nets.project_id)
    driver.secure_vip(VipSecurity(lb_id, (vip.ip_address,), http_listener(), vrrp=False))
    group = _group(driver, lb_id)
    assert _rules(driver.conn, group.id) == EGRESS_DEFAULTS | {
        ("ingress", "IPv4", "tcp", 80, 80, None, None)}
    assert admin.network.get_port(vip.id).security_group_ids == [group.id]

    ports = _plug(driver, lb_id, vip.ip_address, amp, server.id, [nets.member], nets, False)
    vrrp = admin.network.get_port(ports.vrrp_port.id)
    assert (vrrp.name, vrrp.device_id, vrrp.device_owner) == (
        f"octavia-lb-vrrp-{amp}", server.id, "compute:nova")
    assert vrrp.fixed_ips[0]["subnet_id"] == nets.vip.id
    assert _pairs(vrrp) == [vip.ip_address]
    assert vrrp.security_group_ids == [group.id]
    member = admin.network.get_port(ports.member_ports[nets.member.id].id)
    assert (member.name, member.device_id) == (f"octavia-lb-member-{amp}", server.id)
    assert member.fixed_ips[0]["subnet_id"] == nets.member.id
    assert _interfaces(driver, server) == {vrrp.id, member.id}

    # Listener change: HTTPS from one CIDR instead of HTTP from anywhere.
    driver.secure_vip(VipSecurity(lb_id, (vip.ip_address,),
                                  http_listener(443, "198.19.0.0/16"), vrrp=False))
    assert _rules(driver.conn, group.id) == EGRESS_DEFAULTS | {
        ("ingress", "IPv4", "tcp", 443, 443, "198.19.0.0/16", None)}

    again = _plug(driver, lb_id, vip.ip_address, amp, server.id, [nets.member], nets, False)
    assert again == ports  # nothing to do: the same ports and addresses
    driver.unplug(amp, server.id)
    assert _interfaces(driver, server) == set()
    driver.unplug(amp, server.id)  # already gone: fine
    driver.deallocate_vip(lb_id)
    assert _left(driver, nets, admin, lb_id, [amp]) == []


def test_pair_life(driver: NeutronNetworkDriver, nets: Nets, admin: Any, lb_id: str,
                   boot: Any) -> None:
    servers_ = [boot(), boot()]
    amps = [str(uuid.uuid4()), str(uuid.uuid4())]
    vip = driver.allocate_vip(lb_id, nets.vip)
    extra = driver.allocate_vip(lb_id, nets.vip, None)  # retried: same address
    assert extra.ip_address == vip.ip_address
    security = VipSecurity(lb_id, (vip.ip_address,), http_listener(), vrrp=True,
                           peer_ports=(1025,))
    driver.secure_vip(security)
    group = _group(driver, lb_id)
    assert _rules(driver.conn, group.id) == EGRESS_DEFAULTS | {
        ("ingress", "IPv4", "tcp", 80, 80, None, None),
        ("ingress", "IPv4", "112", None, None, None, "self"),
        ("ingress", "IPv4", "51", None, None, None, "self"),
        ("ingress", "IPv4", "tcp", 1025, 1025, None, "self")}
    driver.secure_vip(security)  # unchanged: no rule made twice
    assert len(_rules(driver.conn, group.id)) == 6
    plugged = [_plug(driver, lb_id, vip.ip_address, amp, srv.id, [], nets, True)
               for amp, srv in zip(amps, servers_, strict=True)]
    for amp, srv, ports in zip(amps, servers_, plugged, strict=True):
        raw = admin.network.get_port(ports.vrrp_port.id)
        assert (raw.name, raw.device_id, _pairs(raw), raw.security_group_ids) == (
            f"octavia-lb-vrrp-{amp}", srv.id, [vip.ip_address], [group.id])
        assert ports.member_ports == {}
        assert ports.vrrp_port.ip_address != vip.ip_address
    # The listener goes: its port closes, the pair's own traffic stays open.
    driver.secure_vip(VipSecurity(lb_id, (vip.ip_address,), (), vrrp=True,
                                  peer_ports=(1025,)))
    assert ("ingress", "IPv4", "tcp", 80, 80, None, None) not in _rules(driver.conn, group.id)
    assert len(_rules(driver.conn, group.id)) == 5
    for amp, srv in zip(amps, servers_, strict=True):
        driver.unplug(amp, srv.id)
    driver.deallocate_vip(lb_id)
    assert _left(driver, nets, admin, lb_id, amps) == []


def test_interrupted_plug_is_completed_with_the_same_addresses(
        driver: NeutronNetworkDriver, nets: Nets, admin: Any, lb_id: str,
        boot: Any) -> None:
    server = boot()
    amp = str(uuid.uuid4())
    vip = driver.allocate_vip(lb_id, nets.vip)
    driver.secure_vip(VipSecurity(lb_id, (vip.ip_address,), http_listener(), vrrp=True))
    # A plug died after it made the VRRP port (not yet attached, no pairs, no group),
    # and a retried create made the member port twice.
    half = driver.conn.network.create_port(
        name=f"octavia-lb-vrrp-{amp}", network_id=nets.vip_net.id, device_owner="Octavia",
        fixed_ips=[{"subnet_id": nets.vip.id, "ip_address": "198.19.160.77"}])
    twins = [driver.conn.network.create_port(
        name=f"octavia-lb-member-{amp}", network_id=nets.member_net.id,
        device_owner="Octavia", fixed_ips=[{"subnet_id": nets.member.id}])
        for _ in range(2)]
    ports = _plug(driver, lb_id, vip.ip_address, amp, server.id, [nets.member], nets, True)
    assert (ports.vrrp_port.id, ports.vrrp_port.ip_address) == (half.id, "198.19.160.77")
    assert ports.member_ports[nets.member.id].id in {t.id for t in twins}
    raw = admin.network.get_port(half.id)
    assert (raw.device_id, _pairs(raw), raw.security_group_ids) == (
        server.id, [vip.ip_address], [_group(driver, lb_id).id])
    assert _interfaces(driver, server) == {half.id, ports.member_ports[nets.member.id].id}
    assert len(list(admin.network.ports(name=f"octavia-lb-member-{amp}"))) == 1

    # One port lost (deleted behind our back): the next plug makes it again, the other
    # keeps its address.
    driver.conn.network.delete_port(ports.member_ports[nets.member.id].id)
    _wait(lambda: len(_interfaces(driver, server)) == 1)
    again = _plug(driver, lb_id, vip.ip_address, amp, server.id, [nets.member], nets, True)
    assert again.vrrp_port == ports.vrrp_port
    assert _interfaces(driver, server) == {half.id, again.member_ports[nets.member.id].id}

    # The member subnet is no longer wanted: its port goes.
    fewer = _plug(driver, lb_id, vip.ip_address, amp, server.id, [], nets, True)
    assert fewer.member_ports == {} and fewer.vrrp_port == ports.vrrp_port
    assert _interfaces(driver, server) == {half.id}
    assert list(admin.network.ports(name=f"octavia-lb-member-{amp}")) == []
    driver.unplug(amp, server.id)
    driver.deallocate_vip(lb_id)
    assert _left(driver, nets, admin, lb_id, [amp]) == []


def test_plug_without_the_security_group_is_refused(
        driver: NeutronNetworkDriver, nets: Nets, admin: Any, lb_id: str) -> None:
    amp = str(uuid.uuid4())
    vip = driver.allocate_vip(lb_id, nets.vip)
    with pytest.raises(RuntimeError, match="secure_vip"):
        _plug(driver, lb_id, vip.ip_address, amp, "", [], nets, False)
    assert list(admin.network.ports(name=f"octavia-lb-vrrp-{amp}")) == []


def _wait(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# -- the API ------------------------------------------------------------------------------


def test_api_releases_the_vip_of_a_load_balancer_it_did_not_create(
        cloud: osdev.Cloud, nets: Nets, admin: Any, driver: NeutronNetworkDriver,
        tmp_path: pathlib.Path) -> None:
    extra = service_auth(cloud) + """
[controller_worker]
network_driver = allowed_address_pairs_driver
"""
    state = tmp_path / "amph-nd-api"
    state.mkdir()
    with servers.running_api("sqlite", state, "nd", extra) as server:
        api = servers.Client(server, project=nets.project_id)
        # The clients ask Neutron for networks: our API does not serve Neutron's paths.
        assert api.get("/v2.0/networks")[0] == 404
        body = {"loadbalancer": {"vip_subnet_id": nets.vip.id}}
        status, out = api.post("/v2/lbaas/loadbalancers", body)
        assert status == 201, out
        lb = out["loadbalancer"]
        try:
            port = admin.network.get_port(lb["vip_port_id"])
            assert (port.name, port.fixed_ips[0]["ip_address"]) == (
                f"octavia-lb-{lb['id']}", lb["vip_address"])
            # The quota refuses the next one after its VIP was allocated.
            status, out = api.put(f"/v2/lbaas/quotas/{nets.project_id}",
                                  {"quota": {"load_balancer": 1}})
            assert status == 202, out
            status, out = api.post("/v2/lbaas/loadbalancers", body)
            assert status == 403, out
            names = [p.name for p in nets.ports(admin)]
            assert names == [f"octavia-lb-{lb['id']}"], names
            # A taken address: 409 naming it, before the quota is looked at.
            status, out = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
                "vip_subnet_id": nets.vip.id, "vip_address": lb["vip_address"]}})
            assert status == 409 and lb["vip_address"] in out["faultstring"], out
        finally:
            driver.deallocate_vip(lb["id"])
        status, out = api.put(f"/v2/lbaas/quotas/{nets.project_id}",
                              {"quota": {"load_balancer": -1}})
        assert status == 202, out
        # The user's own port becomes the VIP; another project's is not there for them.
        own = admin.network.create_port(name=f"amph-nd-own-{_hex()}",
                                        network_id=nets.vip_net.id,
                                        project_id=nets.project_id)
        other = admin.network.create_port(
            name=f"amph-nd-other-{_hex()}", network_id=nets.vip_net.id,
            project_id=cloud.connect("project-b-member", "project-b").current_project_id)
        status, out = api.post("/v2/lbaas/loadbalancers",
                               {"loadbalancer": {"vip_port_id": other.id}})
        assert status == 400 and other.id in out["faultstring"], out
        status, out = api.post("/v2/lbaas/loadbalancers",
                               {"loadbalancer": {"vip_port_id": own.id}})
        assert status == 201, out
        adopted = out["loadbalancer"]
        try:
            assert adopted["vip_port_id"] == own.id
            assert admin.network.get_port(own.id).device_id == f"lb-{adopted['id']}"
        finally:
            driver.deallocate_vip(adopted["id"])
        assert admin.network.get_port(own.id).device_id == ""
        for port in (own, other):
            admin.network.delete_port(port)
        status, out = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
            "vip_subnet_id": nets.vip.id, "vip_address": "198.19.170.5"}})
        assert status == 400 and "198.19.170.5" in out["faultstring"], out
        assert [p.name for p in nets.ports(admin)] == []
