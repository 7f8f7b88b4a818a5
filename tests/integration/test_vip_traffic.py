"""End to end data plane: HTTP from the host to a VIP, balanced by HAProxy in a booted
netns amphora over three member servers, with a health monitor taking a stopped member
out of rotation and back in (root).

Topology (tests/dataplane.py; all on 198.18.0.0/15, created by this test only)::

    host 198.18.230.1 --[VIP bridge]-- eth1 198.18.230.10 (amphora, VIP)
    host 198.18.231.1 --[member bridge]-- eth2 198.18.231.10 (amphora)
                                       +-- eth0 198.18.231.21..23 (one namespace per member)

Everything carries this run's random marker (bridges, member namespaces, amphora id), and
the module fixture removes all of it even when a test fails.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Iterator

import pytest

from amphorae.contract import model
from tests import dataplane, netns
from tests.dataplane import assert_round_robin, wait_for

RUN = secrets.token_hex(3)
VIP_CIDR, MEMBER_CIDR = "198.18.230.0/24", "198.18.231.0/24"
VIP = "198.18.230.10"
SETTLE_TIMEOUT = dataplane.SETTLE_TIMEOUT  # health check state change (delay 1 s, fall 2)


@pytest.fixture(scope="module")
def topo() -> Iterator[dataplane.Topology]:
    netns.require_root()
    with dataplane.single_amphora_topology(RUN, VIP_CIDR, MEMBER_CIDR, members=3) as topo:
        yield topo


def render_lb(topo: dataplane.Topology, lb_id: str) -> str:
    monitor = model.HealthMonitor(id=str(uuid.uuid4()), type="TCP", delay=1, timeout=1,
                                  max_retries=1, max_retries_down=2)
    pool = topo.pool("HTTP", "ROUND_ROBIN", monitor=monitor)
    listener = model.Listener(id=str(uuid.uuid4()), protocol="HTTP", protocol_port=80,
                              default_pool_id=pool.id, timeout_member_connect=1000)
    assert topo.agent.info().max_fds, "the agent reports no max_fds"
    return topo.render(topo.load_balancer([listener], [pool], lb_id=lb_id))


def test_vip_traffic_round_robin_and_failover(topo: dataplane.Topology) -> None:
    started = time.perf_counter()
    members = topo.names
    # The VIP port is plugged; plugging it again changes nothing (idempotent).
    topo.plug_vip()
    assert topo.plumbing.addresses("eth1", ns=topo.namespace) == [f"{VIP}/24"]
    assert topo.vip == VIP
    lb_id = str(uuid.uuid4())
    agent = topo.agent
    topo.upload_and_start(lb_id, render_lb(topo, lb_id))
    try:
        assert [(x["type"], x["status"]) for x in agent.listeners()] == [("HTTP", "ACTIVE")]
        wait_for(lambda: topo.server_states_or_none(lb_id) == dict.fromkeys(members, "UP"),
                 "HAProxy up with all members UP")

        answers = [topo.answer() for _ in range(30)]
        assert_round_robin(answers, members)
        assert answers.count("m1") == answers.count("m2") == answers.count("m3") == 10

        # Member 2 stops: the monitor takes it out, the other two carry the traffic.
        # Clients keep sending meanwhile: HAProxy's retries with redispatch hide the
        # refused connections to m2 before the monitor marks it DOWN.
        topo.stop_member("m2")
        stopped = time.monotonic()
        during = []
        while topo.server_states(lb_id).get("m2") != "DOWN":
            assert time.monotonic() - stopped < SETTLE_TIMEOUT, "m2 not marked DOWN in time"
            during.append(topo.answer())
            time.sleep(0.05)
        down_after = time.monotonic() - stopped
        assert during and "m2" not in during and set(during) <= {"m1", "m3"}
        answers = [topo.answer() for _ in range(12)]  # retries + redispatch: no failure
        assert "m2" not in answers
        assert_round_robin(answers, ["m1", "m3"])

        # Back again: within a few seconds it is UP and gets its share.
        topo.start_member("m2")
        up_after = wait_for(lambda: topo.server_states(lb_id).get("m2") == "UP",
                            "m2 back UP")
        answers = [topo.answer() for _ in range(30)]
        assert_round_robin(answers, members)
        print(f"\nVIP traffic: m2 DOWN after {down_after:.1f} s ({len(during)} GETs meanwhile, "
              f"none failed), UP after {up_after:.1f} s, test body "
              f"{time.perf_counter() - started:.1f} s")

        # Deleting the load balancer's listeners stops HAProxy: the VIP refuses at once.
        agent.delete_listeners(lb_id)
        assert agent.listeners() == []
        with pytest.raises(ConnectionRefusedError):
            topo.answer()
    finally:
        with contextlib.suppress(Exception):
            agent.delete_listeners(lb_id)
