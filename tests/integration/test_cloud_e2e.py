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
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest

from tests import cloud as osdev
from tests import cloud_plane, netns, nova_env
from tests import dataplane as dp
from tests.cloud_plane import Blocks, Plane

BLOCKS = Blocks(mgmt="198.19.204.0/24", vip="198.19.205.0/24", member="198.19.206.0/24")
FIGURES = Path("/tmp/amph-cloud-e2e-figures.json")


@pytest.fixture(scope="module")
def plane(cloud: osdev.Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    netns.require_root()
    with cloud_plane.running_plane(cloud, BLOCKS, tmp_path_factory.mktemp("amph-e2e")) as made:
        yield made


# -- helpers -------------------------------------------------------------------------------

def _https(plane: Plane, vip: str, count: int) -> list[str]:
    """``count`` HTTPS requests from the client namespace through the VIP; the bodies."""
    plane.state.joinpath("ca.pem").write_bytes(plane.ca.cert_pem())
    bodies = []
    for _ in range(count):
        done = netns.run("curl", "-sS", "--max-time", "5", "--cacert",
                         str(plane.state / "ca.pem"), "--resolve",
                         f"{cloud_plane.SERVER_NAME}:443:{vip}", f"https://{cloud_plane.SERVER_NAME}/",
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
    flavor_id = cloud_plane.pair_flavor(plane) if topology == "ACTIVE_STANDBY" else None
    started = time.monotonic()
    lb = lbs.create_load_balancer(name=f"amph-e2e-{topology.lower()}",
                                  vip_subnet_id=plane.vip_subnet.id,
                                  **({"flavor_id": flavor_id} if flavor_id else {}))
    try:
        lb = cloud_plane.wait_lb(plane, lb.id)
        post_to_active = time.monotonic() - started
        for amp in cloud_plane.amphorae(plane, lb.id):
            nova_env.register_server(amp.compute_id)
        listener = lbs.create_listener(loadbalancer_id=lb.id, protocol="TERMINATED_HTTPS",
                                       protocol_port=443,
                                       default_tls_container_ref=plane.tls_ref)
        cloud_plane.wait_lb(plane, lb.id)
        pool = lbs.create_pool(listener_id=listener.id, protocol="HTTP",
                               lb_algorithm="ROUND_ROBIN")
        cloud_plane.wait_lb(plane, lb.id)
        for name, address in plane.members.items():
            lbs.create_member(pool, name=name, address=address, protocol_port=dp.HTTP.port,
                              subnet_id=plane.member_subnet.id)
            cloud_plane.wait_lb(plane, lb.id)
        lbs.create_health_monitor(pool_id=pool.id, type="HTTP", delay=2, timeout=1,
                                  max_retries=2, url_path="/")
        cloud_plane.wait_lb(plane, lb.id)

        amps = cloud_plane.amphorae(plane, lb.id)
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
                    {a.compute_id for a in cloud_plane.amphorae(plane, lb.id)}
                    and lbs.get_load_balancer(lb.id).provisioning_status == "ACTIVE",
                    "the failover done", timeout=cloud_plane.ACTIVE_TIMEOUT)
        for amp in cloud_plane.amphorae(plane, lb.id):
            nova_env.register_server(amp.compute_id)
        nova_env.wait("the old server gone", lambda: not _server_exists(plane,
                                                                        victim.compute_id),
                      cloud_plane.GONE_TIMEOUT, 1.0)
        _served_by_members(plane, lb.vip_address)
        final_amps = cloud_plane.amphorae(plane, lb.id)
    except BaseException:
        print(plane.logs(200))
        with contextlib.suppress(Exception):  # the fixture's networks need the ports gone
            lbs.delete_load_balancer(lb.id, cascade=True, ignore_missing=True)
            cloud_plane.wait_gone(plane, lb.id)
            _check_nothing_left(plane, lb.id, cloud_plane.amphorae(plane, lb.id))
        raise
    lbs.delete_load_balancer(lb.id, cascade=True)
    cloud_plane.wait_gone(plane, lb.id)
    _check_nothing_left(plane, lb.id, [victim, *final_amps])


def _server_exists(plane: Plane, server_id: str) -> bool:
    try:
        server = plane.env.admin.compute.get_server(server_id)
    except openstack.exceptions.NotFoundException:
        return False
    return server.status != "DELETED"


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
            nova_env.wait("nothing left", lambda left=left: not left(),
                          cloud_plane.GONE_TIMEOUT, 2.0)
        except AssertionError:
            raise AssertionError(f"left behind: {left()}\n{plane.logs()}") from None
    for amp in amps:
        assert not nova_env.netns_exists(nova_env.namespace(amp.compute_id))

