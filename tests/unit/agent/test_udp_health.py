"""The agent's UDP health checks with fake probes and a fake clock: rise/fall counting,
the rounds every ``delay``, the rules re-rendered when the healthy set changes, statuses
for the heartbeat, and the /1.0/udp endpoints (falcon's test client, stand-in ``nft``).
The probes themselves run against loopback in test_udp_probes.py, the whole path through
a booted amphora in tests/integration/test_udp_health.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import falcon.testing
import pytest

from amphorae.agent import api
from amphorae.agent import haproxy as hap
from amphorae.agent import heartbeat as hb
from amphorae.agent import nftables as nft
from amphorae.agent import udp_health as uh
from amphorae.agent.udp_probes import Target
from amphorae.contract import model, udp_config
from tests.unit.agent.test_agent_dataplane import FAKE

ADDRESSES = {"m1": "198.18.105.21", "m2": "198.18.105.22", "m3": "198.18.105.23"}


def monitor(**fields: object) -> model.HealthMonitor:
    values = {"id": "hm", "type": "UDP-CONNECT", "delay": 1, "timeout": 1,
              "max_retries": 2, "max_retries_down": 2, **fields}
    return model.HealthMonitor(**values)


def member(name: str, **fields: object) -> model.Member:
    return model.Member(id=name, address=ADDRESSES[name], protocol_port=5300,
                        **fields)


def load_balancer(hm: model.HealthMonitor | None = None,
                  members: tuple[model.Member, ...] | None = None) -> model.LoadBalancer:
    pool = model.Pool(id="pool", protocol="UDP", lb_algorithm="ROUND_ROBIN",
                      members=members or tuple(member(n) for n in ADDRESSES),
                      health_monitor=monitor() if hm is None else hm)
    return model.LoadBalancer(
        id="lb", project_id="p", vips=("198.18.104.10",), pools=(pool,),
        listeners=(model.Listener(id="listener", protocol="UDP", protocol_port=53,
                                  default_pool_id="pool"),))


def document(lb: model.LoadBalancer) -> bytes:
    return udp_config.render(lb).encode()


# -- rise and fall ----------------------------------------------------------------------


def run(results: str, rise: int, fall: int, up: bool = True) -> str:
    """Feed results ("+" pass, "-" fail); the state after each ("U"/"D")."""
    state = uh.MemberHealth(up=up)
    states = ""
    for result in results:
        before = state.up
        changed = state.record(result == "+", rise, fall)
        assert changed == (state.up != before)
        states += "U" if state.up else "D"
    return states


@pytest.mark.parametrize("results,rise,fall,states", [
    ("-", 2, 2, "U"),
    ("--", 2, 2, "UD"),
    ("-+-+-", 2, 2, "UUUUU"),  # failures must be consecutive
    ("---", 1, 3, "UUD"),
    ("-", 2, 1, "D"),
    ("--+", 2, 2, "UDD"),
    ("--++", 2, 2, "UDDU"),
    ("--+-++", 2, 2, "UDDDDU"),  # a failure while DOWN starts the rise count over
    ("--+++", 3, 2, "UDDDU"),
    ("--+--", 2, 2, "UDDDD"),
    ("++++", 2, 2, "UUUU"),
])
def test_rise_and_fall(results: str, rise: int, fall: int, states: str) -> None:
    assert run(results, rise, fall) == states


def test_thresholds_below_one_count_as_one() -> None:
    assert run("-+", 0, 0) == "DU"


# -- the checker with fake probes -------------------------------------------------------


class FakeRules:
    """Records applied scripts; refuses one that mentions ``refuse`` as nft -c would."""

    def __init__(self) -> None:
        self.scripts: list[str] = []
        self.deleted = 0

    def apply(self, script: bytes) -> None:
        if b"refuse" in script:
            raise nft.NftError("Invalid request", "refused")
        self.scripts.append(script.decode())

    def delete(self) -> None:
        self.deleted += 1

    def applied(self) -> bytes | None:
        return self.scripts[-1].encode() if self.scripts else None


class Env:
    """A UdpHealth with fake rules, probes that answer from :attr:`ok`, a settable clock;
    :meth:`at` runs one step at a time with the probes called inline."""

    def __init__(self, base: Path, rules: nft.Nftables | None = None) -> None:
        self.now = 0.0
        self.ok: dict[str, bool] = dict.fromkeys(ADDRESSES.values(), True)
        self.calls: list[tuple[str, Target]] = []
        self.rules = FakeRules()
        self.health = uh.UdpHealth(rules or self.rules, base, clock=lambda: self.now,
                                   probes={"UDP-CONNECT": self.probe("UDP-CONNECT"),
                                           "TCP": self.probe("TCP")})

    def probe(self, kind: str) -> Callable[[Target, model.HealthMonitor], bool]:
        def check(target: Target, hm: model.HealthMonitor) -> bool:
            self.calls.append((kind, target))
            return self.ok[target.address]
        return check

    def configure(self, lb: model.LoadBalancer) -> None:
        self.health.configure(document(lb))

    def at(self, now: float) -> float:
        self.now = now
        return self.health.step(lambda fn: fn())

    def in_rules(self) -> set[str]:
        """Member names with a DNAT target in the last applied rules."""
        script = self.rules.scripts[-1]
        return {name for name, address in ADDRESSES.items() if address in script}

    def statuses(self) -> dict[str, str]:
        return self.health.pool_statuses()["pool"]["members"]


@pytest.fixture
def env() -> Iterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="amph-udp-health-"))
    environment = Env(base)
    try:
        yield environment
    finally:
        environment.health.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_member_leaves_after_fall_and_returns_after_rise(env: Env) -> None:
    env.configure(load_balancer())
    assert env.in_rules() == {"m1", "m2", "m3"}  # everyone starts UP
    assert env.statuses() == dict.fromkeys(ADDRESSES, "UP")
    env.ok[ADDRESSES["m2"]] = False
    assert env.at(0.0) == 1.0  # first round at once; the next one a delay later
    assert len(env.rules.scripts) == 1
    assert env.statuses()["m2"] == "UP"
    assert env.at(0.5) == 0.5  # not due: nothing probed
    assert len(env.calls) == 3
    env.at(1.0)  # second failure in a row
    assert env.in_rules() == {"m1", "m3"} and len(env.rules.scripts) == 2
    assert env.statuses() == {"m1": "UP", "m2": "DOWN", "m3": "UP"}
    env.ok[ADDRESSES["m2"]] = True
    env.at(2.0)
    assert env.statuses()["m2"] == "DOWN"  # one success is not enough (rise 2)
    env.at(3.0)
    assert env.in_rules() == {"m1", "m2", "m3"} and len(env.rules.scripts) == 3
    assert env.statuses()["m2"] == "UP"
    assert len(env.calls) == 4 * 3  # 4 rounds of 3 members


def test_monitor_address_and_port_are_probed(env: Env) -> None:
    members = (member("m1", monitor_address=ADDRESSES["m3"], monitor_port=9100),
               member("m2", monitor_port=9101))
    env.configure(load_balancer(monitor(type="TCP"), members))
    env.at(0.0)
    assert len(env.calls) == 2
    assert set(env.calls) == {("TCP", Target(ADDRESSES["m2"], 9101)),
                              ("TCP", Target(ADDRESSES["m3"], 9100))}


def test_unchecked_and_disabled_members(env: Env) -> None:
    members = (member("m1"), member("m2", enabled=False), member("m3", weight=0))
    env.configure(load_balancer(monitor(enabled=False), members))
    assert env.at(0.0) == 3600  # nothing to check
    assert env.calls == []
    assert env.in_rules() == {"m1"}  # weight 0 takes no new flows either
    assert env.health.pool_statuses() == {"pool": {"status": "UP", "members": {
        "m1": "no check", "m2": "MAINT", "m3": "no check"}}}
    env.configure(load_balancer(monitor(), members))
    env.at(1.0)
    assert sorted(t.address for _, t in env.calls) == [ADDRESSES["m1"], ADDRESSES["m3"]]
    assert env.statuses() == {"m1": "UP", "m2": "MAINT", "m3": "DRAIN"}


def test_no_healthy_member_means_no_dnat_and_pool_down(env: Env) -> None:
    env.configure(load_balancer())
    env.ok = dict.fromkeys(ADDRESSES.values(), False)
    env.at(0.0)
    env.at(1.0)
    assert "dnat" not in env.rules.scripts[-1] and env.in_rules() == set()
    assert env.health.pool_statuses()["pool"] == {
        "status": "DOWN", "members": dict.fromkeys(ADDRESSES, "DOWN")}


def test_backup_member_serves_while_no_primary_is_up(env: Env) -> None:
    members = (member("m1"), member("m2", backup=True))
    env.configure(load_balancer(members=members))
    assert env.in_rules() == {"m1"}
    env.ok[ADDRESSES["m1"]] = False
    env.at(0.0)
    env.at(1.0)
    assert env.in_rules() == {"m2"}
    assert env.health.pool_statuses()["pool"]["status"] == "UP"


def test_reconfigure_keeps_state_of_unchanged_checks_only(env: Env) -> None:
    env.ok[ADDRESSES["m2"]] = False
    env.ok[ADDRESSES["m3"]] = False
    env.configure(load_balancer())
    env.at(0.0)
    env.at(1.0)
    assert env.statuses() == {"m1": "UP", "m2": "DOWN", "m3": "DOWN"}
    # Same document again, and one with only a new delay: states kept.
    env.configure(load_balancer())
    env.configure(load_balancer(monitor(delay=5)))
    assert env.statuses() == {"m1": "UP", "m2": "DOWN", "m3": "DOWN"}
    assert env.in_rules() == {"m1"}
    # m3 checked elsewhere now: a new check, which starts UP.
    members = (member("m1"), member("m2"), member("m3", monitor_port=9999))
    env.configure(load_balancer(monitor(delay=5), members))
    assert env.statuses() == {"m1": "UP", "m2": "DOWN", "m3": "UP"}
    assert env.in_rules() == {"m1", "m3"}
    # A different monitor: every member starts over.
    env.configure(load_balancer(monitor(delay=5, max_retries_down=3), members))
    assert env.statuses() == dict.fromkeys(ADDRESSES, "UP")


def test_known_pool_keeps_its_rhythm_on_reconfigure(env: Env) -> None:
    env.configure(load_balancer())
    env.at(0.0)
    env.now = 0.4
    env.configure(load_balancer())
    assert env.at(0.4) == pytest.approx(0.6)  # not probed again before 1.0
    assert len(env.calls) == 3


def test_a_running_check_is_not_started_twice(env: Env) -> None:
    env.configure(load_balancer(members=(member("m1"),)))
    pending: list[Callable[[], None]] = []
    env.now = 0.0
    env.health.step(pending.append)
    env.now = 1.0
    env.health.step(pending.append)  # the first check of m1 still runs
    assert len(pending) == 1
    pending.pop()()
    env.now = 2.0
    env.health.step(pending.append)
    assert len(pending) == 1


def test_result_of_a_replaced_check_is_dropped(env: Env) -> None:
    env.configure(load_balancer(members=(member("m1"),)))
    pending: list[Callable[[], None]] = []
    env.ok[ADDRESSES["m1"]] = False
    env.health.step(pending.append)
    env.configure(load_balancer(monitor(max_retries_down=1), (member("m1"),)))
    pending.pop()()  # a failure of the old check: fall 1 now, but it is not counted
    assert env.statuses() == {"m1": "UP"}
    env.at(1.0)
    assert env.statuses() == {"m1": "DOWN"}  # the new check's own failure
    assert len(env.calls) == 2


def test_refused_configuration_changes_nothing(env: Env) -> None:
    env.configure(load_balancer())
    before = env.health.document()
    with pytest.raises(uh.UdpConfigError, match="PING is not supported"):
        env.configure(load_balancer(monitor(type="PING")))
    with pytest.raises(uh.UdpConfigError, match="not JSON"):
        env.health.configure(b"{")
    with pytest.raises(uh.UdpConfigError, match="does not appear to be an IPv4 or IPv6"):
        env.configure(load_balancer(members=(member("m1", monitor_address="m1.test"),)))
    lb = load_balancer()
    refused = dataclasses.replace(lb, listeners=(dataclasses.replace(
        lb.listeners[0], id="refuse-me"),))
    with pytest.raises(nft.NftError):
        env.configure(refused)
    assert env.health.document() == before and len(env.rules.scripts) == 1


def test_raw_script_and_delete_end_the_checks(env: Env) -> None:
    env.configure(load_balancer())
    env.health.apply_script(b"# a raw script\n")
    assert env.health.document() is None
    assert env.at(0.0) == 3600 and env.calls == []
    assert env.health.pool_statuses() == {}
    env.configure(load_balancer())
    env.health.delete()
    assert env.rules.deleted == 1 and env.health.document() is None


def test_restore_resumes_the_stored_document(env: Env, tmp_path: Path) -> None:
    env.configure(load_balancer())
    again = uh.UdpHealth(FakeRules(), env.health.path.parent.parent,
                         probes={"UDP-CONNECT": lambda target, hm: True})
    try:
        assert again.restore()
        assert again.healthy() == {"pool": set(ADDRESSES)}
        assert not uh.UdpHealth(FakeRules(), tmp_path).restore()
    finally:
        again.stop()


def test_heartbeat_carries_udp_pools(env: Env, tmp_path: Path) -> None:
    env.configure(load_balancer())
    sender = hb.HeartbeatSender("amp", "key", ["127.0.0.1:9"], 10, tmp_path,
                                stats_sockets=list, udp_pools=env.health.pool_statuses)
    listeners, pools = sender.collect()
    assert listeners == {}
    assert pools == {"pool": {"status": "UP", "members": dict.fromkeys(ADDRESSES, "UP")}}


# -- the thread -------------------------------------------------------------------------


def test_thread_checks_and_applies(tmp_path: Path) -> None:
    rules = FakeRules()
    seen: list[str] = []

    def probe(target: Target, hm: model.HealthMonitor) -> bool:
        seen.append(target.address)
        return target.address != ADDRESSES["m2"]

    health = uh.UdpHealth(rules, tmp_path, probes={"UDP-CONNECT": probe})
    try:
        health.configure(document(load_balancer(monitor(max_retries_down=1))))
        health.start()
        deadline = time.monotonic() + 5
        while len(rules.scripts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ADDRESSES["m2"] not in rules.scripts[-1], rules.scripts
        assert set(seen) == set(ADDRESSES.values())
    finally:
        health.stop()


# -- the endpoints ----------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[tuple[falcon.testing.TestClient, Env, Path]]:
    """The agent's app with a real Nftables running the stand-in nft, fake probes."""
    root = Path(tempfile.mkdtemp(prefix="amph-udp-api-"))
    try:
        fake = root / "fake-nft"
        fake.write_text(FAKE.format(calls=root / "calls"))
        fake.chmod(0o755)
        rules = nft.Nftables(root / "base", str(fake), forwarding=False)
        env = Env(root / "base", rules)
        app = api.create_app(hap.Supervisor(root / "base", "/bin/false"), None, rules,
                             env.health)
        yield falcon.testing.TestClient(app), env, root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_udp_endpoints(client) -> None:
    http, _, root = client
    assert http.simulate_get("/1.0/udp").status_code == 404
    body = document(load_balancer())
    resp = http.simulate_put("/1.0/udp", body=body)
    assert resp.status_code == 200 and resp.json == {"message": "OK"}
    assert resp.headers["etag"].strip('"')
    got = http.simulate_get("/1.0/udp")
    assert got.status_code == 200 and got.content == body
    assert got.headers["content-type"].startswith("application/json")
    rules = http.simulate_get("/1.0/nftables").text
    assert all(address in rules for address in ADDRESSES.values())
    status = http.simulate_get("/1.0/udp/status").json
    assert status == {"pools": {"pool": {"status": "UP",
                                         "members": dict.fromkeys(ADDRESSES, "UP")}}}
    assert "-c -f" in (root / "calls").read_text()  # checked before it was applied

    resp = http.simulate_delete("/1.0/udp")
    assert resp.status_code == 200
    assert http.simulate_get("/1.0/udp").status_code == 404
    assert http.simulate_get("/1.0/nftables").status_code == 404


