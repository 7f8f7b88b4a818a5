"""Bad input that only the worker can find (root): a stored certificate that no longer
parses, an L7 rule whose regex Python accepts but HAProxy refuses. Each ends with the one
object in ERROR and a readable reason in the log, the load balancer ACTIVE, and the rest
of it still serving. Deployment: tests/deployment.py on 198.18.84.0/24 + 198.18.85.0/24
(or the next pairs on other xdist workers).
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from amphorae.common import pki
from tests import certstore
from tests import dataplane as dp
from tests.deployment import Deployment, deployment, eventually, per_worker

MARKER = secrets.token_hex(3)


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    with deployment(MARKER, *per_worker("198.18.84.0/24", "198.18.85.0/24")) as d:
        d.members.add("m1", 21)
        d.start("up")
        yield d


@pytest.fixture
def lb(up: Deployment) -> Iterator[Any]:
    """An ACTIVE load balancer serving HTTP on port 80 from member m1."""
    d = up
    lb = d.lb.create_load_balancer(vip_subnet_id=d.vip_subnet_id)
    d.wait_lb(lb.id)
    d.http_tree(lb.id)
    eventually(lambda: _serves_http(lb.vip_address), "HTTP through the VIP")
    yield lb
    d.lb.delete_load_balancer(lb.id, cascade=True)
    d.wait_gone(lb.id)


def _serves_http(vip: str) -> None:
    assert dp.http_request(vip, 80).text == "m1"


def _status(d: Deployment, kind: str, object_id: str) -> str:
    return str(getattr(d.lb, f"get_{kind}")(object_id).provisioning_status)


def test_a_certificate_that_stopped_parsing_fails_only_its_listener(
        up: Deployment, lb: Any) -> None:
    d = up
    store = d.state / "certificates"
    ref = f"web-{MARKER}"
    ca = pki.create_ca("amphorae test TLS CA", validity=3600, digest="sha256")
    certstore.store_cert(store, ref, pki.issue_server_cert(ca, "web.example", validity=3600,
                                                           digest="sha256"))
    tls = d.settle(lb.id, d.lb.create_listener, loadbalancer_id=lb.id,
                 protocol="TERMINATED_HTTPS", protocol_port=443,
                 default_tls_container_ref=ref,
                 default_pool_id=next(d.lb.pools(loadbalancer_id=lb.id)).id)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    eventually(lambda: _serves_https(lb.vip_address, client), "HTTPS through the VIP")

    # The stored certificate is damaged; the next reconcile cannot use it.
    (store / f"{ref}.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    d.settle(lb.id, d.lb.update_listener, tls.id, name="renamed")
    assert _status(d, "listener", tls.id) == "ERROR"
    assert d.lb.get_load_balancer(lb.id).provisioning_status == "ACTIVE"
    log = (d.state / "up.log").read_text()
    assert f"{tls.id} left out, now ERROR: certificate {ref}: {ref}.crt is not a PEM " \
        "certificate" in log
    eventually(lambda: _serves_http(lb.vip_address), "HTTP still served")
    with pytest.raises(OSError):  # the broken listener is out of the configuration
        dp.http_request(lb.vip_address, 443, tls=client, timeout=1)


def _serves_https(vip: str, client: ssl.SSLContext) -> None:
    reply = dp.http_request(vip, 443, tls=client, server_name="web.example")
    assert reply.text == "m1"
    assert reply.certificate is not None
    assert dp.common_name(reply.certificate) == "web.example"


def test_a_rule_haproxy_refuses_fails_only_the_rule(up: Deployment, lb: Any) -> None:
    d = up
    listener = next(d.lb.listeners(loadbalancer_id=lb.id))
    policy = d.settle(lb.id, d.lb.create_l7_policy, listener_id=listener.id,
                    action="REJECT", position=1)
    good = d.settle(lb.id, d.lb.create_l7_rule, policy.id, type="PATH",
                  compare_type="STARTS_WITH", value="/admin")
    eventually(lambda: _rejects(lb.vip_address, "/admin/x"), "the REJECT policy")
    # Python's re accepts it, so the API does; HAProxy's PCRE2 refuses the quantifier.
    bad = d.settle(lb.id, d.lb.create_l7_rule, policy.id, type="PATH",
                 compare_type="REGEX", value="^/a{1,70000}$")
    assert d.lb.get_l7_rule(bad.id, policy.id).provisioning_status == "ERROR"
    assert d.lb.get_l7_rule(good.id, policy.id).provisioning_status == "ACTIVE"
    assert _status(d, "l7_policy", policy.id) == "ACTIVE"
    assert _status(d, "listener", listener.id) == "ACTIVE"
    assert d.lb.get_load_balancer(lb.id).provisioning_status == "ACTIVE"
    assert "number too big in {} quantifier" in (d.state / "up.log").read_text()
    # The policy and its good rule still apply, and the rest is served.
    _rejects(lb.vip_address, "/admin/x")
    _serves_http(lb.vip_address)


def _rejects(vip: str, path: str) -> None:
    assert dp.http_request(vip, 80, path).status == 403
