"""The worker's desired state: load balancer trees written through the ORM into a real
database (SQLite and PostgreSQL, built by the Alembic migrations) and read back as the
render model, field for field; the rendered haproxy.cfg passes `haproxy -c`."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.contract import model
from amphorae.contract.peers import peer_name
from amphorae.db import engine as db_engine
from amphorae.db import models as m
from amphorae.render import haproxy
from amphorae.render.haproxy_settings import AmphoraPaths, HaproxySettings
from amphorae.worker import desired
from tests import servers
from tests.unit.render.test_haproxy import _write_certificates, haproxy_check

VIP = "198.18.0.10"
VIP6 = "2001:db8::10"
# Distinct from the built-in defaults, so a test sees that the configuration is read.
OVERRIDES = {
    ("haproxy_amphora", "timeout_client_data"): 41000,
    ("haproxy_amphora", "timeout_member_connect"): 4100,
    ("haproxy_amphora", "timeout_member_data"): 42000,
    ("haproxy_amphora", "timeout_tcp_inspect"): 7,
    ("api_settings", "default_pool_tls_versions"): ["TLSv1.3"],
}


@pytest.fixture(scope="module")
def engine(database_url: str) -> Engine:
    return db_engine.get_engine(database_url)


@pytest.fixture(autouse=True)
def overrides() -> Iterator[None]:
    for (group, name), value in OVERRIDES.items():
        config.CONF.set_override(name, value, group=group)
    try:
        yield
    finally:
        for group, name in OVERRIDES:
            config.CONF.clear_override(name, group=group)


# --- rows ------------------------------------------------------------------------------


def ids(n: int) -> list[str]:
    """``n`` fresh ids in ascending order (to create rows out of id order)."""
    return sorted(str(uuid.uuid4()) for _ in range(n))


def row(cls: type, defaults: dict[str, Any], kw: dict[str, Any]) -> Any:
    status = {"provisioning_status": kw.pop("status", c.ACTIVE), "operating_status": c.ONLINE}
    return cls(**{"id": m.new_id(), "project_id": servers.PROJECT, **status, **defaults, **kw})


def new_lb(**kw: Any) -> m.LoadBalancer:
    lb = row(m.LoadBalancer, {"enabled": True}, kw)
    lb.vip = m.Vip(ip_address=VIP)
    return lb


def new_listener(lb: m.LoadBalancer, **kw: Any) -> m.Listener:
    return row(m.Listener, {"load_balancer": lb, "protocol": "HTTP", "protocol_port": 80}, kw)


def new_pool(lb: m.LoadBalancer, **kw: Any) -> m.Pool:
    return row(m.Pool, {"load_balancer": lb, "protocol": "HTTP",
                        "lb_algorithm": "ROUND_ROBIN"}, kw)


def new_member(pool: m.Pool, address: str, **kw: Any) -> m.Member:
    return row(m.Member, {"pool": pool, "ip_address": address, "protocol_port": 80}, kw)


def new_monitor(pool: m.Pool, **kw: Any) -> m.HealthMonitor:
    return row(m.HealthMonitor, {"pool": pool, "type": "TCP", "delay": 5, "timeout": 3,
                                 "rise_threshold": 2, "fall_threshold": 3}, kw)


def new_policy(listener: m.Listener, position: int, **kw: Any) -> m.L7Policy:
    return row(m.L7Policy, {"listener": listener, "action": "REJECT",
                            "position": position}, kw)


def new_rule(policy: m.L7Policy, **kw: Any) -> m.L7Rule:
    return row(m.L7Rule, {"l7policy": policy, "type": "PATH",
                          "compare_type": "STARTS_WITH", "value": "/"}, kw)


def new_amphora(lb: m.LoadBalancer, role: str | None, vrrp_ip: str | None,
                status: str = c.ALLOCATED, **kw: Any) -> m.Amphora:
    return m.Amphora(id=kw.pop("id", m.new_id()), load_balancer=lb, role=role,
                     vrrp_ip=vrrp_ip, status=status, **kw)


def save(engine: Engine, lb: m.LoadBalancer) -> str:
    """Write ``lb`` with everything attached to it; its id."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.add(lb)
    return lb.id


def read(engine: Engine, lb_id: str, exclude: tuple[str, ...] = ()) -> model.LoadBalancer:
    """The model, from a session that has seen none of the rows."""
    with Session(engine) as session:
        lb = desired.load_balancer_model(session, lb_id, exclude=exclude)
    assert lb is not None
    return lb


