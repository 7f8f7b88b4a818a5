"""A real agent sending heartbeats to a UDP receiver on loopback: statuses and v3 counters
of a running HAProxy, the interval, member DOWN once its server is gone, and the key."""

from __future__ import annotations

import itertools
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from amphorae.common import heartbeat as codec
from amphorae.contract import model
from amphorae.render import haproxy as render_haproxy
from tests.functional.test_agent import (
    AMPHORA_ID,
    HAPROXY,
    Agent,
    backend_server,
    http_get,
    launch,
    running_agent,
    terminate,
)
from tests.servers import free_port

pytestmark = pytest.mark.skipif(HAPROXY is None, reason="needs haproxy")

KEY = "amphorae-test-heartbeat-key"
BODY = b"member-for-heartbeats"


class Receiver:
    """The controller's end: a UDP socket; ``next`` returns (arrival, raw datagram)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])

    def next(self, timeout: float = 5.0) -> tuple[float, bytes]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(codec.RECV_BUFFER)
        return time.monotonic(), data

    def until(self, check: Callable[[dict[str, Any]], bool], timeout: float
              ) -> list[dict[str, Any]]:
        """Decoded heartbeats up to the first one satisfying ``check``, bounded."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, data = self.next(max(deadline - time.monotonic(), 0.01))
            seen.append(codec.decode(data, KEY))
            if check(seen[-1]):
                return seen
        raise AssertionError(f"no matching heartbeat in {timeout}s; last: {seen[-1:]}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    try:
        yield rec
    finally:
        rec.sock.close()


@pytest.fixture(scope="module")
def agent(receiver: Receiver) -> Iterator[Agent]:
    with running_agent("amphorae-hb-agent-", f"""
[health_manager]
heartbeat_key = {KEY}
heartbeat_interval = 1
controller_ip_port_list = 127.0.0.1:{receiver.port}
""") as handle:
        yield handle


def _render(agent: Agent, lb_id: str, listener_id: str, pool_id: str, member_id: str,
            port: int, member_port: int) -> str:
    monitor = model.HealthMonitor(id=str(uuid.uuid4()), type="TCP", delay=1, timeout=1,
                                  max_retries=1, max_retries_down=1)
    lb = model.LoadBalancer(
        id=lb_id, project_id="amphorae-test", vips=("127.0.0.1",),
        listeners=(model.Listener(id=listener_id, protocol="HTTP", protocol_port=port,
                                  default_pool_id=pool_id),),
        pools=(model.Pool(id=pool_id, protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                          health_monitor=monitor,
                          members=(model.Member(id=member_id, address="127.0.0.1",
                                                protocol_port=member_port),)),))
    settings = render_haproxy.HaproxySettings(fd_limit=agent.client().info().max_fds,
                                              hard_stop_after=5)
    paths = render_haproxy.AmphoraPaths.for_lb(str(agent.base), lb_id)
    return render_haproxy.render(lb, settings, paths)


def test_heartbeats_report_the_running_load_balancer(agent: Agent,
                                                     receiver: Receiver) -> None:
    # Without any load balancer: empty heartbeats, one per interval.
    arrivals = []
    first = None
    for _ in range(3):
        arrival, data = receiver.next()
        message = codec.decode(data, KEY)
        first = first or message
        arrivals.append(arrival)
        assert message["id"] == AMPHORA_ID and message["ver"] == 3
        assert message["boot"] == first["boot"] and isinstance(message["t0"], float)
        assert "load" not in message  # no HAProxy runs yet
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(0.5 < gap < 1.7 for gap in gaps), gaps
    # Another key does not open them.
    with pytest.raises(codec.InvalidHeartbeat) as err:
        codec.decode(data, "not-the-key")
    assert err.value.reason == codec.FORGED

    lb_id, listener_id, pool_id, member_id = (str(uuid.uuid4()) for _ in range(4))
    pool_key = f"{pool_id}:{listener_id}"
    client = agent.client()
    port = free_port()
    requests = 7
    try:
        with backend_server(BODY) as member_port:
            client.upload_haproxy_config(
                lb_id, _render(agent, lb_id, listener_id, pool_id, member_id, port,
                               member_port))
            client.start(lb_id)

            def member_up(msg: dict[str, Any]) -> bool:
                pool = msg["pools"].get(pool_key, {})
                return pool.get("members", {}).get(member_id) == "UP"

            seen = receiver.until(member_up, timeout=8)
            assert seen[-1]["listeners"][listener_id]["status"] == "OPEN"
            assert 0 <= seen[-1]["load"] <= 1  # HAProxy's busy share, for scaling
            assert seen[-1]["pools"][pool_key]["status"] == "UP"
            for _ in range(requests):
                assert http_get(port) == BODY
            # Every heartbeat since the start counts its own share: the sum is the total.
            totals = {"tx": 0, "rx": 0, "totconns": 0, "ereq": 0}

            def add(msg: dict[str, Any]) -> bool:
                stats = msg["listeners"].get(listener_id, {}).get("stats", {})
                for name in totals:
                    totals[name] += stats.get(name, 0)
                return totals["totconns"] >= requests

            for msg in seen:
                add(msg)
            seen += receiver.until(add, timeout=5)
            seen += receiver.until(add, timeout=3)  # one more: nothing counted twice
            assert totals["totconns"] == requests, totals
            assert totals["ereq"] == 0
            assert totals["tx"] >= requests * len(BODY)
            assert totals["rx"] >= requests * len(b"GET / HTTP/1.1\r\n")
            assert seen[-1]["listeners"][listener_id]["stats"]["conns"] == 0
        # The member's server is gone: the health check marks it DOWN within a few beats.
        down = receiver.until(
            lambda msg: msg["pools"].get(pool_key, {}).get("members", {}).get(member_id)
            == "DOWN", timeout=6)
        assert down[-1]["pools"][pool_key]["status"] == "DOWN"
        seqs = [msg["seq"] for msg in seen + down]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none lost or repeated
        assert seqs[0] > first["seq"]
        # A restarted agent (HAProxy keeps running): a new boot, seq from 0, and the
        # traffic already reported is not reported again.
        terminate(agent)
        launch(agent)
        restarted = receiver.until(lambda msg: msg["boot"] != first["boot"], timeout=8)[-1]
        assert restarted["seq"] == 0 and restarted["t0"] > first["t0"]
        stats = restarted["listeners"][listener_id]["stats"]
        assert (stats["totconns"], stats["tx"], stats["rx"]) == (0, 0, 0), stats
    finally:
        client.delete_listeners(lb_id)
    counters = agent.base / "heartbeat-counters.json"
    assert counters.is_file() and listener_id in counters.read_text()
