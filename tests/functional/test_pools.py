"""Pools through the HTTP API, openstacksdk and the openstack CLI."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from amphorae.common import config
from amphorae.db import models as m
from tests import servers
from tests.servers import OTHER_PROJECT, PROJECT

P = "/v2/lbaas/pools"
L = "/v2/lbaas/listeners"
POOL_KEYS = {
    "id", "name", "description", "provisioning_status", "operating_status", "admin_state_up",
    "protocol", "lb_algorithm", "session_persistence", "project_id", "tenant_id",
    "loadbalancers", "listeners", "created_at", "updated_at", "members", "tags",
    "tls_container_ref", "ca_tls_container_ref", "crl_container_ref", "tls_enabled",
    "tls_ciphers", "tls_versions", "alpn_protocols",
}
MISSING = "7c6a0ef7-4bb2-4bde-b7a6-3a1e2f1a0c11"


def create(api: servers.Client, expect: int = 201, settle: str | None = None,
           **fields: Any) -> Any:
    body = {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", **fields}
    status, out = api.post(P, {"pool": body})
    assert status == expect, out
    if expect != 201:
        return out["faultstring"]
    if settle:
        api.settle(settle)
    return out["pool"]


def listener(api: servers.Client, lb_id: str, protocol: str = "HTTP", port: int = 80) -> str:
    status, out = api.post(L, {"listener": {"loadbalancer_id": lb_id, "protocol": protocol,
                                            "protocol_port": port}})
    assert status == 201, out
    api.settle(lb_id)
    return out["listener"]["id"]


def db_session(api: servers.Client) -> Session:
    from tests.settle import _engine

    return Session(_engine(api.server.db_url))


def add_policy(api: servers.Client, listener_id: str, pool_id: str, *, enabled: bool = True,
               rules: int = 1) -> str:
    """An L7 policy redirecting to the pool, written straight to the database."""
    policy_id = m.new_id()
    with db_session(api) as s, s.begin():
        s.add(m.L7Policy(id=policy_id, project_id=PROJECT, listener_id=listener_id,
                         action="REDIRECT_TO_POOL", redirect_pool_id=pool_id, position=1,
                         enabled=enabled, provisioning_status="ACTIVE",
                         operating_status="ONLINE"))
        for _ in range(rules):
            s.add(m.L7Rule(id=m.new_id(), project_id=PROJECT, l7policy_id=policy_id,
                           type="PATH", compare_type="STARTS_WITH", value="/api",
                           provisioning_status="ACTIVE", operating_status="ONLINE"))
    return policy_id


# --- create ------------------------------------------------------------------------------


def test_create_on_listener_matches_octavia_shape(api):
    lb = api.create_lb()
    lid = listener(api, lb["id"])
    status, body = api.post(P, {"pool": {"name": "sample-p", "protocol": "HTTP",
                                         "lb_algorithm": "ROUND_ROBIN", "listener_id": lid}})
    assert status == 201, body
    pool = body["pool"]
    # Octavia leaves healthmonitor_id out while the pool has no monitor.
    assert set(pool) == POOL_KEYS
    assert (pool["provisioning_status"], pool["operating_status"]) == (
        "PENDING_CREATE", "OFFLINE")
    assert pool["project_id"] == pool["tenant_id"] == PROJECT
    assert pool["loadbalancers"] == [{"id": lb["id"]}]
    assert pool["listeners"] == [{"id": lid}]
    assert pool["members"] == [] and pool["tags"] == [] and pool["description"] == ""
    assert pool["session_persistence"] is None and pool["tls_enabled"] is False
    assert pool["tls_ciphers"] is pool["tls_versions"] is pool["alpn_protocols"] is None
    _, ln = api.get(f"{L}/{lid}")
    assert ln["listener"]["default_pool_id"] == pool["id"]
    assert ln["listener"]["provisioning_status"] == "PENDING_UPDATE"
    _, lb_now = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert lb_now["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
    assert lb_now["loadbalancer"]["pools"] == [{"id": pool["id"]}]
    assert "immutable" in create(api, 409, loadbalancer_id=lb["id"])
    api.settle(lb["id"])
    _, shown = api.get(f"{P}/{pool['id']}")
    assert shown["pool"]["provisioning_status"] == "ACTIVE"
    assert api.get(f"{L}/{lid}")[1]["listener"]["provisioning_status"] == "ACTIVE"


def test_create_on_load_balancer_and_parent_rules(api):
    lb = api.create_lb()
    pool = create(api, settle=lb["id"], loadbalancer_id=lb["id"], protocol="TCP",
                  lb_algorithm="LEAST_CONNECTIONS", name="p", description="d",
                  admin_state_up=False, tags=["a", "b"])
    assert pool["listeners"] == [] and pool["admin_state_up"] is False
    assert (pool["protocol"], pool["lb_algorithm"], pool["tags"]) == (
        "TCP", "LEAST_CONNECTIONS", ["a", "b"])
    assert create(api, 400) == (
        "Validation failure: Must provide at least one of: loadbalancer_id, listener_id")
    assert create(api, 404, loadbalancer_id=MISSING) == f"Load Balancer {MISSING} not found."
    assert create(api, 404, listener_id=MISSING) == f"Listener {MISSING} not found."
    lid = listener(api, lb["id"])
    other = api.create_lb()
    assert "is not on load balancer" in create(api, 400, listener_id=lid,
                                               loadbalancer_id=other["id"])
    first = create(api, settle=lb["id"], listener_id=lid, loadbalancer_id=lb["id"])
    assert first["listeners"] == [{"id": lid}]
    assert create(api, 409, listener_id=lid) == "This listener already has a default pool"
    # What is wrong with the pool itself comes first: a 400 with the reason, not the 409.
    assert create(api, 400, listener_id=lid, protocol="UDP") == (
        "Validation failure: The pool protocol 'UDP' is invalid while the listener protocol "
        "is 'HTTP'.")
    assert create(api, 400, listener_id=lid, lb_algorithm="WEIGHTED") == (
        "Invalid input for field/attribute lb_algorithm. Value: 'WEIGHTED'. Value should be "
        "one of: ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP, SOURCE_IP_PORT")
    assert "APP_COOKIE" in create(api, 400, listener_id=lid,
                                  session_persistence={"type": "APP_COOKIE"})
    assert "no file amph-none.crt" in create(api, 400, listener_id=lid,
                                             tls_container_ref="amph-none")
    # Protocol pairs (reference 2.1).
    tcp = listener(api, lb["id"], "TCP", 81)
    assert create(api, 400, listener_id=tcp, protocol="UDP") == (
        "Validation failure: The pool protocol 'UDP' is invalid while the listener protocol "
        "is 'TCP'.")
    for i, protocol in enumerate(("PROXY", "PROXYV2", "HTTPS", "HTTP")):
        ln = listener(api, lb["id"], "TCP", 1000 + i)
        create(api, settle=lb["id"], listener_id=ln, protocol=protocol)
    udp = listener(api, lb["id"], "UDP", 81)
    assert "'HTTP' is invalid while the listener protocol is 'UDP'" in create(
        api, 400, listener_id=udp)
    assert create(api, settle=lb["id"], listener_id=udp, protocol="UDP",
                  lb_algorithm="SOURCE_IP")["listeners"] == [{"id": udp}]
    prom = listener(api, lb["id"], "PROMETHEUS", 9100)
    assert create(api, 400, listener_id=prom) == (
        "Protocol PROMETHEUS listeners cannot have child objects.")


def test_create_bad_input_names_the_field(api):
    lb = api.create_lb()
    cases = [
        ({"protocol": "FTP"}, "protocol"),
        ({"protocol": "TERMINATED_HTTPS"}, "protocol"),
        ({"lb_algorithm": "RANDOM"}, "lb_algorithm"),
        ({"lb_algorithm": None}, "lb_algorithm"),
        ({"loadbalancer_id": "abc"}, "loadbalancer_id"),
        ({"listener_id": 5}, "listener_id"),
        ({"name": "n" * 256}, "name"),
        ({"admin_state_up": "no"}, "admin_state_up"),
        ({"tls_enabled": "yes"}, "tls_enabled"),
        ({"tls_container_ref": "r" * 256}, "tls_container_ref"),
        ({"tls_versions": ["SSLv2"]}, "tls_versions"),
        ({"alpn_protocols": "h2"}, "alpn_protocols"),
        ({"tls_ciphers": "AES 128"}, "tls_ciphers"),
        ({"session_persistence": "SOURCE_IP"}, "session_persistence"),
        ({"session_persistence": {}}, "session_persistence.type"),
        ({"session_persistence": {"type": "STICKY"}}, "session_persistence.type"),
        ({"session_persistence": {"type": "APP_COOKIE", "cookie_name": "a b"}},
         "session_persistence.cookie_name"),
        ({"session_persistence": {"type": "APP_COOKIE", "cookie_name": "c" * 256}},
         "session_persistence.cookie_name"),
        ({"session_persistence": {"type": "SOURCE_IP", "bogus": 1}}, "bogus"),
        ({"session_persistence": {"type": "SOURCE_IP", "persistence_timeout": -1}},
         "session_persistence.persistence_timeout"),
        ({"session_persistence": {"type": "SOURCE_IP", "persistence_granularity": "ff"}},
         "session_persistence.persistence_granularity"),
        ({"healthmonitor": {"type": "PING"}}, "healthmonitor"),
        ({"members": []}, "members"),
        ({"tags": [1]}, "tags"),
    ]
    for fields, name in cases:
        message = create(api, 400, **{"loadbalancer_id": lb["id"], **fields})
        assert name in message, (fields, message)
    status, err = api.post(P, {"pool": {"loadbalancer_id": lb["id"], "protocol": "HTTP"}})
    assert status == 400 and err["faultstring"] == (
        "Invalid input for field/attribute lb_algorithm. Value: 'None'. "
        "Mandatory field missing.")
    assert create(api, 400, loadbalancer_id=lb["id"], protocol="SCTP") == (
        "Invalid input for field/attribute protocol. Value: 'SCTP'. "
        "SCTP is not supported by this deployment.")


def test_source_ip_port_is_accepted_by_the_amphora_provider(api):
    # Octavia's amphora driver answers 501 here; ours balances on client address and port.
    for provider in ("amphora", "octavia"):
        lb = api.create_lb(provider=provider)
        for protocol in ("HTTP", "HTTPS", "TCP", "PROXY", "PROXYV2", "UDP"):
            pool = create(api, settle=lb["id"], loadbalancer_id=lb["id"], protocol=protocol,
                          lb_algorithm="SOURCE_IP_PORT")
            assert pool["lb_algorithm"] == "SOURCE_IP_PORT", (provider, protocol)
        pool = create(api, settle=lb["id"], loadbalancer_id=lb["id"])
        status, body = api.put(f"{P}/{pool['id']}",
                               {"pool": {"lb_algorithm": "SOURCE_IP_PORT"}})
        assert status == 200 and body["pool"]["lb_algorithm"] == "SOURCE_IP_PORT", body
        api.settle(lb["id"])
        assert api.get(f"{P}/{pool['id']}")[1]["pool"]["lb_algorithm"] == "SOURCE_IP_PORT"
    # SCTP stays refused for its protocol, whatever the algorithm.
    assert create(api, 400, loadbalancer_id=lb["id"], protocol="SCTP",
                  lb_algorithm="SOURCE_IP_PORT") == (
        "Invalid input for field/attribute protocol. Value: 'SCTP'. "
        "SCTP is not supported by this deployment.")


def test_session_persistence_rules(api):
    lb = api.create_lb()
    base = {"loadbalancer_id": lb["id"]}
    pool = create(api, settle=lb["id"], **base, session_persistence={
        "type": "APP_COOKIE", "cookie_name": "JSESSIONID"})
    assert pool["session_persistence"] == {"type": "APP_COOKIE", "cookie_name": "JSESSIONID",
                                           "persistence_timeout": None,
                                           "persistence_granularity": None}
    pool = create(api, settle=lb["id"], **base, session_persistence={"type": "HTTP_COOKIE"})
    assert pool["session_persistence"]["type"] == "HTTP_COOKIE"
    udp = create(api, settle=lb["id"], **base, protocol="UDP", session_persistence={
        "type": "SOURCE_IP", "persistence_timeout": "60",
        "persistence_granularity": "255.255.255.0"})
    assert udp["session_persistence"] == {"type": "SOURCE_IP", "cookie_name": None,
                                          "persistence_timeout": 60,
                                          "persistence_granularity": "255.255.255.0"}
    rules = [
        ({"type": "HTTP_COOKIE", "cookie_name": "c"}, "HTTP",
         'Validation failure: Field "cookie_name" can only be specified with session '
         'persistence of type "APP_COOKIE".'),
        ({"type": "APP_COOKIE"}, "HTTP",
         'Validation failure: Field "cookie_name" must be specified when using the '
         '"APP_COOKIE" session persistence type.'),
        ({"type": "APP_COOKIE", "cookie_name": "a=b"}, "HTTP",
         'Validation failure: Supplied "cookie_name" is invalid.'),
        ({"type": "APP_COOKIE", "cookie_name": "a(b)"}, "TCP",
         'Validation failure: Supplied "cookie_name" is invalid.'),
        ({"type": "SOURCE_IP", "persistence_timeout": 5}, "HTTP",
         "Validation failure: persistence_timeout and persistence_granularity is only for "
         "UDP protocol pools."),
        ({"type": "SOURCE_IP", "persistence_granularity": "255.0.0.0"}, "TCP",
         "Validation failure: persistence_timeout and persistence_granularity is only for "
         "UDP protocol pools."),
        ({"type": "HTTP_COOKIE"}, "UDP",
         "Validation failure: Session persistence of type HTTP_COOKIE is not supported for "
         "UDP protocol pools."),
        ({"type": "APP_COOKIE", "cookie_name": "x"}, "UDP",
         "Validation failure: Session persistence of type APP_COOKIE is not supported for "
         "UDP protocol pools."),
        ({"type": "SOURCE_IP", "cookie_name": "x"}, "UDP",
         "Validation failure: Cookie names are not supported for UDP pools."),
    ]
    for sp, protocol, message in rules:
        assert create(api, 400, **base, protocol=protocol, session_persistence=sp) == message


def test_tls_fields(api):
    lb = api.create_lb()
    pool = create(api, settle=lb["id"], loadbalancer_id=lb["id"], tls_enabled=True,
                  tls_container_ref="client-cert", ca_tls_container_ref="ca",
                  crl_container_ref="crl")
    assert pool["tls_enabled"] is True
    assert pool["tls_ciphers"] == config.DEFAULT_CIPHERS
    assert pool["tls_versions"] == ["TLSv1.2", "TLSv1.3"]
    assert pool["alpn_protocols"] == ["h2", "http/1.1", "http/1.0"]
    assert (pool["tls_container_ref"], pool["ca_tls_container_ref"],
            pool["crl_container_ref"]) == ("client-cert", "ca", "crl")
    given = create(api, settle=lb["id"], loadbalancer_id=lb["id"], tls_enabled=True,
                   tls_versions=["TLSv1.3"], alpn_protocols=["h2"], tls_ciphers="AES128-SHA")
    assert (given["tls_versions"], given["alpn_protocols"], given["tls_ciphers"]) == (
        ["TLSv1.3"], ["h2"], "AES128-SHA")
    assert create(api, 400, loadbalancer_id=lb["id"], crl_container_ref="crl") == (
        "Validation failure: A CA certificate reference is required to specify a "
        "revocation list.")
    assert "Empty TLS version list" in create(api, 400, loadbalancer_id=lb["id"],
                                              tls_enabled=True, tls_versions=[])
    assert "Empty ALPN protocol list" in create(api, 400, loadbalancer_id=lb["id"],
                                                alpn_protocols=[])
    url = f"{P}/{pool['id']}"
    status, body = api.put(url, {"pool": {"ca_tls_container_ref": None}})
    assert (status, body["faultstring"]) == (400, (
        "Validation failure: A CA reference cannot be removed when a certificate "
        "revocation list is present."))
    status, body = api.put(url, {"pool": {"ca_tls_container_ref": None,
                                          "crl_container_ref": None, "tls_versions": None,
                                          "tls_ciphers": "AES256-SHA"}})
    assert status == 200, body
    out = body["pool"]
    assert out["ca_tls_container_ref"] is None and out["crl_container_ref"] is None
    assert out["tls_versions"] == ["TLSv1.2", "TLSv1.3"] and out["tls_ciphers"] == "AES256-SHA"
    api.settle(lb["id"])
    status, body = api.put(url, {"pool": {"crl_container_ref": "crl2"}})
    assert (status, body["faultstring"]) == (400, (
        "Validation failure: A CA reference is required to specify a certificate "
        "revocation list."))
    plain = create(api, settle=lb["id"], loadbalancer_id=lb["id"])
    status, body = api.put(f"{P}/{plain['id']}", {"pool": {"tls_enabled": True}})
    assert status == 200 and body["pool"]["tls_ciphers"] == config.DEFAULT_CIPHERS


# --- update / delete ---------------------------------------------------------------------


def test_drain_and_slow_start_tags(api):
    """Draining and slow start ride on pool tags; a bad one is a 400 naming the tag."""
    lb = api.create_lb()
    bad = {
        "amphorae:drain_timeout=-1": "expected amphorae:drain_timeout=<whole seconds>",
        "amphorae:drain_timeout": "expected amphorae:drain_timeout=<whole seconds>",
        "amphorae:slow_start=1.5": "expected amphorae:slow_start=<whole seconds>",
        "amphorae:slow_start=3601": "at most 3600 seconds",
        "amphorae:slowstart=5": "unknown setting; known: amphorae:drain_timeout, "
                                "amphorae:slow_start",
    }
    for tag, reason in bad.items():
        assert create(api, 400, loadbalancer_id=lb["id"], tags=[tag]) == (
            f"Invalid input for field/attribute tags. Value: '{tag}'. {reason}")
    twice = ["amphorae:slow_start=5", "amphorae:slow_start=6"]
    assert "given twice" in create(api, 400, loadbalancer_id=lb["id"], tags=twice)
    tags = ["amphorae:drain_timeout=30", "amphorae:slow_start=10", "mine"]
    pool = create(api, settle=lb["id"], loadbalancer_id=lb["id"], tags=tags)
    assert sorted(pool["tags"]) == tags
    url = f"{P}/{pool['id']}"
    status, body = api.put(url, {"pool": {"tags": ["amphorae:drain_timeout=x"]}})
    assert status == 400 and "amphorae:drain_timeout=x" in body["faultstring"], body
    assert sorted(api.get(url)[1]["pool"]["tags"]) == tags
    status, body = api.put(url, {"pool": {"tags": ["amphorae:drain_timeout=0"]}})
    assert status == 200 and body["pool"]["tags"] == ["amphorae:drain_timeout=0"], body


def test_update(api):
    lb = api.create_lb()
    lid = listener(api, lb["id"])
    pool = create(api, settle=lb["id"], listener_id=lid, name="a", tags=["x"],
                  session_persistence={"type": "APP_COOKIE", "cookie_name": "c1"})
    url = f"{P}/{pool['id']}"
    status, body = api.put(url, {"pool": {"name": "b", "lb_algorithm": "SOURCE_IP",
                                          "admin_state_up": False, "description": "d",
                                          "session_persistence": {"cookie_name": "c2"}}})
    assert status == 200, body
    out = body["pool"]
    assert set(out) == POOL_KEYS
    assert (out["name"], out["lb_algorithm"], out["admin_state_up"], out["description"]) == (
        "b", "SOURCE_IP", False, "d")
    # A persistence without a type keeps the current type.
    assert out["session_persistence"]["type"] == "APP_COOKIE"
    assert out["session_persistence"]["cookie_name"] == "c2"
    assert out["provisioning_status"] == "PENDING_UPDATE"
    assert api.get(f"{L}/{lid}")[1]["listener"]["provisioning_status"] == "PENDING_UPDATE"
    assert api.put(url, {"pool": {"name": "c"}})[0] == 409
    api.settle(lb["id"])
    status, body = api.put(url, {"pool": {"session_persistence": {"type": "SOURCE_IP"}}})
    assert body["pool"]["session_persistence"] == {
        "type": "SOURCE_IP", "cookie_name": None, "persistence_timeout": None,
        "persistence_granularity": None}
    api.settle(lb["id"])
    status, body = api.put(url, {"pool": {"session_persistence": {"cookie_name": "z"}}})
    assert status == 400 and "cookie_name" in body["faultstring"]
    status, body = api.put(url, {"pool": {"session_persistence": None, "name": None,
                                          "tags": None, "description": None}})
    assert status == 200
    assert body["pool"]["session_persistence"] is None
    assert (body["pool"]["name"], body["pool"]["tags"], body["pool"]["description"]) == (
        "", [], "")
    api.settle(lb["id"])
    status, body = api.put(url, {"pool": {"session_persistence": {"cookie_name": "z"}}})
    assert status == 400 and "session_persistence.type" in body["faultstring"]
    status, body = api.put(url, {"pool": {"session_persistence": {"type": "HTTP_COOKIE"}}})
    assert status == 200 and body["pool"]["session_persistence"]["type"] == "HTTP_COOKIE"
    api.settle(lb["id"])
    for fields, name in (({"protocol": "TCP"}, "protocol"),
                         ({"listener_id": lid}, "listener_id"),
                         ({"loadbalancer_id": lb["id"]}, "loadbalancer_id"),
                         ({"lb_algorithm": None}, "lb_algorithm"),
                         ({"lb_algorithm": "RANDOM"}, "lb_algorithm"),
                         ({"tls_enabled": 1}, "tls_enabled")):
        status, body = api.put(url, {"pool": fields})
        assert status == 400 and name in body["faultstring"], (fields, body)
    status, body = api.put(f"{P}/{MISSING}", {"pool": {"name": "x"}})
    assert (status, body["faultstring"]) == (404, f"Pool {MISSING} not found.")


def test_udp_session_persistence_update(api):
    lb = api.create_lb()
    pool = create(api, settle=lb["id"], loadbalancer_id=lb["id"], protocol="UDP",
                  session_persistence={"type": "SOURCE_IP", "persistence_timeout": 30})
    url = f"{P}/{pool['id']}"
    status, body = api.put(url, {"pool": {"session_persistence": {
        "persistence_granularity": "255.255.0.0"}}})
    assert status == 200, body
    assert body["pool"]["session_persistence"] == {
        "type": "SOURCE_IP", "cookie_name": None, "persistence_timeout": 30,
        "persistence_granularity": "255.255.0.0"}
    api.settle(lb["id"])
    status, body = api.put(url, {"pool": {"session_persistence": {"type": "HTTP_COOKIE"}}})
    assert status == 400 and "not supported for UDP" in body["faultstring"]


def test_delete(api):
    lb = api.create_lb()
    lid = listener(api, lb["id"])
    pool = create(api, settle=lb["id"], listener_id=lid)
    status, body = api.delete(f"{P}/{pool['id']}")
    assert (status, body) == (204, None)
    assert api.get(f"{P}/{pool['id']}")[1]["pool"]["provisioning_status"] == "PENDING_DELETE"
    assert api.get(f"{L}/{lid}")[1]["listener"]["provisioning_status"] == "PENDING_UPDATE"
    assert api.delete(f"{P}/{pool['id']}")[0] == 409
    api.settle(lb["id"])
    assert api.get(f"{P}/{pool['id']}")[0] == 404
    assert api.get(f"{L}/{lid}")[1]["listener"]["default_pool_id"] is None
    assert api.delete(f"{P}/{MISSING}") == (404, {
        "faultcode": "Client", "faultstring": f"Pool {MISSING} not found.",
        "debuginfo": None})


def test_l7_redirects_count_as_listeners_and_block_delete(api):
    lb = api.create_lb()
    first = listener(api, lb["id"], port=80)
    second = listener(api, lb["id"], port=81)
    third = listener(api, lb["id"], port=82)
    pool = create(api, settle=lb["id"], loadbalancer_id=lb["id"])
    policy = add_policy(api, first, pool["id"])
    add_policy(api, second, pool["id"], rules=0)
    add_policy(api, third, pool["id"], enabled=False)
    _, shown = api.get(f"{P}/{pool['id']}")
    assert shown["pool"]["listeners"] == [{"id": first}]
    _, listed = api.get(P, id=pool["id"])
    assert listed["pools"][0]["listeners"] == [{"id": first}]
    status, body = api.delete(f"{P}/{pool['id']}")
    assert status == 409
    assert body["faultstring"].startswith(f"Pool {pool['id']} is in use by L7 policy ")
    with db_session(api) as s, s.begin():
        for row in s.query(m.L7Policy).filter_by(redirect_pool_id=pool["id"]):
            if row.id != policy:
                s.delete(row)
    assert api.delete(f"{P}/{pool['id']}")[1]["faultstring"] == (
        f"Pool {pool['id']} is in use by L7 policy {policy}")
    # An update marks the listener reaching it through the policy.
    status, _ = api.put(f"{P}/{pool['id']}", {"pool": {"name": "x"}})
    assert status == 200
    assert api.get(f"{L}/{first}")[1]["listener"]["provisioning_status"] == "PENDING_UPDATE"
    assert api.get(f"{L}/{second}")[1]["listener"]["provisioning_status"] == "ACTIVE"


# --- list --------------------------------------------------------------------------------


def test_list_paging_sorting_filters_fields_tags(api):
    lb = api.create_lb()
    made = [create(api, settle=lb["id"], loadbalancer_id=lb["id"], name=f"pl-{i}",
                   protocol="TCP" if i % 2 else "HTTP",
                   lb_algorithm="SOURCE_IP" if i == 4 else "ROUND_ROBIN",
                   tags=["even" if i % 2 == 0 else "odd"]) for i in range(5)]
    ids = [x["id"] for x in made]
    hm_id = m.new_id()
    with db_session(api) as s, s.begin():
        s.add(m.HealthMonitor(id=hm_id, project_id=PROJECT, pool_id=ids[3], type="TCP",
                              delay=5, timeout=3, fall_threshold=3, rise_threshold=3,
                              provisioning_status="ACTIVE", operating_status="ONLINE"))
        s.add(m.Member(id=m.new_id(), project_id=PROJECT, pool_id=ids[3],
                       ip_address="192.0.2.10", protocol_port=80,
                       provisioning_status="ACTIVE", operating_status="ONLINE"))
    _, shown = api.get(f"{P}/{ids[3]}")
    assert shown["pool"]["healthmonitor_id"] == hm_id
    assert set(shown["pool"]) == POOL_KEYS | {"healthmonitor_id"}
    assert len(shown["pool"]["members"]) == 1
    _, page1 = api.get(P, loadbalancer_id=lb["id"], limit=2)
    assert [x["id"] for x in page1["pools"]] == ids[:2]
    assert [x["rel"] for x in page1["pools_links"]] == ["next"]
    _, page3 = api.get(P, loadbalancer_id=lb["id"], limit=2, marker=ids[3])
    assert [x["id"] for x in page3["pools"]] == ids[4:]
    assert [x["rel"] for x in page3["pools_links"]] == ["previous"]
    _, rev = api.get(P, loadbalancer_id=lb["id"], sort="name:desc")
    assert [x["id"] for x in rev["pools"]] == ids[::-1]
    _, tcp = api.get(P, loadbalancer_id=lb["id"], protocol="TCP")
    assert [x["id"] for x in tcp["pools"]] == [ids[1], ids[3]]
    _, algo = api.get(P, load_balancer_id=lb["id"], lb_algorithm="SOURCE_IP")
    assert [x["id"] for x in algo["pools"]] == [ids[4]]
    _, by_hm = api.get(P, healthmonitor_id=hm_id)
    assert [x["id"] for x in by_hm["pools"]] == [ids[3]]
    _, by_hm_sort = api.get(P, loadbalancer_id=lb["id"], sort="healthmonitor_id:desc")
    assert by_hm_sort["pools"][0]["id"] == ids[3] and len(by_hm_sort["pools"]) == 5
    _, after = api.get(P, loadbalancer_id=lb["id"], sort="healthmonitor_id:desc", limit=2,
                       marker=ids[3])
    assert [x["id"] for x in after["pools"]] == [x["id"] for x in by_hm_sort["pools"][1:3]]
    _, odd = api.get(P, loadbalancer_id=lb["id"], **{"tags-any": "odd,none"})
    assert [x["id"] for x in odd["pools"]] == [ids[1], ids[3]]
    _, none_even = api.get(P, loadbalancer_id=lb["id"], **{"not-tags-any": "even"})
    assert [x["id"] for x in none_even["pools"]] == [ids[1], ids[3]]
    _, fields = api.call("GET", P + f"?loadbalancer_id={lb['id']}&fields=id&fields=name")
    assert all(set(x) == {"id", "name"} for x in fields["pools"])
    _, theirs = api.get(P, loadbalancer_id=lb["id"], project_id=OTHER_PROJECT)
    assert theirs["pools"] == []
    # openstacksdk's listener_id / health_monitor_id are not pool attributes in Octavia.
    assert api.get(P, listener_id=ids[0])[0] == 400
    assert api.get(P, health_monitor_id=hm_id)[0] == 400


# --- clients -----------------------------------------------------------------------------


def test_sdk_create_show_list_update_delete(sdk, api):
    lb = api.create_lb()
    lid = listener(api, lb["id"])
    pool = sdk.create_pool(listener_id=lid, protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                           name="sdk-p", session_persistence={"type": "SOURCE_IP"},
                           tags=["blue"])
    assert pool.provisioning_status == "PENDING_CREATE"
    assert pool.listeners == [{"id": lid}]
    api.settle(lb["id"])
    got = sdk.get_pool(pool.id)
    assert (got.name, got.lb_algorithm, got.session_persistence["type"]) == (
        "sdk-p", "ROUND_ROBIN", "SOURCE_IP")
    assert pool.id in {x.id for x in sdk.pools(loadbalancer_id=lb["id"], tags="blue")}
    assert sdk.find_pool("sdk-p").id == pool.id
    sdk.update_pool(pool.id, lb_algorithm="LEAST_CONNECTIONS", name="sdk-p2")
    api.settle(lb["id"])
    got = sdk.get_pool(pool.id)
    assert (got.name, got.lb_algorithm) == ("sdk-p2", "LEAST_CONNECTIONS")
    sdk.delete_pool(pool.id)
    api.settle(lb["id"])
    assert sdk.find_pool(pool.id) is None


def test_cli_create_show_list_set_unset_delete(cli, api):
    lb = api.create_lb(name="cli-pool-lb")
    lid = listener(api, lb["id"])
    pool = cli("loadbalancer", "pool", "create", "--name", "cli-p", "--protocol", "HTTP",
               "--lb-algorithm", "ROUND_ROBIN", "--listener", lid, "--session-persistence",
               "type=APP_COOKIE,cookie_name=sid", "--description", "d", "--tag", "a")
    assert pool["name"] == "cli-p" and pool["provisioning_status"] == "PENDING_CREATE"
    api.settle(lb["id"])
    cli.run("loadbalancer", "pool", "set", "--name", "cli-p2", "--lb-algorithm",
            "SOURCE_IP", "--enable-tls", pool["id"])
    shown = cli("loadbalancer", "pool", "show", "cli-p2")
    assert shown["lb_algorithm"] == "SOURCE_IP" and shown["tls_enabled"] is True
    assert shown["provisioning_status"] == "PENDING_UPDATE"
    api.settle(lb["id"])
    cli.run("loadbalancer", "pool", "unset", "--session-persistence", "--description",
            "--tls-versions", pool["id"])
    shown = cli("loadbalancer", "pool", "show", pool["id"])
    assert not shown["session_persistence"] and shown["description"] == ""
    api.settle(lb["id"])
    cli.run("loadbalancer", "pool", "create", "--name", "cli-p3", "--protocol", "TCP",
            "--lb-algorithm", "ROUND_ROBIN", "--loadbalancer", "cli-pool-lb")
    api.settle(lb["id"])
    listed = cli("loadbalancer", "pool", "list", "--loadbalancer", lb["id"])
    assert sorted(x["name"] for x in listed) == ["cli-p2", "cli-p3"]
    cli.run("loadbalancer", "pool", "delete", pool["id"])
    api.settle(lb["id"])
    assert cli.run("loadbalancer", "pool", "show", pool["id"], check=False).returncode != 0