def model_ids(lb: model.LoadBalancer) -> set[str]:
    found = {pool.id for pool in lb.pools}
    found |= {member.id for pool in lb.pools for member in pool.members}
    found |= {pool.health_monitor.id for pool in lb.pools if pool.health_monitor}
    for listener in lb.listeners:
        found.add(listener.id)
        found |= {policy.id for policy in listener.l7policies}
        found |= {rule.id for policy in listener.l7policies for rule in policy.rules}
    return found


# --- a full tree --------------------------------------------------------------------------


@dataclasses.dataclass
class Tree:
    lb: m.LoadBalancer
    listeners: dict[str, m.Listener]
    pools: dict[str, m.Pool]
    members: dict[str, m.Member]
    policies: dict[str, m.L7Policy]
    rules: dict[str, m.L7Rule]
    amphorae: list[m.Amphora]


def full_tree() -> Tree:
    """Every field the model carries, with rows created out of the order they come back."""
    lb = new_lb(topology="ACTIVE_STANDBY")
    lb.additional_vips = [m.AdditionalVip(subnet_id=str(uuid.uuid4()), ip_address=VIP6)]
    api_id, web_id = ids(2)
    web = new_pool(lb, id=web_id, tls_enabled=True, tls_certificate_id="client-ref",
                   ca_tls_certificate_id="ca-ref", crl_container_id="crl-ref",
                   tls_ciphers="ECDHE-ECDSA-AES256-GCM-SHA384", tls_versions=None,
                   alpn_protocols=["http/1.1"])
    web.session_persistence = m.SessionPersistence(type="HTTP_COOKIE", cookie_name="SRV_ID")
    api = new_pool(lb, id=api_id, lb_algorithm="LEAST_CONNECTIONS")
    api.session_persistence = m.SessionPersistence(
        type="SOURCE_IP", persistence_timeout=120, persistence_granularity="255.255.255.255")
    low, high = ids(2)
    members = {
        "web2": new_member(web, "198.18.4.12", id=high, protocol_port=8080, weight=3),
        "web1": new_member(web, "198.18.4.11", id=low, protocol_port=8080, weight=1,
                           backup=True),
        "api1": new_member(api, "198.18.4.21", monitor_address="198.18.4.22",
                           monitor_port=9000, enabled=False),
    }
    new_monitor(web, type="HTTP", delay=6, timeout=4, rise_threshold=2, fall_threshold=5,
                http_method="GET", url_path="/healthz", expected_codes="200-202",
                http_version=1.1, domain_name="www.example.com")
    https = new_listener(
        lb, protocol="TERMINATED_HTTPS", protocol_port=443, default_pool=web,
        connection_limit=1000, insert_headers={
            "X-SSL-Client-CN": "true", "X-Forwarded-For": "true", "X-Forwarded-Proto": "false"},
        tls_certificate_id="cert-ref", client_ca_tls_certificate_id="ca-ref",
        client_crl_container_id="crl-ref", client_authentication="MANDATORY",
        tls_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", tls_versions=["TLSv1.3"],
        alpn_protocols=["h2", "http/1.1"], hsts_max_age=31536000,
        hsts_include_subdomains=True, hsts_preload=False)
    https.allowed_cidrs = [m.ListenerCidr(cidr="198.18.2.0/24"),
                           m.ListenerCidr(cidr="198.18.1.0/24")]
    tcp = new_listener(lb, protocol="TCP", protocol_port=8080, enabled=False,
                       timeout_client_data=1, timeout_member_connect=2,
                       timeout_member_data=3, timeout_tcp_inspect=4)
    http = new_listener(lb, protocol="HTTP", protocol_port=80, default_pool=api,
                        timeout_client_data=30000, timeout_member_connect=3000,
                        timeout_member_data=30001, timeout_tcp_inspect=0)
    policies = {
        "to_api": new_policy(https, 2, action="REDIRECT_TO_POOL", redirect_pool=api),
        "reject": new_policy(https, 1),
        "moved": new_policy(https, 3, action="REDIRECT_TO_URL",
                            redirect_url="https://www.example.com/", redirect_http_code=301),
    }
    first, second = ids(2)
    rules = {
        "env": new_rule(policies["to_api"], id=second, type="HEADER", key="X-Env",
                        compare_type="EQUAL_TO", value="beta", invert=True),
        "api": new_rule(policies["to_api"], id=first, value="/api"),
        "host": new_rule(policies["reject"], type="HOST_NAME", compare_type="EQUAL_TO",
                         value="blocked.example.com"),
        "old": new_rule(policies["moved"], compare_type="EQUAL_TO", value="/old"),
    }
    master, backup = ids(2)
    amphorae = [new_amphora(lb, c.ROLE_BACKUP, "198.18.0.6", id=backup),
                new_amphora(lb, c.ROLE_MASTER, "198.18.0.5", id=master),
                new_amphora(lb, c.ROLE_MASTER, "198.18.0.7", status=c.DELETED)]
    return Tree(lb, {"https": https, "tcp": tcp, "http": http}, {"web": web, "api": api},
                members, policies, rules, amphorae)