@pytest.mark.parametrize("body,details", [
    (b"not json", "not JSON"),
    (json.dumps({"version": 1, "load_balancer": {"id": 1}}).encode(), "expected str"),
    (document(load_balancer(monitor(type="HTTPS"))), "HTTPS is not supported"),
])
def test_udp_refused_documents(client, body: bytes, details: str) -> None:
    http, _, _ = client
    http.simulate_put("/1.0/udp", body=document(load_balancer()))
    resp = http.simulate_put("/1.0/udp", body=body)
    assert resp.status_code == 400
    assert resp.json["message"] == "Invalid request" and details in resp.json["details"]
    assert http.simulate_get("/1.0/udp").content == document(load_balancer())


def test_rules_nft_refuses_keep_the_previous_document(client) -> None:
    http, _, _ = client
    http.simulate_put("/1.0/udp", body=document(load_balancer()))
    lb = load_balancer()
    bad = dataclasses.replace(lb, listeners=(dataclasses.replace(lb.listeners[0],
                                                                 id="bad-listener"),))
    resp = http.simulate_put("/1.0/udp", body=document(bad))
    assert resp.status_code == 400 and "bad thing" in resp.json["details"]
    assert http.simulate_get("/1.0/udp").content == document(lb)


def test_raw_nftables_upload_ends_the_udp_document(client) -> None:
    http, _, _ = client
    http.simulate_put("/1.0/udp", body=document(load_balancer()))
    assert http.simulate_put("/1.0/nftables", body=b"table inet x {}\n").status_code == 200
    assert http.simulate_get("/1.0/udp").status_code == 404
    assert http.simulate_get("/1.0/udp/status").json == {"pools": {}}
    assert http.simulate_get("/1.0/nftables").text == "table inet x {}\n"
