"""Member changes on an ACTIVE_STANDBY pair go through HAProxy's runtime API on both
amphorae (root): `amphorae up`, openstacksdk, a pair of netns amphorae, three member
namespaces. After each change (add, weight, disable, enable, remove), both amphorae's
HAProxy shows it, and neither has reloaded (the same process serves). The agent code is
the same on each amphora; this checks the controller pushes each change to both and each
agent applies it without a reload.

Deployment: tests/deployment.py on 198.18.196.0/24 (VIPs) + 198.18.197.0/24 (members),
or the next pairs on other xdist workers.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from tests import dataplane as dp
from tests.deployment import Deployment, answers, deployment, eventually, per_worker
from tests.integration.test_member_changes_runtime import Amphora, Pool, amphorae_of

MARKER = secrets.token_hex(3)


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.196.0/24", "198.18.197.0/24")) as d:
        for host, name in enumerate(("m1", "m2", "m3"), 21):
            d.members.add(name, host)
        d.start("up")
        yield d


def on_both(amps: list[Amphora], what: str, check: Callable[[Amphora], bool]) -> None:
    for amp in amps:
        eventually(lambda amp=amp: check(amp), f"{what} on {amp.files.root}", timeout=10)


def test_member_changes_apply_on_both_amphorae_without_a_reload(up: Deployment) -> None:
    d = up
    lb = d.lb.create_load_balancer(
        vip_subnet_id=d.vip_subnet_id, flavor_id=d.pair_flavor(),
        listeners=[{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
            "name": "pool", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "healthmonitor": {"type": "TCP", "delay": 1, "timeout": 1, "max_retries": 1,
                              "max_retries_down": 2},
            "members": [{"address": d.members.addresses[n], "protocol_port": dp.HTTP.port,
                         "subnet_id": d.member_subnet_id, "name": n} for n in ("m1", "m2")]}}])
    try:
        d.wait_lb(lb.id, timeout=60)
        amps = amphorae_of(d, lb.id)
        assert len(amps) == 2
        (pool_id,) = [p.id for p in d.lb.pools(loadbalancer_id=lb.id)]
        pool = Pool(d, lb.id, pool_id, {m.name: m for m in d.lb.members(pool_id)})
        on_both(amps, "m1 and m2 UP", lambda a: {a.status(pool.members[n].id)
                                                 for n in ("m1", "m2")} == {"UP"})
        serving = [amp.serving_pid() for amp in amps]

        pool.add("m3", weight=5)
        on_both(amps, "m3 added and UP", lambda a: a.status(pool.members["m3"].id) == "UP")
        pool.update("disable", "m2", admin_state_up=False)
        on_both(amps, "m2 in maintenance",
                lambda a: a.status(pool.members["m2"].id) == "MAINT")
        eventually(lambda: set(answers(lb.vip_address, 12)) == {"m1", "m3"},
                   "m1 and m3 answering through the VIP, m2 not")
        pool.update("enable", "m2", admin_state_up=True)
        on_both(amps, "m2 back UP", lambda a: a.status(pool.members["m2"].id) == "UP")
        removed = pool.members["m3"].id
        pool.remove("m3")
        on_both(amps, "m3 gone", lambda a: a.status(removed) is None)
        eventually(lambda: set(answers(lb.vip_address, 8)) == {"m1", "m2"},
                   "m1 and m2 answering through the VIP")

        assert [amp.serving_pid() for amp in amps] == serving, [a.agent_log() for a in amps]
    finally:
        d.lb.delete_load_balancer(lb.id, cascade=True)
        d.wait_gone(lb.id, timeout=60)
