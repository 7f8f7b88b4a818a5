"""Listeners through the HTTP API, openstacksdk and the openstack CLI."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.common import config
from amphorae.db import models as m
from amphorae.drivers.network.local import stable_id
from tests import servers
from tests.servers import OTHER_PROJECT, PROJECT

L = "/v2/lbaas/listeners"
LISTENER_KEYS = {
    "id", "name", "description", "provisioning_status", "operating_status", "admin_state_up",
    "protocol", "protocol_port", "connection_limit", "default_tls_container_ref",
    "sni_container_refs", "project_id", "tenant_id", "default_pool_id", "l7policies",
    "insert_headers", "created_at", "updated_at", "loadbalancers", "timeout_client_data",
    "timeout_member_connect", "timeout_member_data", "timeout_tcp_inspect", "tags",
    "client_ca_tls_container_ref", "client_authentication", "client_crl_container_ref",
    "allowed_cidrs", "tls_ciphers", "tls_versions", "alpn_protocols", "hsts_max_age",
    "hsts_include_subdomains", "hsts_preload",
}
CERT = "https://barbican.example/v1/containers/0b1c2d3e-cert"
DEFAULT_CIPHERS = config.DEFAULT_CIPHERS


def create(api: servers.Client, lb_id: str, expect: int = 201, **fields: Any) -> Any:
    body = {"loadbalancer_id": lb_id, "protocol": "HTTP", "protocol_port": 80, **fields}
    status, out = api.post(L, {"listener": body})
    assert status == expect, out
    if expect == 201:
        api.settle(lb_id)
        return out["listener"]
    return out["faultstring"]


def bad(api: servers.Client, lb_id: str, **fields: Any) -> str:
    """Create that must fail with 400; returns the faultstring."""
    return create(api, lb_id, expect=400, **fields)


def db_session(api: servers.Client) -> Session:
    from tests.settle import _engine

    return Session(_engine(api.server.db_url))


def add_pool(api: servers.Client, lb_id: str, protocol: str = "HTTP") -> str:
    status, out = api.post("/v2/lbaas/pools", {"pool": {
        "loadbalancer_id": lb_id, "protocol": protocol, "lb_algorithm": "ROUND_ROBIN"}})
    assert status == 201, out
    api.settle(lb_id)
    return out["pool"]["id"]


# --- create ------------------------------------------------------------------------------


def test_create_matches_octavia_shape(api):
    lb = api.create_lb()
    status, body = api.post(L, {"listener": {
        "name": "sample-l", "protocol": "HTTP", "protocol_port": 80,
        "loadbalancer_id": lb["id"]}})
    assert status == 201, body
    ln = body["listener"]
    assert set(ln) == LISTENER_KEYS
    assert (ln["provisioning_status"], ln["operating_status"]) == ("PENDING_CREATE", "OFFLINE")
    assert ln["project_id"] == ln["tenant_id"] == PROJECT
    assert ln["loadbalancers"] == [{"id": lb["id"]}]
    assert ln["l7policies"] == [] and ln["sni_container_refs"] == [] and ln["tags"] == []
    assert ln["insert_headers"] == {} and ln["allowed_cidrs"] is None
    assert ln["connection_limit"] == -1 and ln["client_authentication"] == "NONE"
    assert (ln["timeout_client_data"], ln["timeout_member_connect"], ln["timeout_member_data"],
            ln["timeout_tcp_inspect"]) == (50000, 5000, 50000, 0)
    assert ln["tls_ciphers"] is ln["tls_versions"] is ln["alpn_protocols"] is None
    assert ln["hsts_max_age"] is None and ln["hsts_include_subdomains"] is False
    assert ln["description"] == "" and ln["updated_at"] is None
    _, lb_now = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert lb_now["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
    assert lb_now["loadbalancer"]["listeners"] == [{"id": ln["id"]}]
    # A second child change must wait for the first.
    assert "immutable" in create(api, lb["id"], expect=409, protocol_port=81)
    api.settle(lb["id"])
    _, shown = api.get(f"{L}/{ln['id']}")
    assert shown["listener"]["provisioning_status"] == "ACTIVE"


def test_terminated_https_gets_tls_defaults(api):
    lb = api.create_lb()
    ln = create(api, lb["id"], protocol="TERMINATED_HTTPS", protocol_port=443,
                default_tls_container_ref=CERT, sni_container_refs=["sni-b", "sni-a", "sni-b"],
                insert_headers={"X-Forwarded-For": "true", "X-SSL-Client-CN": "true"},
                hsts_max_age=3600, hsts_preload=True)
    assert ln["tls_ciphers"] == DEFAULT_CIPHERS
    assert ln["tls_versions"] == ["TLSv1.2", "TLSv1.3"]
    assert ln["alpn_protocols"] == ["h2", "http/1.1", "http/1.0"]
    assert ln["default_tls_container_ref"] == CERT
    assert ln["sni_container_refs"] == ["sni-b", "sni-a"]
    assert ln["insert_headers"] == {"X-Forwarded-For": "true", "X-SSL-Client-CN": "true"}
    assert (ln["hsts_max_age"], ln["hsts_include_subdomains"], ln["hsts_preload"]) == (
        3600, False, True)
    # Given values are kept.
    ln2 = create(api, lb["id"], protocol="TERMINATED_HTTPS", protocol_port=8443,
                 sni_container_refs=[CERT], tls_versions=["TLSv1.3"], alpn_protocols=["h2"],
                 tls_ciphers="ECDHE-RSA-AES128-GCM-SHA256",
                 client_ca_tls_container_ref="ca", client_authentication="MANDATORY",
                 client_crl_container_ref="crl")
    assert ln2["tls_versions"] == ["TLSv1.3"] and ln2["alpn_protocols"] == ["h2"]
    assert ln2["tls_ciphers"] == "ECDHE-RSA-AES128-GCM-SHA256"
    assert ln2["default_tls_container_ref"] is None
    assert (ln2["client_ca_tls_container_ref"], ln2["client_authentication"],
            ln2["client_crl_container_ref"]) == ("ca", "MANDATORY", "crl")


def test_create_every_protocol_and_peer_ports(api):
    lb = api.create_lb()
    ids = []
    for protocol, port in (("TCP", 1), ("HTTPS", 2), ("UDP", 1), ("PROMETHEUS", 9100),
                           ("HTTP", 65535)):
        ln = create(api, lb["id"], protocol=protocol, protocol_port=port)
        assert (ln["protocol"], ln["protocol_port"]) == (protocol, port)
        assert ln["tls_ciphers"] is None
        ids.append(ln["id"])
    with db_session(api) as s:
        peers = dict(s.execute(select(m.Listener.id, m.Listener.peer_port)
                               .where(m.Listener.load_balancer_id == lb["id"])).all())
    assert [peers[i] for i in ids] == [1025, 1026, 1027, 1028, 1029]
    # Peer ports are per load balancer.
    other = api.create_lb()
    ln = create(api, other["id"])
    with db_session(api) as s:
        assert s.get(m.Listener, ln["id"]).peer_port == 1025


def test_create_bad_input_names_the_field(api):
    lb = api.create_lb()
    cases = [
        ({"protocol": "FTP"}, "protocol"),
        ({"protocol": 7}, "protocol"),
        ({"protocol_port": 0}, "protocol_port"),
        ({"protocol_port": 65536}, "protocol_port"),
        ({"protocol_port": "eighty"}, "protocol_port"),
        ({"protocol_port": 80.5}, "protocol_port"),
        ({"protocol_port": True}, "protocol_port"),
        ({"connection_limit": -2}, "connection_limit"),
        ({"connection_limit": 2**40}, "connection_limit"),
        ({"timeout_client_data": -1}, "timeout_client_data"),
        ({"timeout_member_data": 2073600001}, "timeout_member_data"),
        ({"name": "x" * 256}, "name"),
        ({"description": 5}, "description"),
        ({"admin_state_up": "yes"}, "admin_state_up"),
        ({"default_pool_id": "not-a-uuid"}, "default_pool_id"),
        ({"loadbalancer_id": "nope"}, "loadbalancer_id"),
        ({"client_authentication": "ALWAYS"}, "client_authentication"),
        ({"insert_headers": {"X-Forwarded-For": 1}}, "insert_headers"),
        ({"insert_headers": ["X-Forwarded-For"]}, "insert_headers"),
        ({"allowed_cidrs": ["10.0.0.0/33"]}, "allowed_cidrs"),
        ({"allowed_cidrs": "10.0.0.0/8"}, "allowed_cidrs"),
        ({"tls_versions": ["TLSv9"]}, "tls_versions"),
        ({"alpn_protocols": ["spdy"]}, "alpn_protocols"),
        ({"tls_ciphers": "AES128;rm -rf"}, "tls_ciphers"),
        ({"tls_ciphers": "A" * 2049}, "tls_ciphers"),
        ({"default_tls_container_ref": "r" * 256}, "default_tls_container_ref"),
        ({"sni_container_refs": "one"}, "sni_container_refs"),
        ({"hsts_max_age": -1}, "hsts_max_age"),
        ({"hsts_preload": "true"}, "hsts_preload"),
        ({"tags": ["t" * 256]}, "tags"),
        ({"tags": "a"}, "tags"),
        ({"default_pool": {"name": "p"}}, "default_pool"),
        ({"l7policies": []}, "l7policies"),
        ({"provisioning_status": "ACTIVE"}, "provisioning_status"),
    ]
    for fields, name in cases:
        message = bad(api, lb["id"], **fields)
        assert name in message, (fields, message)
    status, err = api.post(L, {"listener": {"protocol": "HTTP", "protocol_port": 80}})
    assert status == 400
    assert err["faultstring"] == ("Invalid input for field/attribute loadbalancer_id. "
                                  "Value: 'None'. Mandatory field missing.")
    status, err = api.post(L, {"listener": {"loadbalancer_id": lb["id"], "protocol": "HTTP"}})
    assert status == 400 and "protocol_port" in err["faultstring"]
    # Integers sent as strings are read as WSME reads them (octaviaclient does this).
    ln = create(api, lb["id"], protocol_port="8080", connection_limit="5")
    assert (ln["protocol_port"], ln["connection_limit"]) == (8080, 5)
    assert api.post(L, {"listener": "x"})[0] == 400
    assert api.post(L, {"pool": {}})[0] == 400
    assert api.call("POST", L, raw=b"{not json")[0] == 400


def test_sctp_is_refused(api):
    lb = api.create_lb()
    assert bad(api, lb["id"], protocol="SCTP") == (
        "Invalid input for field/attribute protocol. Value: 'SCTP'. "
        "SCTP is not supported by this deployment.")


def test_missing_and_foreign_parents(api):
    lb = api.create_lb()
    missing = "7c6a0ef7-4bb2-4bde-b7a6-3a1e2f1a0c11"
    status, err = api.post(L, {"listener": {"loadbalancer_id": missing, "protocol": "HTTP",
                                            "protocol_port": 80}})
    assert (status, err["faultstring"]) == (404, f"Load Balancer {missing} not found.")
    assert create(api, lb["id"], expect=404, default_pool_id=missing) == (
        f"Pool {missing} not found.")
    # A pool of another load balancer is not found either.
    other = api.create_lb()
    pool_id = add_pool(api, other["id"])
    assert create(api, lb["id"], expect=404, default_pool_id=pool_id) == (
        f"Pool {pool_id} not found.")
    assert api.get(f"{L}/{missing}") == (404, {
        "faultcode": "Client", "faultstring": f"Listener {missing} not found.",
        "debuginfo": None})
    for call in (api.put(f"{L}/{missing}", {"listener": {"name": "x"}}),
                 api.delete(f"{L}/{missing}"), api.get(f"{L}/{missing}/stats")):
        assert call[0] == 404


def test_duplicate_port_by_l4_protocol(api):
    lb = api.create_lb()
    create(api, lb["id"], protocol="HTTP", protocol_port=80)
    for protocol in ("TCP", "HTTP", "HTTPS", "PROMETHEUS"):
        assert create(api, lb["id"], expect=409, protocol=protocol, protocol_port=80) == (
            "Another Listener on this Load Balancer is already using protocol HTTP and "
            "protocol_port 80")
    # UDP shares no layer-4 port space with TCP.
    create(api, lb["id"], protocol="UDP", protocol_port=80)
    assert "protocol UDP and protocol_port 80" in create(
        api, lb["id"], expect=409, protocol="UDP", protocol_port=80)
    # Another load balancer has its own ports.
    create(api, api.create_lb()["id"], protocol="HTTP", protocol_port=80)


def test_insert_headers_rules(api):
    lb = api.create_lb()
    assert bad(api, lb["id"], protocol="TCP", insert_headers={"X-Forwarded-For": "true"}) == (
        "insert-headers is not a valid option for a TCP protocol listener.")
    assert bad(api, lb["id"], protocol="UDP", insert_headers={"X-Forwarded-For": "true"}) == (
        "insert-headers is not a valid option for a UDP protocol listener.")
    assert bad(api, lb["id"], insert_headers={"X-Evil": "true"}) == (
        "['X-Evil'] is not a valid option for insert_headers")
    assert bad(api, lb["id"], insert_headers={"X-SSL-Client-DN": "true"}) == (
        "['X-SSL-Client-DN'] is not a valid option for HTTP protocol listener.")
    ln = create(api, lb["id"], insert_headers={"X-Forwarded-Port": "true", "X-Real-IP": "x"})
    assert ln["insert_headers"] == {"X-Forwarded-Port": "true", "X-Real-IP": "x"}


def test_tls_rules(api):
    lb = api.create_lb()
    assert bad(api, lb["id"], default_tls_container_ref=CERT) == (
        "Validation failure: Certificate container references are not allowed on HTTP "
        "protocol listeners.")
    assert "not allowed on TCP" in bad(api, lb["id"], protocol="TCP",
                                       sni_container_refs=[CERT])
    assert bad(api, lb["id"], protocol="UDP", default_tls_container_ref=CERT) == (
        "Validation failure: UDP protocol listener does not support TLS.")
    assert bad(api, lb["id"], protocol="TERMINATED_HTTPS") == (
        "Validation failure: An SNI or default certificate container reference must be "
        "provided for TERMINATED_HTTPS protocol listeners.")
    tls = {"protocol": "TERMINATED_HTTPS", "protocol_port": 443}
    assert bad(api, lb["id"], **tls, client_ca_tls_container_ref="ca") == (
        "Validation failure: An SNI or default certificate container reference must be "
        "provided with a client CA container reference.")
    assert bad(api, lb["id"], **tls, default_tls_container_ref=CERT,
               client_authentication="OPTIONAL") == (
        "Validation failure: Client authentication setting OPTIONAL requires a client CA "
        "container reference.")
    assert bad(api, lb["id"], **tls, default_tls_container_ref=CERT,
               client_crl_container_ref="crl") == (
        "Validation failure: A client authentication CA reference is required to specify a "
        "client authentication revocation list.")
    cert = {**tls, "default_tls_container_ref": CERT}
    assert bad(api, lb["id"], **cert, tls_versions=[]) == (
        "Validation failure: Empty TLS version list. Either specify at least one TLS version "
        "or remove this parameter to use the default.")
    assert bad(api, lb["id"], **cert, alpn_protocols=[]) == (
        "Validation failure: Empty ALPN protocol list. Either specify at least one ALPN "
        "protocol or remove this parameter to use the default.")
    # A PROMETHEUS listener with a certificate serves its metrics over TLS.
    prom = create(api, lb["id"], protocol="PROMETHEUS", protocol_port=9443,
                  default_tls_container_ref=CERT)
    assert prom["tls_versions"] == ["TLSv1.2", "TLSv1.3"]


def test_hsts_rules(api):
    lb = api.create_lb()
    assert bad(api, lb["id"], hsts_max_age=10) == (
        "Validation failure: The HSTS feature can only be used for listeners using the "
        "TERMINATED_HTTPS protocol.")
    tls = {"protocol": "TERMINATED_HTTPS", "protocol_port": 443,
           "default_tls_container_ref": CERT}
    for flag in ("hsts_include_subdomains", "hsts_preload"):
        assert bad(api, lb["id"], **tls, **{flag: True}) == (
            "Validation failure: HSTS configuration options hsts_include_subdomains and "
            "hsts_preload only make sense if hsts_max_age is set as well.")
    ln = create(api, lb["id"], **tls, hsts_max_age=0, hsts_include_subdomains=True)
    assert (ln["hsts_max_age"], ln["hsts_include_subdomains"]) == (0, True)
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"hsts_max_age": None}})
    assert status == 400 and "hsts_max_age is set" in body["faultstring"]
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {
        "hsts_max_age": None, "hsts_include_subdomains": None}})
    assert status == 200, body
    assert body["listener"]["hsts_max_age"] is None
    assert body["listener"]["hsts_include_subdomains"] is False


def test_allowed_cidrs(api):
    lb = api.create_lb()
    ln = create(api, lb["id"], allowed_cidrs=["192.0.2.77/24", "10.0.0.0/8", "192.0.2.0/24"])
    assert ln["allowed_cidrs"] == ["10.0.0.0/8", "192.0.2.0/24"]
    message = bad(api, lb["id"], protocol_port=81, allowed_cidrs=["2001:db8::/32"])
    assert message.startswith("Validation failure: CIDR 2001:db8::/32 IP version "
                              "incompatible with all VIPs")
    assert lb["vip_address"] in message
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"allowed_cidrs": ["::/0"]}})
    assert status == 400 and "CIDR ::/0 IP version incompatible" in body["faultstring"]
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"allowed_cidrs": []}})
    assert status == 200 and body["listener"]["allowed_cidrs"] is None
    api.settle(lb["id"])
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"allowed_cidrs": ["0.0.0.0/0"]}})
    assert body["listener"]["allowed_cidrs"] == ["0.0.0.0/0"]
    api.settle(lb["id"])
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"allowed_cidrs": None}})
    assert status == 200 and body["listener"]["allowed_cidrs"] is None
    # An IPv6 load balancer takes IPv6 CIDRs.
    lb6 = api.create_lb(vip_subnet_id=stable_id("subnet", "public6"))
    ln6 = create(api, lb6["id"], allowed_cidrs=["2001:db8::1/64"])
    assert ln6["allowed_cidrs"] == ["2001:db8::/64"]
    assert "IP version incompatible" in bad(api, lb6["id"], protocol_port=81,
                                            allowed_cidrs=["10.0.0.0/8"])
    # Not with user-supplied VIP security groups.
    lb_sg = api.create_lb(vip_sg_ids=["6f0e1d2c-3b4a-4958-8776-655443322110"])
    assert "vip_sg_ids" in bad(api, lb_sg["id"], allowed_cidrs=["10.0.0.0/8"])


def test_default_pool(api):
    lb = api.create_lb()
    http_pool = add_pool(api, lb["id"], "HTTP")
    tcp_pool = add_pool(api, lb["id"], "TCP")
    udp_pool = add_pool(api, lb["id"], "UDP")
    ln = create(api, lb["id"], default_pool_id=http_pool)
    assert ln["default_pool_id"] == http_pool
    _, pool = api.get(f"/v2/lbaas/pools/{http_pool}")
    assert pool["pool"]["listeners"] == [{"id": ln["id"]}]
    assert bad(api, lb["id"], protocol_port=81, default_pool_id=tcp_pool) == (
        "Validation failure: The pool protocol 'TCP' is invalid while the listener protocol "
        "is 'HTTP'.")
    assert "'HTTP' is invalid while the listener protocol is 'UDP'" in bad(
        api, lb["id"], protocol="UDP", default_pool_id=http_pool)
    assert bad(api, lb["id"], protocol="PROMETHEUS", protocol_port=9100,
               default_pool_id=http_pool) == (
        "Protocol PROMETHEUS listeners cannot have child objects.")
    # The same pool may serve several listeners.
    tcp = create(api, lb["id"], protocol="TCP", protocol_port=82, default_pool_id=tcp_pool)
    udp = create(api, lb["id"], protocol="UDP", protocol_port=82, default_pool_id=udp_pool)
    assert (tcp["default_pool_id"], udp["default_pool_id"]) == (tcp_pool, udp_pool)
    status, body = api.put(f"{L}/{tcp['id']}", {"listener": {"default_pool_id": http_pool}})
    assert status == 200 and body["listener"]["default_pool_id"] == http_pool
    api.settle(lb["id"])
    _, pool = api.get(f"/v2/lbaas/pools/{http_pool}")
    assert {x["id"] for x in pool["pool"]["listeners"]} == {ln["id"], tcp["id"]}
    status, body = api.put(f"{L}/{udp['id']}", {"listener": {"default_pool_id": http_pool}})
    assert status == 400 and "protocol 'HTTP' is invalid" in body["faultstring"]
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"default_pool_id": None}})
    assert status == 200 and body["listener"]["default_pool_id"] is None


# --- config-dependent rules (one extra server, SQLite only) -------------------------------


@pytest.fixture(scope="module")
def strict_api(tmp_path_factory):
    extra = """
