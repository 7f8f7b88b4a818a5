"""Bad input is answered in the words Octavia's WSME layer uses, naming the field and
the limit: ranges, lengths, types, enumerations and missing fields (api/body.py maps
pydantic's error kinds). Real `amphorae api` on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests import servers


def refused(api: servers.Client, path: str, envelope: str, body: dict[str, Any]) -> str:
    status, out = api.post(path, {envelope: body})
    assert status == 400, out
    return str(out["faultstring"])


def test_each_kind_of_bad_input_in_wsme_words(api: servers.Client) -> None:
    lb = api.create_lb()
    status, out = api.post("/v2/lbaas/pools", {"pool": {
        "loadbalancer_id": lb["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}})
    assert status == 201, out
    pool = out["pool"]["id"]
    api.settle(lb["id"])
    listener = {"loadbalancer_id": lb["id"], "protocol": "HTTP", "protocol_port": 80}
    member = {"address": "198.18.0.5", "protocol_port": 80}
    monitor = {"pool_id": pool, "type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 3}
    L, M, H = "/v2/lbaas/listeners", f"/v2/lbaas/pools/{pool}/members", "/v2/lbaas/healthmonitors"
    cases = [
        (M, "member", {**member, "weight": 257}, "weight", "257",
         "Value should be lower or equal to 256"),
        (L, "listener", {**listener, "protocol_port": 0}, "protocol_port", "0",
         "Value should be greater or equal to 1"),
        (H, "healthmonitor", {**monitor, "max_retries": 11}, "max_retries", "11",
         "Value should be lower or equal to 10"),
        (L, "listener", {**listener, "name": "n" * 256}, "name", "n" * 97 + "...",
         "Value should have a maximum character requirement of 255"),
        (L, "listener", {**listener, "connection_limit": "many"}, "connection_limit", "many",
         "Value should be an integer"),
        (L, "listener", {**listener, "name": 5}, "name", "5", "Value should be a string"),
        (L, "listener", {**listener, "admin_state_up": "maybe"}, "admin_state_up", "maybe",
         "Value should be a boolean"),
        (L, "listener", {**listener, "tags": "a"}, "tags", "a", "Value should be a list"),
        (L, "listener", {**listener, "insert_headers": ["X-Forwarded-For"]}, "insert_headers",
         "['X-Forwarded-For']", "Value should be a JSON object"),
        (L, "listener", {**listener, "protocol": "HTTPX"}, "protocol", "HTTPX",
         "Value should be one of: HTTP, HTTPS, TCP, TERMINATED_HTTPS, UDP, SCTP, PROMETHEUS"),
        (L, "listener", {"loadbalancer_id": lb["id"], "protocol_port": 80}, "protocol", "None",
         "Mandatory field missing."),
    ]
    for path, envelope, body, field, value, reason in cases:
        assert refused(api, path, envelope, body) == (
            f"Invalid input for field/attribute {field}. Value: '{value}'. {reason}")
