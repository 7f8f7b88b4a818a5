"""GET /1.0/interface/{ip} (Octavia's): which interface holds an address, from the real
``ip`` of this host's namespace (where loopback always holds 127.0.0.1)."""

from __future__ import annotations

import falcon.testing

from amphorae.agent import api, interfaces, wsgi


def client() -> falcon.testing.TestClient:
    app = wsgi.App(api.MAX_BODY)
    interfaces.add_routes(app, "/1.0")
    return falcon.testing.TestClient(app)


def test_the_interface_holding_an_address_is_named() -> None:
    assert interfaces.holding("127.0.0.1") == "lo"
    assert interfaces.holding("::1") == "lo"
    answer = client().simulate_get("/1.0/interface/127.0.0.1")
    assert answer.status_code == 200
    assert answer.json == {"message": "OK", "interface": "lo"}


def test_an_address_nobody_holds_is_a_404() -> None:
    assert interfaces.holding("198.18.255.254") is None
    answer = client().simulate_get("/1.0/interface/198.18.255.254")
    assert answer.status_code == 404
    assert answer.json["message"] == "Error interface not found for IP address"


def test_a_bad_address_is_a_400() -> None:
    answer = client().simulate_get("/1.0/interface/not-an-ip")
    assert answer.status_code == 400
    assert "not-an-ip" in answer.json["details"]
