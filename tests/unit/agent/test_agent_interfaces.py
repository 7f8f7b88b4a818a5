"""GET /1.0/interface/{ip} (Octavia's): which interface holds an address, from the real
``ip`` of this host's namespace (where loopback always holds 127.0.0.1); POST
/1.0/plug/vip/{vip}: its refusals here, the plugging itself in a namespace
(tests/integration/test_cloud_e2e.py boots SINGLE amphorae that need it)."""

from __future__ import annotations

import json

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


def test_plug_vip_refuses_bad_input_naming_the_field() -> None:
    def post(vip: str, body: object) -> falcon.testing.Result:
        return client().simulate_post(f"/1.0/plug/vip/{vip}", body=json.dumps(body))

    answer = post("nope", {"subnet_cidr": "198.18.0.0/24", "vrrp_ip": "198.18.0.5"})
    assert (answer.status_code, answer.json["message"]) == (400, "Invalid vip")
    answer = post("198.18.0.9", {"subnet_cidr": "x", "vrrp_ip": "198.18.0.5"})
    assert (answer.status_code, answer.json["message"]) == (400, "Invalid subnet_cidr")
    answer = post("198.18.1.9", {"subnet_cidr": "198.18.0.0/24", "vrrp_ip": "198.18.0.5"})
    assert answer.status_code == 400 and "not in subnet_cidr" in answer.json["details"]
    answer = post("198.18.0.9", {"subnet_cidr": "198.18.0.0/24", "vrrp_ip": "bad"})
    assert (answer.status_code, answer.json["message"]) == (400, "Invalid vrrp_ip")
    answer = post("198.18.0.9", {"subnet_cidr": "198.18.0.0/24"})
    assert answer.status_code == 400 and "mac_address or vrrp_ip" in answer.json["details"]
    answer = post("198.18.0.9", ["not", "an", "object"])
    assert answer.status_code == 400


def test_plug_vip_without_that_interface_is_a_404() -> None:
    answer = client().simulate_post("/1.0/plug/vip/198.18.255.9", body=json.dumps(
        {"subnet_cidr": "198.18.255.0/24", "vrrp_ip": "198.18.255.254"}))
    assert answer.status_code == 404
    assert "198.18.255.254" in answer.json["details"]