def expected_full(t: Tree) -> model.LoadBalancer:
    """What ``full_tree`` must read back as, written out field by field."""
    pools, members, policies, rules = t.pools, t.members, t.policies, t.rules
    web = model.Pool(
        id=pools["web"].id, protocol="HTTP", lb_algorithm="ROUND_ROBIN",
        members=(
            model.Member(id=members["web1"].id, address="198.18.4.11", protocol_port=8080,
                         weight=1, backup=True),
            model.Member(id=members["web2"].id, address="198.18.4.12", protocol_port=8080,
                         weight=3),
        ),
        health_monitor=model.HealthMonitor(
            id=pools["web"].health_monitor.id, type="HTTP", delay=6, timeout=4,
            max_retries=2, max_retries_down=5, http_method="GET", url_path="/healthz",
            expected_codes="200-202", http_version=1.1, domain_name="www.example.com"),
        session_persistence=model.SessionPersistence(type="HTTP_COOKIE",
                                                     cookie_name="SRV_ID"),
        tls=model.PoolTLS(
            client_cert_file=f"{pools['web'].id}-client.pem",
            ca_file=f"{pools['web'].id}-ca.pem", crl_file=f"{pools['web'].id}-crl.pem",
            ciphers="ECDHE-ECDSA-AES256-GCM-SHA384", versions=("TLSv1.3",),
            alpn_protocols=("http/1.1",)),
    )
    api = model.Pool(
        id=pools["api"].id, protocol="HTTP", lb_algorithm="LEAST_CONNECTIONS",
        members=(model.Member(id=members["api1"].id, address="198.18.4.21",
                              protocol_port=80, enabled=False,
                              monitor_address="198.18.4.22", monitor_port=9000),),
        session_persistence=model.SessionPersistence(
            type="SOURCE_IP", persistence_timeout=120,
            persistence_granularity="255.255.255.255"),
    )
    https_id = t.listeners["https"].id
    https = model.Listener(
        id=https_id, protocol="TERMINATED_HTTPS", protocol_port=443, default_pool_id=web.id,
        connection_limit=1000, timeout_client_data=41000, timeout_member_connect=4100,
        timeout_member_data=42000, timeout_tcp_inspect=7,
        insert_headers=(("X-Forwarded-For", "true"), ("X-Forwarded-Proto", "false"),
                        ("X-SSL-Client-CN", "true")),
        allowed_cidrs=("198.18.1.0/24", "198.18.2.0/24"),
        l7policies=(
            model.L7Policy(id=policies["reject"].id, action="REJECT", position=1, rules=(
                model.L7Rule(id=rules["host"].id, type="HOST_NAME", compare_type="EQUAL_TO",
                             value="blocked.example.com"),)),
            model.L7Policy(id=policies["to_api"].id, action="REDIRECT_TO_POOL", position=2,
                           redirect_pool_id=api.id, rules=(
                model.L7Rule(id=rules["api"].id, type="PATH", compare_type="STARTS_WITH",
                             value="/api"),
                model.L7Rule(id=rules["env"].id, type="HEADER", compare_type="EQUAL_TO",
                             key="X-Env", value="beta", invert=True))),
            model.L7Policy(id=policies["moved"].id, action="REDIRECT_TO_URL", position=3,
                           redirect_url="https://www.example.com/", redirect_http_code=301,
                           rules=(model.L7Rule(id=rules["old"].id, type="PATH",
                                               compare_type="EQUAL_TO", value="/old"),)),
        ),
        tls=model.ListenerTLS(
            crt_list_file=f"{https_id}.pem", client_authentication="MANDATORY",
            client_ca_file=f"{https_id}-ca.pem", client_crl_file=f"{https_id}-crl.pem",
            ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", versions=("TLSv1.3",),
            alpn_protocols=("h2", "http/1.1")),
        hsts_max_age=31536000, hsts_include_subdomains=True, hsts_preload=False,
    )
    http = model.Listener(
        id=t.listeners["http"].id, protocol="HTTP", protocol_port=80, default_pool_id=api.id,
        timeout_client_data=30000, timeout_member_connect=3000, timeout_member_data=30001,
        timeout_tcp_inspect=0)
    tcp = model.Listener(
        id=t.listeners["tcp"].id, protocol="TCP", protocol_port=8080, timeout_client_data=1,
        timeout_member_connect=2, timeout_member_data=3, timeout_tcp_inspect=4,
        enabled=False)
    master, backup = sorted(amp.id for amp in t.amphorae[:2])
    return model.LoadBalancer(
        id=t.lb.id, project_id=servers.PROJECT, vips=(VIP, VIP6),
        listeners=(http, https, tcp), pools=(api, web), topology="ACTIVE_STANDBY",
        peers=(model.Peer(peer_name(master), "198.18.0.5"),
               model.Peer(peer_name(backup), "198.18.0.6")))


