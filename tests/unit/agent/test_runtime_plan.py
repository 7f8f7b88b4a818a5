"""runtime_plan.plan: which haproxy.cfg changes go through HAProxy's runtime API, and with
which commands. The configs are rendered by the real renderer, as the controller does."""

from __future__ import annotations

import dataclasses

import pytest

from amphorae.agent import runtime_plan as rp
from amphorae.contract.model import (
    HealthMonitor,
    Listener,
    LoadBalancer,
    Member,
    Pool,
    PoolTLS,
    SessionPersistence,
)
from amphorae.render import haproxy
from amphorae.render.haproxy_settings import AmphoraPaths, HaproxySettings

LB_ID = "5c1f2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c"
LISTENER = "11111111-0000-4000-8000-000000000001"
POOL = "22222222-0000-4000-8000-000000000001"
BACKEND = f"{POOL}:{LISTENER}"
PATHS = AmphoraPaths.for_lb("/var/lib/amphorae/amphora", LB_ID)
SETTINGS = HaproxySettings(fd_limit=1_048_576)
HM = HealthMonitor(id="hm", type="HTTP", delay=2, timeout=1, max_retries=2,
                   url_path="/health", expected_codes="200")


def member(n: int, **kw: object) -> Member:
    fields: dict[str, object] = {"address": f"198.18.4.{n}", "protocol_port": 80, **kw}
    return Member(id=f"33333333-0000-4000-8000-{n:012d}", **fields)  # type: ignore[arg-type]


def name(n: int) -> str:
    return member(n).id


def config(*members: Member, settings: HaproxySettings = SETTINGS, **pool: object) -> str:
    fields: dict[str, object] = {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                                 "health_monitor": HM, **pool}
    lb = LoadBalancer(
        id=LB_ID, project_id="p", vips=("198.18.0.10",),
        listeners=(Listener(id=LISTENER, protocol="HTTP", protocol_port=80,
                            default_pool_id=POOL),),
        pools=(Pool(id=POOL, members=tuple(members), **fields),))  # type: ignore[arg-type]
    return haproxy.render(lb, settings, PATHS)


def target(n: int) -> str:
    return f"{BACKEND}/{name(n)}"


def test_the_same_config_needs_nothing() -> None:
    assert rp.plan(config(member(1)), config(member(1))) == []


def test_a_new_member_is_added_checked_and_made_ready() -> None:
    actions = rp.plan(config(member(1)), config(member(1), member(2, weight=3)))
    assert actions == [rp.Action(rp.ADD, BACKEND, name(2), (
        f"add server {target(2)} 198.18.4.2:80 weight 3 check inter 2s fall 3 rise 2",
        f"enable health {target(2)}",
        f"set server {target(2)} state ready"))]


def test_a_new_member_without_monitor_or_admin_state_stays_down() -> None:
    actions = rp.plan(config(member(1), health_monitor=None),
                      config(member(1), member(2, enabled=False), health_monitor=None))
    assert actions == [rp.Action(rp.ADD, BACKEND, name(2), (
        f"add server {target(2)} 198.18.4.2:80 weight 1",))]


def test_a_removed_member_drains_then_goes() -> None:
    actions = rp.plan(config(member(1), member(2)), config(member(1)))
    assert actions == [rp.Action(
        rp.REMOVE, BACKEND, name(2), (f"set server {target(2)} state drain",),
        (f"set server {target(2)} state maint", f"shutdown sessions server {target(2)}",
         f"del server {target(2)}"),
        drain_timeout=60.0)]  # hard-stop-after, what a reload would give it


def test_a_removed_disabled_member_has_nothing_to_drain() -> None:
    actions = rp.plan(config(member(1), member(2, enabled=False)), config(member(1)))
    assert actions is not None and [a.now for a in actions] == [()]
    assert actions[0].then[-1] == f"del server {target(2)}"


def test_the_pool_tag_sets_the_drain_timeout() -> None:
    for seconds in (0, 7):
        actions = rp.plan(config(member(1), member(2), drain_timeout=seconds),
                          config(member(1), drain_timeout=seconds))
        assert actions is not None and actions[0].drain_timeout == float(seconds)


def test_without_hard_stop_after_a_drain_has_no_limit() -> None:
    settings = dataclasses.replace(SETTINGS, hard_stop_after=None)
    actions = rp.plan(config(member(1), member(2), settings=settings),
                      config(member(1), settings=settings))
    assert actions is not None and actions[0].drain_timeout is None


def test_weight_and_admin_state() -> None:
    actions = rp.plan(config(member(1), member(2), member(3, enabled=False)),
                      config(member(1, weight=5), member(2, enabled=False), member(3)))
    assert actions == [
        rp.Action(rp.ENABLE, BACKEND, name(3), (f"set server {target(3)} state ready",)),
        rp.Action(rp.WEIGHT, BACKEND, name(1), (f"set server {target(1)} weight 5",)),
        rp.Action(rp.DISABLE, BACKEND, name(2), (f"set server {target(2)} state drain",),
                  (f"set server {target(2)} state maint",
                   f"shutdown sessions server {target(2)}"), drain_timeout=60.0),
    ]


def test_capacity_comes_before_it_goes() -> None:
    actions = rp.plan(config(member(1)), config(member(2)))
    assert actions is not None and [a.kind for a in actions] == [rp.ADD, rp.REMOVE]


