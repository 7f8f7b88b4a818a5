"""Drift repair with real amphorae (root): `amphorae up` checks every second that each
ACTIVE load balancer's amphorae run what it would push. Someone replaces HAProxy's
configuration behind the controller's back (through the agent, with a file that lost the
pool's member: the VIP answers 503); the worker notices and pushes the right one again,
and traffic comes back without any API call. Deployment: tests/deployment.py on
198.18.76.0/24 + 198.18.77.0/24 (or the next pairs on other xdist workers).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator

import pytest

from amphorae.drivers import agent_client
from amphorae.drivers.compute import amphora_boot as boot
from tests import dataplane as dp
from tests.deployment import Deployment, answers, deployment, eventually, per_worker

MARKER = secrets.token_hex(3)
CHECK_EVERY = 1.0  # [controller_worker] drift_check_interval here


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    extra = f"\n[controller_worker]\ndrift_check_interval = {CHECK_EVERY}\n"
    with deployment(MARKER, *per_worker("198.18.76.0/24", "198.18.77.0/24"),
                    extra_config=extra) as d:
        d.members.add("m1", 21)
        d.start("up")
        yield d


def agent(d: Deployment, amp: object) -> agent_client.AgentClient:
    """The agent's client with the controller's own certificate, as the worker has it."""
    ca = d.state / "ca"
    return agent_client.AgentClient(amp.lb_network_ip, amp.id,  # type: ignore[attr-defined]
                                    str(ca / boot.CONTROLLER_CERT), str(ca / "ca.pem"),
                                    max_retries=3, retry_interval=0.2)


def test_a_configuration_replaced_behind_the_controller_is_pushed_again(
        up: Deployment) -> None:
    d = up
    lb = d.lb.create_load_balancer(
        vip_subnet_id=d.vip_subnet_id,
        listeners=[{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
            "name": "pool", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": d.members.addresses["m1"], "subnet_id":
                         d.member_subnet_id, "protocol_port": dp.HTTP.port}]}}])
    try:
        d.wait_lb(lb.id)
        eventually(lambda: answers(lb.vip_address, 1) == ["m1"], "traffic through the VIP")
        (amp,) = d.lb.amphorae(loadbalancer_id=lb.id)
        client = agent(d, amp)
        pushed = client.get_haproxy_config(lb.id)
        stale = re.sub(r"(?m)^\s*server .*\n", "", pushed)  # the pool lost its member
        assert stale != pushed
        client.upload_haproxy_config(lb.id, stale)
        client.reload(lb.id)
        assert dp.http_request(lb.vip_address, 80).status == 503  # the drift is real

        def restored() -> None:
            assert client.running_haproxy_md5(lb.id) == hashlib.md5(
                pushed.encode()).hexdigest()
            assert answers(lb.vip_address, 1) == ["m1"]

        eventually(restored, "the pushed configuration running again",
                   timeout=CHECK_EVERY + 10)
        log = (d.state / "up.log").read_text(errors="replace")
        assert f"load balancer {lb.id} drifted ({amp.id}: haproxy)" in log, log[-3000:]
        assert d.lb.get_load_balancer(lb.id).provisioning_status == "ACTIVE"
    finally:
        d.lb.delete_load_balancer(lb.id, cascade=True)
        d.wait_gone(lb.id)
