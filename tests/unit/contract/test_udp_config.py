"""The UDP document the controller sends the agent: its UDP part only, stable bytes, and
a parser that gives back the same model and refuses anything else."""

from __future__ import annotations

import dataclasses
import json

import pytest

from amphorae.contract import udp_config
from amphorae.contract.model import (
    HealthMonitor,
    Listener,
    LoadBalancer,
    Member,
    Peer,
    Pool,
    SessionPersistence,
)

MONITOR = HealthMonitor(id="hm-1", type="HTTP", delay=2, timeout=1, max_retries=2,
                        max_retries_down=3, http_method="GET", url_path="/health",
                        expected_codes="200-204", http_version=1.1, domain_name="a.test")
UDP_POOL = Pool(
    id="pool-udp", protocol="UDP", lb_algorithm="SOURCE_IP",
    members=(Member(id="m-1", address="198.18.105.21", protocol_port=5300, weight=3),
             Member(id="m-2", address="2001:db8::22", protocol_port=5300, backup=True,
                    monitor_address="198.18.105.22", monitor_port=8080),
             Member(id="m-3", address="198.18.105.23", protocol_port=5300, enabled=False)),
    health_monitor=MONITOR,
    session_persistence=SessionPersistence("SOURCE_IP", persistence_timeout=60,
                                           persistence_granularity="255.255.255.0"))
HTTP_POOL = Pool(id="pool-http", protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                 members=(Member(id="m-9", address="198.18.105.29", protocol_port=80),))
LB = LoadBalancer(
    id="lb-1", project_id="p", vips=("198.18.104.10", "2001:db8::10"),
    listeners=(Listener(id="li-udp", protocol="UDP", protocol_port=53,
                        default_pool_id="pool-udp", allowed_cidrs=("198.18.104.0/24",)),
               Listener(id="li-off", protocol="UDP", protocol_port=54, enabled=False),
               Listener(id="li-http", protocol="HTTP", protocol_port=80,
                        default_pool_id="pool-http",
                        insert_headers=(("X-Forwarded-For", "true"),))),
    pools=(UDP_POOL, HTTP_POOL), topology="ACTIVE_STANDBY",
    peers=(Peer("amp-a", "198.18.104.11"),))


def test_round_trip_keeps_the_udp_part_only() -> None:
    text = udp_config.render(LB)
    parsed = udp_config.parse(text)
    assert parsed == udp_config.udp_part(LB)
    assert [li.id for li in parsed.listeners] == ["li-udp", "li-off"]
    assert parsed.pools == (UDP_POOL,)
    assert parsed.peers == ()
    assert parsed.pool("pool-udp").health_monitor.http_version == 1.1
    # Same model, same bytes (the controller compares them with the agent's copy).
    assert udp_config.render(dataclasses.replace(LB)) == text
    assert udp_config.parse(text.encode()) == parsed


def test_round_trip_of_defaults_and_nested_tuples() -> None:
    lb = LoadBalancer(id="lb-2", project_id="p", vips=("198.18.104.10",),
                      listeners=(Listener(id="li", protocol="UDP", protocol_port=53),))
    parsed = udp_config.parse(udp_config.render(lb))
    assert parsed == lb
    assert parsed.listeners[0].insert_headers == () and parsed.listeners[0].tls is None


def _document(**changes: object) -> str:
    document = json.loads(udp_config.render(LB))
    pool = document["load_balancer"]["pools"][0]
    for path, value in changes.items():
        target, *keys = path.split("__")
        where = {"lb": document["load_balancer"], "pool": pool,
                 "member": pool["members"][0], "monitor": pool["health_monitor"],
                 "doc": document}[target]
        if value is KeyError:
            del where[keys[0]]
        else:
            where[keys[0]] = value
    return json.dumps(document)


@pytest.mark.parametrize("changes,message", [
    ({"doc__version": 2}, '"version": 1'),
    ({"doc__extra": 1}, "exactly the fields"),
    ({"lb__color": "red"}, "load_balancer: unknown field(s) color"),
    ({"member__protocol_port": "53"}, "members[0].protocol_port: expected int, not str"),
    ({"member__protocol_port": True}, "expected int, not bool"),
    ({"member__enabled": 1}, "members[0].enabled: expected bool, not int"),
    ({"monitor__delay": None}, "health_monitor.delay: expected int, not NoneType"),
    ({"monitor__type": KeyError}, "health_monitor: "),
    ({"pool__members": {}}, "pools[0].members: expected a list"),
    ({"lb__vips": "198.18.104.10"}, "load_balancer.vips: expected a list"),
    ({"pool__health_monitor": []}, "health_monitor: expected an object"),
])
def test_parse_refuses(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        udp_config.parse(_document(**changes))
    assert message in str(caught.value)


@pytest.mark.parametrize("text", ["", "{", "[]", "\xff", '{"version": 1}'])
def test_parse_refuses_non_documents(text: str) -> None:
    with pytest.raises(ValueError):
        udp_config.parse(text.encode("latin-1"))


def test_int_is_accepted_where_a_float_is_expected() -> None:
    parsed = udp_config.parse(_document(monitor__http_version=1))
    version = parsed.pools[0].health_monitor.http_version
    assert version == 1.0 and isinstance(version, float)