# --- tests ------------------------------------------------------------------------------


def test_full_tree_maps_field_for_field(engine: Engine) -> None:
    tree = full_tree()
    lb_id = save(engine, tree.lb)
    got = read(engine, lb_id)
    want = expected_full(tree)
    for name in ("listeners", "pools", "peers"):  # piecewise first: readable failures
        assert getattr(got, name) == getattr(want, name), name
    assert got == want
    assert read(engine, lb_id) == got  # the same tree reads back the same


def test_missing_and_deleted_load_balancers_are_none(engine: Engine) -> None:
    with Session(engine) as session:
        assert desired.load_balancer_model(session, str(uuid.uuid4())) is None
    deleted = save(engine, new_lb(status=c.DELETED))
    with Session(engine) as session:
        assert desired.load_balancer_model(session, deleted) is None
    # One being deleted is still read: the worker needs it to take the amphorae down.
    going = save(engine, new_lb(status=c.PENDING_DELETE))
    assert read(engine, going).id == going


def test_minimal_load_balancer(engine: Engine) -> None:
    lb = new_lb(topology=None)
    new_amphora(lb, c.ROLE_STANDALONE, "198.18.0.5")
    lb_id = save(engine, lb)
    assert read(engine, lb_id) == model.LoadBalancer(
        id=lb_id, project_id=servers.PROJECT, vips=(VIP,), topology="SINGLE")


@pytest.mark.parametrize("how", ["status", "exclude"])
def test_removed_objects_go_with_their_children(engine: Engine, how: str) -> None:
    """PENDING_DELETE / DELETED objects, or those the caller excludes, are left out; the
    children of a removed listener or pool go with it even when they are ACTIVE, and
    references to a removed pool are cut."""
    gone = c.PENDING_DELETE if how == "status" else c.ACTIVE
    lb = new_lb()
    keep_pool = new_pool(lb)
    gone_pool = new_pool(lb, status=c.DELETED if how == "status" else c.ACTIVE)
    new_member(gone_pool, "198.18.4.31")
    keep_member = new_member(keep_pool, "198.18.4.11")
    gone_member = new_member(keep_pool, "198.18.4.12", status=gone)
    gone_monitor = new_monitor(keep_pool, status=gone)
    keep = new_listener(lb, default_pool=gone_pool)
    gone_listener = new_listener(lb, protocol_port=81, status=gone)
    new_rule(new_policy(gone_listener, 1))
    new_rule(new_policy(keep, 1, action="REDIRECT_TO_POOL", redirect_pool=gone_pool))
    reject = new_policy(keep, 2)
    keep_rule = new_rule(reject)
    gone_rule = new_rule(reject, value="/x", status=gone)
    gone_policy = new_policy(keep, 3, status=gone)
    new_rule(gone_policy)
    lb_id = save(engine, lb)
    exclude = (gone_pool.id, gone_member.id, gone_monitor.id, gone_listener.id,
               gone_rule.id, gone_policy.id) if how == "exclude" else ()
    got = read(engine, lb_id, exclude)
    assert got.pools == (model.Pool(id=keep_pool.id, protocol="HTTP",
                                    lb_algorithm="ROUND_ROBIN", members=(model.Member(
                                        id=keep_member.id, address="198.18.4.11",
                                        protocol_port=80),)),)
    (listener,) = got.listeners
    assert listener.id == keep.id and listener.default_pool_id is None
    assert listener.l7policies == (model.L7Policy(
        id=reject.id, action="REJECT", position=2, rules=(model.L7Rule(
            id=keep_rule.id, type="PATH", compare_type="STARTS_WITH", value="/"),)),)
    assert model_ids(got) == {keep_pool.id, keep_member.id, keep.id, reject.id, keep_rule.id}
    # Without the exclusions (or once the rows are ACTIVE again) everything is there.
    if how == "exclude":
        assert set(exclude) <= model_ids(read(engine, lb_id))