[api_settings]
allow_tls_terminated_listeners = false
allow_prometheus_listeners = false
tls_cipher_prohibit_list = RC4-MD5:DES-CBC3-SHA
minimum_tls_version = TLSv1.2
[haproxy_amphora]
timeout_client_data = 1234
"""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api("sqlite", tmp_path_factory.mktemp("strict"), f"{worker}s",
                             extra_config=extra) as srv:
        yield servers.Client(srv)


def test_deployment_options(strict_api):
    api = strict_api
    lb = api.create_lb()
    assert bad(api, lb["id"], protocol="TERMINATED_HTTPS", default_tls_container_ref=CERT) == (
        "The selected protocol is not allowed in this deployment: TERMINATED_HTTPS")
    assert bad(api, lb["id"], protocol="PROMETHEUS") == (
        "The selected protocol is not allowed in this deployment: PROMETHEUS")
    ln = create(api, lb["id"])
    assert ln["timeout_client_data"] == 1234
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"tls_ciphers": "RC4-MD5:AES"}})
    assert (status, body["faultstring"]) == (400, (
        "Validation failure: The following ciphers have been prohibited by an "
        "administrator: RC4-MD5"))
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"tls_versions": ["TLSv1.3",
                                                                             "TLSv1.1"]}})
    assert (status, body["faultstring"]) == (400, (
        "Validation failure: TLS version TLSv1.1 violates minimum TLS version required"))
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"timeout_client_data": 5,
                                                            "name": "n"}})
    assert status == 200 and body["listener"]["timeout_client_data"] == 5
    api.settle(lb["id"])
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {"timeout_client_data": None}})
    assert body["listener"]["timeout_client_data"] == 1234


# --- update / delete ---------------------------------------------------------------------


def test_update_and_reset_to_defaults(api):
    lb = api.create_lb()
    ln = create(api, lb["id"], name="a", description="d", connection_limit=10,
                timeout_member_connect=1, insert_headers={"X-Forwarded-For": "true"},
                tags=["x"])
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {
        "name": "b", "admin_state_up": False, "connection_limit": 500,
        "timeout_tcp_inspect": 10, "tags": ["y", "z"]}})
    assert status == 200
    out = body["listener"]
    assert set(out) == LISTENER_KEYS
    assert (out["name"], out["admin_state_up"], out["connection_limit"],
            out["timeout_tcp_inspect"], out["tags"]) == ("b", False, 500, 10, ["y", "z"])
    assert out["provisioning_status"] == "PENDING_UPDATE" and out["description"] == "d"
    _, lb_now = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert lb_now["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
    assert api.put(f"{L}/{ln['id']}", {"listener": {"name": "c"}})[0] == 409
    api.settle(lb["id"])
    status, body = api.put(f"{L}/{ln['id']}", {"listener": {
        "name": None, "description": None, "connection_limit": None,
        "timeout_member_connect": None, "insert_headers": None, "tags": None,
        "admin_state_up": None, "client_authentication": None}})
    assert status == 200, body
    out = body["listener"]
    assert (out["name"], out["description"], out["connection_limit"],
            out["timeout_member_connect"], out["insert_headers"], out["tags"],
            out["admin_state_up"], out["client_authentication"]) == (
        "", "", -1, 5000, {}, [], False, "NONE")
    api.settle(lb["id"])
    assert api.get(f"{L}/{ln['id']}")[1]["listener"]["provisioning_status"] == "ACTIVE"


def test_update_bad_input(api):
    lb = api.create_lb()
    ln = create(api, lb["id"])
    for fields, name in (({"protocol": "TCP"}, "protocol"),
                         ({"protocol_port": 81}, "protocol_port"),
                         ({"loadbalancer_id": lb["id"]}, "loadbalancer_id"),
                         ({"connection_limit": "many"}, "connection_limit"),
                         ({"sni_container_refs": [1]}, "sni_container_refs"),
                         ({"default_tls_container_ref": CERT}, "Certificate container"),
                         ({"insert_headers": {"X-SSL-Issuer": "true"}}, "X-SSL-Issuer"),
                         ({"client_authentication": "MANDATORY"}, "client CA")):
        status, body = api.put(f"{L}/{ln['id']}", {"listener": fields})
        assert status == 400 and name in body["faultstring"], (fields, body)
    assert api.get(f"{L}/{ln['id']}")[1]["listener"]["provisioning_status"] == "ACTIVE"


def test_update_tls_listener(api):
    lb = api.create_lb()
    ln = create(api, lb["id"], protocol="TERMINATED_HTTPS", protocol_port=443,
                default_tls_container_ref=CERT, tls_versions=["TLSv1.3"],
                client_ca_tls_container_ref="ca", client_crl_container_ref="crl")
    url = f"{L}/{ln['id']}"
    status, body = api.put(url, {"listener": {"default_tls_container_ref": None}})
    assert status == 400 and "provided with a client CA" in body["faultstring"]
    status, body = api.put(url, {"listener": {"client_ca_tls_container_ref": None}})
    assert status == 400 and "revocation list" in body["faultstring"]
    status, body = api.put(url, {"listener": {
        "default_tls_container_ref": None, "sni_container_refs": ["s1", "s2"],
        "tls_versions": None, "alpn_protocols": ["http/1.1"], "tls_ciphers": None}})
    assert status == 200, body
    out = body["listener"]
    assert out["default_tls_container_ref"] is None
    assert out["sni_container_refs"] == ["s1", "s2"]
    assert out["tls_versions"] == ["TLSv1.2", "TLSv1.3"]
    assert out["alpn_protocols"] == ["http/1.1"] and out["tls_ciphers"] == DEFAULT_CIPHERS
    api.settle(lb["id"])
    status, body = api.put(url, {"listener": {"sni_container_refs": ["s2", "s3"]}})
    assert body["listener"]["sni_container_refs"] == ["s2", "s3"]
    api.settle(lb["id"])
    assert api.get(url)[1]["listener"]["sni_container_refs"] == ["s2", "s3"]


def test_delete(api):
    lb = api.create_lb()
    ln = create(api, lb["id"])
    status, body = api.delete(f"{L}/{ln['id']}")
    assert (status, body) == (204, None)
    _, shown = api.get(f"{L}/{ln['id']}")
    assert shown["listener"]["provisioning_status"] == "PENDING_DELETE"
    _, lb_now = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert lb_now["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
    assert api.delete(f"{L}/{ln['id']}")[0] == 409
    api.settle(lb["id"])
    assert api.get(f"{L}/{ln['id']}")[0] == 404
    # The port is free again.
    create(api, lb["id"])


def test_stats(api):
    lb = api.create_lb()
    ln = create(api, lb["id"])
    with db_session(api) as s, s.begin():
        s.add(m.ListenerStatistics(listener_id=ln["id"], amphora_id=ln["id"], bytes_in=10,
                                   bytes_out=20, active_connections=3, total_connections=4,
                                   request_errors=5))
    status, body = api.get(f"{L}/{ln['id']}/stats")
    assert (status, body) == (200, {"stats": {
        "bytes_in": 10, "bytes_out": 20, "active_connections": 3, "total_connections": 4,
        "request_errors": 5}})


# --- list --------------------------------------------------------------------------------


def test_list_paging_sorting_filters_fields_tags(api):
    lb = api.create_lb()
    made = [create(api, lb["id"], protocol_port=1000 + i, name=f"ls-{i}",
                   protocol="TCP" if i % 2 else "HTTP", tags=["even" if i % 2 == 0 else "odd",
                                                              "all"])
            for i in range(5)]
    ids = [x["id"] for x in made]
    status, page1 = api.get(L, loadbalancer_id=lb["id"], limit=2)
    assert status == 200
    assert [x["id"] for x in page1["listeners"]] == ids[:2]
    assert [x["rel"] for x in page1["listeners_links"]] == ["next"]
    assert "marker=" + ids[1] in page1["listeners_links"][0]["href"]
    _, page2 = api.get(L, loadbalancer_id=lb["id"], limit=2, marker=ids[1])
    assert [x["id"] for x in page2["listeners"]] == ids[2:4]
    assert {x["rel"] for x in page2["listeners_links"]} == {"next", "previous"}
    _, by_port = api.get(L, load_balancer_id=lb["id"], sort="protocol_port:desc")
    assert [x["id"] for x in by_port["listeners"]] == ids[::-1]
    _, tcp = api.get(L, loadbalancer_id=lb["id"], protocol="TCP")
    assert [x["id"] for x in tcp["listeners"]] == [ids[1], ids[3]]
    _, one = api.get(L, name="ls-2", loadbalancer_id=lb["id"])
    assert [x["id"] for x in one["listeners"]] == [ids[2]]
    _, port = api.get(L, protocol_port=1004, loadbalancer_id=lb["id"])
    assert [x["id"] for x in port["listeners"]] == [ids[4]]
    _, fields = api.call("GET", L + f"?loadbalancer_id={lb['id']}&fields=id&fields=protocol")
    assert all(set(x) == {"id", "protocol"} for x in fields["listeners"])
    _, even = api.get(L, loadbalancer_id=lb["id"], tags="even")
    assert [x["id"] for x in even["listeners"]] == ids[0::2]
    _, not_even = api.get(L, loadbalancer_id=lb["id"], **{"not-tags": "even"})
    assert [x["id"] for x in not_even["listeners"]] == ids[1::2]
    _, enabled = api.get(L, loadbalancer_id=lb["id"], admin_state_up="true")
    assert len(enabled["listeners"]) == 5
    _, show = api.get(f"{L}/{ids[0]}", fields="name")
    assert show == {"listener": {"name": "ls-0"}}
    assert api.get(L, bogus="1")[0] == 400
    assert api.get(L, sort="bogus")[0] == 400
    assert api.get(L, marker="7c6a0ef7-4bb2-4bde-b7a6-3a1e2f1a0c11")[0] == 400
    # Listeners carry their load balancer's project.
    _, theirs = api.get(L, loadbalancer_id=lb["id"], project_id=OTHER_PROJECT)
    assert theirs["listeners"] == []
    _, ours = api.get(L, loadbalancer_id=lb["id"], project_id=PROJECT)
    assert len(ours["listeners"]) == 5


# --- clients -----------------------------------------------------------------------------


def test_sdk_create_show_list_update_stats_delete(sdk, api):
    lb = api.create_lb()
    ln = sdk.create_listener(load_balancer_id=lb["id"], protocol="HTTP", protocol_port=8080,
                             name="sdk-l", tags=["blue"], connection_limit=100,
                             insert_headers={"X-Forwarded-For": "true"},
                             allowed_cidrs=["192.0.2.0/24"])
    assert ln.provisioning_status == "PENDING_CREATE"
    assert ln.load_balancers == [{"id": lb["id"]}]
    api.settle(lb["id"])
    got = sdk.get_listener(ln.id)
    assert (got.name, got.protocol_port, got.connection_limit) == ("sdk-l", 8080, 100)
    assert got.allowed_cidrs == ["192.0.2.0/24"]
    assert ln.id in {x.id for x in sdk.listeners(load_balancer_id=lb["id"], tags="blue")}
    assert sdk.find_listener("sdk-l").id == ln.id
    sdk.update_listener(ln.id, name="sdk-l2", timeout_client_data=99)
    api.settle(lb["id"])
    got = sdk.get_listener(ln.id)
    assert (got.name, got.timeout_client_data) == ("sdk-l2", 99)
    stats = sdk.get_listener_statistics(ln.id)
    assert stats.bytes_in == 0 and stats.total_connections == 0
    sdk.delete_listener(ln.id)
    api.settle(lb["id"])
    assert sdk.find_listener(ln.id) is None


def test_cli_create_show_list_set_unset_delete(cli, api):
    lb = api.create_lb(name="cli-listener-lb")
    ln = cli("loadbalancer", "listener", "create", "--name", "cli-l", "--protocol", "HTTP",
             "--protocol-port", "8081", "--connection-limit", "77", "--insert-headers",
             "X-Forwarded-For=true", "--allowed-cidr", "192.0.2.0/24", "--tag", "a",
             "cli-listener-lb")
    assert ln["name"] == "cli-l" and ln["provisioning_status"] == "PENDING_CREATE"
    api.settle(lb["id"])
    cli.run("loadbalancer", "listener", "set", "--name", "cli-l2", "--timeout-client-data",
            "7", "--description", "desc", ln["id"])
    shown = cli("loadbalancer", "listener", "show", "cli-l2")
    assert shown["description"] == "desc" and shown["timeout_client_data"] == 7
    assert shown["provisioning_status"] == "PENDING_UPDATE"
    api.settle(lb["id"])
    cli.run("loadbalancer", "listener", "unset", "--connection-limit", "--insert-headers",
            "--allowed-cidrs", "--timeout-client-data", "--description", ln["id"])
    shown = cli("loadbalancer", "listener", "show", ln["id"])
    assert shown["connection_limit"] == -1 and shown["timeout_client_data"] == 50000
    assert shown["description"] == "" and not shown["allowed_cidrs"]
    api.settle(lb["id"])
    listed = cli("loadbalancer", "listener", "list", "--loadbalancer", lb["id"])
    assert [x["id"] for x in listed] == [ln["id"]]
    stats = cli("loadbalancer", "listener", "stats", "show", ln["id"])
    assert stats["bytes_in"] == 0
    cli.run("loadbalancer", "listener", "delete", ln["id"])
    api.settle(lb["id"])
    assert cli.run("loadbalancer", "listener", "show", ln["id"], check=False).returncode != 0
