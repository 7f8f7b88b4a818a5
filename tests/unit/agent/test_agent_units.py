"""The agent's pure parts, and its API in-process (falcon's test client) for what needs
no running HAProxy."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from amphorae.agent import api
from amphorae.agent import haproxy as hap

SHOW_INFO = """Name: HAProxy
Version: 2.6.12-1+deb12u4
Pid: 6901
Uptime: 0d 0h00m03s
Description:

"""


def test_parse_info() -> None:
    info = hap.parse_info(SHOW_INFO)
    assert info["Pid"] == "6901" and info["Uptime"] == "0d 0h00m03s"
    assert info["Description"] == ""
    assert hap.parse_info("Unknown command\n") == {}


def test_parse_frontends() -> None:
    config = """global
    maxconn 10

frontend aaa
    mode http
    bind 127.0.0.1:80

frontend bbb
    bind 127.0.0.1:443 ssl crt-list /x/bbb.pem
    mode http

frontend ccc
    mode tcp

frontend prometheus-exporter-internal-endpoint
    mode http

backend p:aaa
    mode http
"""
    assert api.parse_frontends(config) == [
        {"status": "ACTIVE", "uuid": "aaa", "type": "HTTP"},
        {"status": "ACTIVE", "uuid": "bbb", "type": "TERMINATED_HTTPS"},
        {"status": "ACTIVE", "uuid": "ccc", "type": "TCP"},
    ]


@pytest.mark.parametrize("value", ["", "..", ".", "a/b", "-x", "a" * 65, "a b", "é"])
def test_invalid_ids(value: str) -> None:
    assert not hap.valid_id(value)


@pytest.fixture
def client() -> Iterator[tuple[falcon.testing.TestClient, Path]]:
    base = Path(tempfile.mkdtemp(prefix="amphorae-unit-agent-"))
    try:
        sup = hap.Supervisor(base, shutil.which("haproxy") or "/usr/sbin/haproxy")
        yield falcon.testing.TestClient(api.create_app(sup)), base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_api_errors_are_json(client: tuple[falcon.testing.TestClient, Path]) -> None:
    app, _ = client
    lb_id = str(uuid.uuid4())
    cases = [
        ("GET", f"/1.0/loadbalancer/{lb_id}/haproxy", 404),
        ("PUT", f"/1.0/loadbalancer/{lb_id}/start", 404),
        ("PUT", f"/1.0/loadbalancer/{lb_id}/explode", 400),
        ("PUT", "/1.0/loadbalancer/bad..id/start", 400),
        ("GET", f"/1.0/loadbalancer/{lb_id}/certificates/x.pem", 404),
        ("GET", f"/1.0/loadbalancer/{lb_id}/certificates/x.crt", 400),
        ("GET", "/1.0/nothing", 404),
        ("POST", "/1.0/info", 405),
    ]
    for method, path, status in cases:
        resp = app.simulate_request(method, path)
        assert resp.status_code == status, (method, path, resp.text)
        assert set(resp.json) == {"message", "details"}, resp.json


def test_api_stop_and_delete_of_unknown_lb(client: tuple[falcon.testing.TestClient,
                                                          Path]) -> None:
    app, _ = client
    lb_id = str(uuid.uuid4())
    assert app.simulate_put(f"/1.0/loadbalancer/{lb_id}/stop").status_code == 202
    assert app.simulate_delete(f"/1.0/listeners/{lb_id}").json == {"message": "OK"}
    assert app.simulate_get("/1.0/listeners").json == []


def test_api_certificates(client: tuple[falcon.testing.TestClient, Path]) -> None:
    app, base = client
    lb_id = str(uuid.uuid4())
    url = f"/1.0/loadbalancer/{lb_id}/certificates/c.pem"
    resp = app.simulate_put(url, body=b"PEM DATA")
    assert resp.status_code == 200
    assert resp.headers["etag"].strip('"') == hashlib.md5(b"PEM DATA").hexdigest()
    assert app.simulate_get(url).json == {"md5sum": hashlib.md5(b"PEM DATA").hexdigest()}
    assert (base / lb_id / "certs" / "c.pem").stat().st_mode & 0o777 == 0o600
    assert app.simulate_delete(url).status_code == 200
    assert app.simulate_get(url).status_code == 404


def test_api_refused_config_keeps_nothing_installed(
        client: tuple[falcon.testing.TestClient, Path]) -> None:
    app, base = client
    lb_id = str(uuid.uuid4())
    resp = app.simulate_put(f"/1.0/loadbalancer/amp/{lb_id}/haproxy",
                            body=b"global\n    bogus_keyword\n")
    assert resp.status_code == 400
    assert resp.json["message"] == "Invalid request"
    assert "bogus_keyword" in resp.json["details"]
    assert not (base / lb_id / "haproxy.cfg").exists()
    assert (base / lb_id / "haproxy.cfg.failed").exists()
    assert app.simulate_get(f"/1.0/loadbalancer/{lb_id}/haproxy").status_code == 404