def test_disabled_objects_stay_with_enabled_false(engine: Engine) -> None:
    lb = new_lb(enabled=False)
    pool = new_pool(lb, enabled=False)
    member = new_member(pool, "198.18.4.11", enabled=False)
    monitor = new_monitor(pool, enabled=False)
    listener = new_listener(lb, default_pool=pool, enabled=False)
    policy = new_policy(listener, 1, enabled=False)
    rule = new_rule(policy, enabled=False)
    got = read(engine, save(engine, lb))
    assert got.enabled is False
    (mp,) = got.pools
    assert (mp.id, mp.enabled) == (pool.id, False)
    assert mp.members[0].id == member.id and mp.members[0].enabled is False
    assert mp.health_monitor is not None and mp.health_monitor.id == monitor.id
    assert mp.health_monitor.enabled is False
    (ml,) = got.listeners
    assert (ml.id, ml.enabled, ml.default_pool_id) == (listener.id, False, pool.id)
    (mpol,) = ml.l7policies
    assert (mpol.id, mpol.enabled) == (policy.id, False)
    assert (mpol.rules[0].id, mpol.rules[0].enabled) == (rule.id, False)


def test_peers_need_every_vrrp_address(engine: Engine) -> None:
    lb = new_lb(topology="ACTIVE_STANDBY")
    first, second = ids(2)
    new_amphora(lb, c.ROLE_BACKUP, "198.18.0.6", id=second)
    new_amphora(lb, c.ROLE_MASTER, "198.18.0.5", id=first)
    new_amphora(lb, c.ROLE_MASTER, "198.18.0.7", status=c.PENDING_DELETE)
    new_amphora(lb, c.ROLE_BACKUP, "198.18.0.8", status=c.DELETED)
    new_amphora(lb, None, "198.18.0.9")  # no role: not (yet) part of the pair
    new_amphora(new_lb(), c.ROLE_MASTER, "198.18.0.4")  # another load balancer's
    lb_id = save(engine, lb)
    assert read(engine, lb_id).peers == (model.Peer(peer_name(first), "198.18.0.5"),
                                         model.Peer(peer_name(second), "198.18.0.6"))
    new_amphora(lb, c.ROLE_BACKUP, None, status=c.AMPHORA_BOOTING)  # a crashed boot's row
    assert len(read(engine, lb_id).peers) == 2
    assert read(engine, lb_id, exclude=(second,)).peers == (  # being replaced
        model.Peer(peer_name(first), "198.18.0.5"),)
    late = new_amphora(lb, c.ROLE_BACKUP, None)  # booted, not plugged yet
    save(engine, late.load_balancer)
    assert read(engine, lb_id).peers == ()


