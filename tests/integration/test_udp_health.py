"""UDP listeners whose members the agent health checks itself, through a booted netns
amphora (root): a member that fails its checks leaves the nftables rotation within a few
seconds and comes back when it passes them again.

The controller side (RestAmphoraDriver) sends the UDP part of the model to the agent's
/1.0/udp; the agent probes the members from inside the amphora and re-renders the rules.
Members (tests/dataplane.py) echo UDP on 5300 and also serve TCP on 9100 and HTTP on
8080, so TCP and HTTP monitors can watch a UDP pool through monitor_port. Topology (only
these subnets; the amphora's management network too)::

    host 198.18.104.1 --[VIP bridge]-- eth1 198.18.104.10 (amphora, VIP)
    host 198.18.105.1 --[member bridge]-- eth2 198.18.105.10 (amphora)
                                       +-- m1..m3 198.18.105.21..23
    management bridge 198.18.106.0/24 (agent API)

New flows are new sockets: conntrack keeps a running flow on its member, new ones follow
the rules in force. No traffic goes to a member while it is being found dead, so that
ICMP rate limiting on the member cannot eat the port-unreachable the check waits for.

Tests wait on state, not on time: the agent reports a member's new status as soon as a
check decides it and applies the rules for it a moment later (its next round), so a
test waits until every member's status is the one expected *and* the rules in force
are the ones for those statuses before it sends traffic. The time bound only says when
to give up.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator

import pytest

from amphorae.contract import model
from amphorae.contract import nftables as render_nft
from amphorae.contract import udp_config as render_udp
from amphorae.drivers.amphora.base import AmphoraRef, TLSFiles, VipSubnet
from amphorae.drivers.amphora.rest import RestAmphoraDriver
from tests import dataplane, netns
from tests.dataplane import assert_round_robin, member_name, new_id, wait_for
from tests.deployment import per_worker

RUN = secrets.token_hex(3)
# Per xdist worker (the module's tests may be split over two): 104/105, then 106/107.
VIP_CIDR, MEMBER_CIDR = per_worker("198.18.104.0/24", "198.18.105.0/24")
SERVICES = (dataplane.UDP, dataplane.TCP, dataplane.HTTP)
PORT = 53
ROUNDS = 3  # flows per member in a rotation check
# Bound for a state change (delay 1 s, fall/rise 2; measured ~1-2.5 s), generous for a
# loaded host: only a failure waits it out.
SETTLE = 30.0


@pytest.fixture(scope="module")
def topo() -> Iterator[dataplane.Topology]:
    netns.require_root()
    with dataplane.single_amphora_topology(RUN, VIP_CIDR, MEMBER_CIDR, members=3,
                                           services=SERVICES) as topo:
        yield topo


def monitor(kind: str, **fields: object) -> model.HealthMonitor:
    return model.HealthMonitor(id=new_id(), type=kind, delay=1, timeout=1, max_retries=2,
                               max_retries_down=2, **fields)  # type: ignore[arg-type]


def udp_lb(topo: dataplane.Topology, hm: model.HealthMonitor,
           monitor_port: int | None = None) -> tuple[model.LoadBalancer, model.Pool]:
    pool = topo.pool("UDP", monitor=hm)
    pool = dataclasses.replace(pool, members=tuple(
        dataclasses.replace(m, monitor_port=monitor_port) for m in pool.members))
    listener = model.Listener(id=new_id(), protocol="UDP", protocol_port=PORT,
                              default_pool_id=pool.id)
    return topo.load_balancer([listener], [pool]), pool


def assert_rotation(topo: dataplane.Topology, names: list[str], attempts: int = 3) -> None:
    """New flows (each datagram from a new socket) rotate over members ``names``. The
    agent rewrites the rules whenever a member's status changes, which restarts the
    rotation's counter: under load a check can time out once and flap a member, so a
    broken sequence is sampled again (a member wrongly in or out fails every time)."""
    for attempt in range(attempts):
        answers = [topo.udp_exchange(PORT, f"flow {i}".encode())
                   for i in range(ROUNDS * len(names))]
        try:
            assert_round_robin(answers, names)
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


def statuses(topo: dataplane.Topology, pool: model.Pool) -> dict[str, str]:
    """Member name -> status the agent reports for ``pool`` (as in its heartbeat)."""
    entry = topo.agent.udp_status()[pool.id]
    return {member_name(member_id): status for member_id, status in entry["members"].items()}


def in_force(topo: dataplane.Topology, lb: model.LoadBalancer, pool: model.Pool,
             expected: dict[str, str]) -> bool:
    """The agent reports ``expected`` (member name -> status) for ``pool``, and the
    rules in force are the ones it renders for those statuses."""
    reported = topo.agent.udp_status()[pool.id]["members"]
    if {member_name(i): status for i, status in reported.items()} != expected:
        return False
    up = {i for i, status in reported.items() if status == "UP"}
    document = render_udp.parse(render_udp.render(lb))  # the load balancer as the agent has it
    return topo.agent.get_nftables() == render_nft.render(document, {pool.id: up})


def wait_status(topo: dataplane.Topology, lb: model.LoadBalancer, pool: model.Pool,
                name: str, status: str) -> float:
    """Until member ``name`` is ``status``, every other member UP, and the rules in force
    say so; the seconds it took."""
    expected = dict.fromkeys(topo.names, "UP") | {name: status}
    return wait_for(lambda: in_force(topo, lb, pool, expected),
                    f"member {name} {status}, the others UP, and the rules for it in force",
                    SETTLE)


@pytest.fixture
def cleanup(topo: dataplane.Topology) -> Iterator[None]:
    """After each test: no rules, no checks, every member serving everything again."""
    yield
    topo.agent.delete_nftables()
    for name in topo.names:
        if name not in topo.servers:
            topo.start_member(name)
        netns.run("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0", ns=topo.member_ns[name])


def test_udp_connect_monitor_takes_a_stopped_member_out_and_back(topo, cleanup) -> None:
    lb, pool = udp_lb(topo, monitor("UDP-CONNECT"))
    # What the controller does: the UDP part of the model to the agent's /1.0/udp.
    driver = RestAmphoraDriver(lambda amp: topo.agent, lambda amp: topo.agent_base)
    amp = AmphoraRef(topo.amphora_id, "STANDALONE", topo.amp.management_ip)
    driver.apply(amp, lb, TLSFiles(), None, VipSubnet(24, None))
    assert topo.agent.get_udp_config() == render_udp.render(lb)
    assert statuses(topo, pool) == dict.fromkeys(topo.names, "UP")  # members start UP
    assert_rotation(topo, topo.names)

    topo.stop_member("m2")
    down = wait_status(topo, lb, pool, "m2", "DOWN")
    assert topo.members["m2"] not in topo.agent.get_nftables()
    assert_rotation(topo, ["m1", "m3"])  # new flows: the other two only
    assert topo.agent.udp_status()[pool.id]["status"] == "UP"

    topo.start_member("m2")
    up = wait_status(topo, lb, pool, "m2", "UP")
    assert_rotation(topo, topo.names)
    assert statuses(topo, pool) == dict.fromkeys(topo.names, "UP")
    print(f"\nUDP-CONNECT: m2 DOWN after {down:.1f} s, UP again after {up:.1f} s")

    # The same document again changes nothing on the agent (the driver compares first).
    driver.apply(amp, lb, TLSFiles(), None, VipSubnet(24, None))
    assert statuses(topo, pool) == dict.fromkeys(topo.names, "UP")


def test_tcp_monitor_on_monitor_port(topo, cleanup) -> None:
    lb, pool = udp_lb(topo, monitor("TCP"), monitor_port=dataplane.TCP.port)
    topo.agent.upload_udp_config(render_udp.render(lb))
    # m3 keeps answering UDP, but its TCP service is gone: the check says DOWN.
    topo.stop_member("m3")
    topo.start_member("m3", services=[dataplane.UDP])
    wait_status(topo, lb, pool, "m3", "DOWN")
    assert_rotation(topo, ["m1", "m2"])
    topo.stop_member("m3")
    topo.start_member("m3")
    wait_status(topo, lb, pool, "m3", "UP")
    assert_rotation(topo, topo.names)


def test_http_monitor_and_a_pool_without_healthy_members(topo, cleanup) -> None:
    hm = monitor("HTTP", url_path="/health", expected_codes="200")
    lb, pool = udp_lb(topo, hm, monitor_port=dataplane.HTTP.port)
    topo.agent.upload_udp_config(render_udp.render(lb))
    topo.stop_member("m1")
    topo.start_member("m1", services=[dataplane.UDP, dataplane.TCP])  # no HTTP
    wait_status(topo, lb, pool, "m1", "DOWN")
    assert_rotation(topo, ["m2", "m3"])
    topo.stop_member("m1")
    topo.start_member("m1")
    wait_status(topo, lb, pool, "m1", "UP")
    assert_rotation(topo, topo.names)

    # Members answer 200, so expecting 404 fails them all: nothing to DNAT to, and the
    # amphora itself refuses the datagrams (ICMP port unreachable), as IPVS does.
    lb404, pool404 = udp_lb(topo, monitor("HTTP", expected_codes="404"),
                            monitor_port=dataplane.HTTP.port)
    topo.agent.upload_udp_config(render_udp.render(lb404))
    wait_for(lambda: in_force(topo, lb404, pool404, dict.fromkeys(topo.names, "DOWN")),
             "every member DOWN and the rules for it in force", SETTLE)
    assert topo.agent.udp_status()[pool404.id]["status"] == "DOWN"
    assert "dnat" not in topo.agent.get_nftables()
    with pytest.raises(ConnectionRefusedError):
        topo.udp_exchange(PORT, b"nobody healthy")


def test_ping_monitor(topo, cleanup) -> None:
    lb, pool = udp_lb(topo, monitor("PING"))
    topo.agent.upload_udp_config(render_udp.render(lb))
    # m2 still serves UDP but ignores echo requests.
    netns.run("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1", ns=topo.member_ns["m2"])
    wait_status(topo, lb, pool, "m2", "DOWN")
    assert_rotation(topo, ["m1", "m3"])
    netns.run("sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0", ns=topo.member_ns["m2"])
    wait_status(topo, lb, pool, "m2", "UP")
    assert_rotation(topo, topo.names)


def test_a_raw_script_takes_the_rules_over(topo, cleanup) -> None:
    lb, pool = udp_lb(topo, monitor("UDP-CONNECT"))
    topo.agent.upload_udp_config(render_udp.render(lb))
    assert pool.id in topo.agent.udp_status()
    script = render_nft.render(lb)
    topo.agent.upload_nftables(script)  # PUT /1.0/nftables, as before /1.0/udp existed
    assert topo.agent.get_udp_config() is None and topo.agent.udp_status() == {}
    assert topo.agent.get_nftables() == script
    assert_rotation(topo, topo.names)
