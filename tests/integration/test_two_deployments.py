"""Two deployments on one host (root), each with a network named ``public``: each gets
a bridge of its own (named after its deployment id, which it carries as alias), and the
one that stops with no amphorae left removes its own bridges only; the other's keeps
serving its VIP. Deployments: tests/deployment.py, `amphorae up` each, VIP networks on
198.18.112.0/24 and 198.18.116.0/24, management on 198.19.112.0/24 and 198.19.116.0/24
(or the next ones up on other xdist workers)."""

from __future__ import annotations

import secrets
import socket

from amphorae.drivers.network import plumbing as plumbing_mod
from tests.deployment import Deployment, deployment, eventually, per_worker
from tests.integration.test_netns_compute import ping

MARKERS = secrets.token_hex(3), secrets.token_hex(3)


def _options(index: int) -> dict[str, str]:
    """Deployment ``index``'s own management network and heartbeat port (as any two
    deployments on one host need)."""
    mgmt = per_worker(f"198.19.{112 + 4 * index}.0/24", "198.19.0.0/24")[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
    return {"vip_network": "public", "management_cidr": mgmt,
            "extra_config": f"[health_manager]\nbind_port = {port}\n"}


def test_two_deployments_with_a_public_network_each_do_not_collide() -> None:
    with deployment(MARKERS[0], *per_worker("198.18.112.0/24", "198.18.113.0/24"),
                    **_options(0)) as a, \
            deployment(MARKERS[1], *per_worker("198.18.116.0/24", "198.18.117.0/24"),
                       **_options(1)) as b:
        assert a.deployment_id != b.deployment_id
        assert a.bridge("public") != b.bridge("public")
        a.start("up")
        b.start("up")
        lbs = {d.marker: d.lb.create_load_balancer(vip_subnet_id=d.vip_subnet_id, name="lb")
               for d in (a, b)}
        for d in (a, b):
            lb = d.wait_lb(lbs[d.marker].id, timeout=60)
            assert _owner(d.bridge("public")) == d.deployment_id
            assert ping(lb.vip_address), f"{d.marker}: VIP {lb.vip_address} silent"
        b_vip = b.lb.get_load_balancer(lbs[b.marker].id).vip_address

        # A is left without amphorae and stops: its bridges go, B's stay and serve.
        a.lb.delete_load_balancer(lbs[a.marker].id)
        a.wait_gone(lbs[a.marker].id)
        eventually(lambda: _no_amphorae(a), "A's amphorae removed")
        assert a.stop("up") == 0
        assert a.plumbing.link(a.bridge("public")) is None
        assert a.plumbing.link(a.mgmt_bridge) is None
        assert _owner(b.bridge("public")) == b.deployment_id
        assert _owner(b.mgmt_bridge) == b.deployment_id
        assert ping(b_vip), "B's VIP no longer answers"


def _owner(bridge: str) -> str | None:
    return plumbing_mod.Plumbing().link_owner(bridge)


def _no_amphorae(d: Deployment) -> None:
    assert d.amphora_dirs() == []