def _selects(engine: Engine, lb_id: str) -> int:
    """SELECT statements sent while reading ``lb_id`` (SQLite's BEGIN is not one)."""
    count = 0

    def counter(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal count
        count += statement.lstrip().upper().startswith("SELECT")

    event.listen(engine, "before_cursor_execute", counter)
    try:
        read(engine, lb_id)
    finally:
        event.remove(engine, "before_cursor_execute", counter)
    return count


def test_queries_do_not_grow_with_the_tree(engine: Engine) -> None:
    def tree(size: int) -> m.LoadBalancer:
        lb = new_lb()
        for i in range(size):
            pool = new_pool(lb)
            new_monitor(pool)
            pool.session_persistence = m.SessionPersistence(type="SOURCE_IP")
            for j in range(size):
                new_member(pool, f"198.18.4.{10 * i + j + 1}")
            listener = new_listener(lb, protocol_port=80 + i, default_pool=pool)
            listener.allowed_cidrs = [m.ListenerCidr(cidr=f"198.18.{i}.0/24")]
            for j in range(size):
                new_rule(new_policy(listener, j + 1))
            new_amphora(lb, c.ROLE_MASTER if i == 0 else None, f"198.18.0.{i + 5}")
        return lb

    small = _selects(engine, save(engine, tree(1)))
    large = _selects(engine, save(engine, tree(6)))
    assert small == large, (small, large)
    # One per table read: load balancer with its VIP, additional VIPs, listeners, CIDRs,
    # L7 policies, rules, pools, members, monitors, session persistence, pool tags
    # (draining and slow start), amphorae.
    assert large <= 12, large


def test_pool_tags_tune_draining_and_slow_start(engine: Engine) -> None:
    lb = new_lb()
    tuned = new_pool(lb)
    tuned.tags = ["amphorae:drain_timeout=30", "amphorae:slow_start=10", "mine"]
    # Stored before the API checked tags: the defaults, not a failed reconcile.
    bad = new_pool(lb)
    bad.tags = ["amphorae:slow_start=soon"]
    plain = new_pool(lb)
    lb_id = save(engine, lb)
    pools = {pool.id: pool for pool in read(engine, lb_id).pools}
    assert (pools[tuned.id].drain_timeout, pools[tuned.id].slow_start) == (30, 10)
    assert (pools[bad.id].drain_timeout, pools[bad.id].slow_start) == (None, None)
    assert (pools[plain.id].drain_timeout, pools[plain.id].slow_start) == (None, None)


@contextlib.contextmanager
def amphora_folder() -> Iterator[pathlib.Path]:
    """An amphora's state folder for rendered files, removed on exit."""
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed: the rendered model is checked with "
                    "`haproxy -c` (apt-get install haproxy)")
    path = pathlib.Path(tempfile.mkdtemp(prefix="amph-desired-haproxy-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def install_certificates(paths: AmphoraPaths, lb: model.LoadBalancer) -> None:
    """Test certificates under the names the model gives them, as the uploader will."""
    cert_dir = pathlib.Path(paths.cert_dir)
    cert_dir.mkdir(parents=True)
    _write_certificates(cert_dir)
    sources: dict[str, str] = {}
    for listener in lb.listeners:
        if listener.tls:
            files = desired.listener_cert_files(listener.id)
            sources |= {files.crt_list: "listener.crtlist", files.client_ca: "ca.pem",
                        files.client_crl: "crl.pem"}
    for pool in lb.pools:
        if pool.tls:
            files = desired.pool_cert_files(pool.id)
            sources |= {files.client_cert: "client.pem", files.ca: "ca.pem",
                        files.crl: "crl.pem"}
    for name, source in sources.items():
        shutil.copyfile(cert_dir / source, cert_dir / name)


def amphora_paths(folder: pathlib.Path, lb_id: str) -> AmphoraPaths:
    return AmphoraPaths.for_lb(str(folder), lb_id, log_socket=str(folder / "log.sock"))


def render_checked(lb: model.LoadBalancer, folder: pathlib.Path) -> str:
    """``lb``'s haproxy.cfg for an amphora with its files in ``folder`` (test certificates
    under the model's names, a server-state file), accepted by `haproxy -c`."""
    paths = amphora_paths(folder, lb.id)
    install_certificates(paths, lb)
    # A state file with only its version line: HAProxy warns about a missing one.
    pathlib.Path(paths.server_state_file or "").write_text("1\n")
    text = haproxy.render(lb, HaproxySettings(), paths)
    haproxy_check(folder, text, lb)
    return text


def test_rendered_model_passes_haproxy_check(engine: Engine) -> None:
    tree = full_tree()
    lb = read(engine, save(engine, tree.lb))
    with amphora_folder() as folder:
        text = render_checked(lb, folder)
    cert_dir = pathlib.Path(amphora_paths(folder, lb.id).cert_dir)
    https, tcp = tree.listeners["https"].id, tree.listeners["tcp"].id
    assert f"crt-list {cert_dir / (https + '.pem')} ca-file" in text
    assert f"crt {cert_dir / (tree.pools['web'].id + '-client.pem')}" in text
    assert f"peer {peer_name(tree.amphorae[1].id)} 198.18.0.5:1025" in text
    # The renderer leaves a disabled listener out and keeps a disabled member, marked.
    assert f"frontend {https}\n" in text and tcp not in text
    api_member = tree.members["api1"].id
    assert any(line.split()[:2] == ["server", api_member] and line.endswith("disabled")
               for line in text.splitlines())