def test_slow_start_goes_on_every_server_line_and_into_add_server() -> None:
    text = config(member(1), slow_start=10)
    assert f"server {name(1)} 198.18.4.1:80 weight 1 slowstart 10s check" in text
    actions = rp.plan(text, config(member(1), member(2), slow_start=10))
    assert actions is not None
    assert actions[0].now[0] == (f"add server {target(2)} 198.18.4.2:80 weight 1 "
                                 "slowstart 10s check inter 2s fall 3 rise 2")


def test_the_drain_line_alone_changes_nothing_at_runtime() -> None:
    assert rp.plan(config(member(1), drain_timeout=5), config(member(1), drain_timeout=9)) == []


def test_global_maxconn_follows_the_member_count() -> None:
    """With a small descriptor limit the process maxconn depends on the member count."""
    small = dataclasses.replace(SETTINGS, fd_limit=1000)
    old, new = config(member(1), settings=small), config(member(1), member(2), settings=small)
    assert "maxconn 319" in old and "maxconn 318" in new
    actions = rp.plan(old, new)
    assert actions is not None
    assert [a.kind for a in actions] == [rp.MAXCONN, rp.ADD]
    assert actions[0].now == ("set maxconn global 318",)


@pytest.mark.parametrize("algorithm", ["SOURCE_IP", "SOURCE_IP_PORT"])
def test_static_algorithms_reload_for_members_but_not_for_admin_state(algorithm: str) -> None:
    def cfg(*members: Member) -> str:
        return config(*members, lb_algorithm=algorithm)

    assert rp.plan(cfg(member(1)), cfg(member(1), member(2))) is None
    assert rp.plan(cfg(member(1), member(2)), cfg(member(1))) is None
    assert rp.plan(cfg(member(1)), cfg(member(1, weight=2))) is None
    actions = rp.plan(cfg(member(1), member(2)), cfg(member(1), member(2, enabled=False)))
    assert actions is not None and [a.kind for a in actions] == [rp.DISABLE]


def test_least_connections_is_dynamic() -> None:
    actions = rp.plan(config(member(1), lb_algorithm="LEAST_CONNECTIONS"),
                      config(member(1), member(2), lb_algorithm="LEAST_CONNECTIONS"))
    assert actions is not None and [a.kind for a in actions] == [rp.ADD]


def test_servers_add_server_cannot_create_mean_a_reload() -> None:
    cookie = SessionPersistence(type="HTTP_COOKIE")
    tls = PoolTLS()
    ping = dataclasses.replace(HM, type="PING")
    for pool in ({"session_persistence": cookie}, {"tls": tls}, {"health_monitor": ping}):
        assert rp.plan(config(member(1), **pool), config(member(1), member(2), **pool)) \
            is None, pool
        # Weights and admin state still go at runtime.
        actions = rp.plan(config(member(1), **pool), config(member(1, weight=4), **pool))
        assert actions is not None and [a.kind for a in actions] == [rp.WEIGHT], pool


def test_source_ip_persistence_is_runtime() -> None:
    sticky = SessionPersistence(type="SOURCE_IP")
    actions = rp.plan(config(member(1), session_persistence=sticky),
                      config(member(1), member(2), session_persistence=sticky))
    assert actions is not None and [a.kind for a in actions] == [rp.ADD]


@pytest.mark.parametrize("change", [
    {"backup": True},  # a server's role
    {"monitor_port": 8080},  # its check settings
    {"protocol_port": 81},  # its address
])
def test_a_changed_server_reloads(change: dict[str, object]) -> None:
    assert rp.plan(config(member(1), member(2)), config(member(1), member(2, **change))) is None


@pytest.mark.parametrize("pool", [
    {"health_monitor": None},  # backend lines
    {"lb_algorithm": "LEAST_CONNECTIONS"},
    {"slow_start": 5},  # every server line
    {"enabled": False},  # the backend goes away
])
def test_structural_changes_reload(pool: dict[str, object]) -> None:
    assert rp.plan(config(member(1)), config(member(1), **pool)) is None


def test_frontend_and_global_changes_reload() -> None:
    base = config(member(1))
    assert rp.plan(base, base.replace("timeout client 50000", "timeout client 1000")) is None
    assert rp.plan(base, base.replace("hard-stop-after 60s", "hard-stop-after 5s")) is None
    assert rp.plan(base, base + "\nbackend extra\n    mode http\n") is None
    assert rp.plan(base, base + "# a comment\n") is None


def test_server_line_parsing() -> None:
    server = rp.Server.parse("server s1 [2001:db8::1]:80 weight 7 check inter 2s disabled backup")
    assert server == rp.Server("s1", "[2001:db8::1]:80", 7, True,
                               ("check", "inter", "2s", "backup"))
    assert server.addable()
    assert not rp.Server.parse("server s 1.2.3.4:80 cookie s").addable()
    assert not rp.Server.parse("server s 1.2.3.4:80 check-alpn 'h2'").addable()
    assert not rp.Server.parse("server s 1.2.3.4:80 inter").addable()


def test_haproxy_times() -> None:
    assert rp.parse_time("60s") == 60.0
    assert rp.parse_time("1500") == 1.5  # milliseconds without a unit
    assert rp.parse_time("2m") == 120.0
    with pytest.raises(ValueError):
        rp.parse_time("soon")
