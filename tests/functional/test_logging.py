"""The API's access log and the JSON log format, read from a real `amphorae api`'s
standard error (tests/servers.py writes it to api.log)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable

import pytest
import requests

from tests import servers


def log_of(server: servers.Server) -> str:
    return (server.config_file.parent / "api.log").read_text(errors="replace")


def line_with(server: servers.Server, text: str, timeout: float = 5) -> str:
    """The log line that contains ``text`` (written when the response is; waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in log_of(server).splitlines() if text in line]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, f"no line with {text!r}:\n{log_of(server)[-3000:]}"
        time.sleep(0.05)


def call(server: servers.Server, method: str, path: str, **headers: str) -> str:
    resp = requests.request(method, server.url + path, timeout=10,
                            headers={"X-Project-Id": servers.PROJECT, **headers})
    return resp.headers["x-openstack-request-id"]


ACCESS = re.compile(r" \d+ INFO amphorae\.api\.access: (\S+) (\S+) (\d{3}) ([\d.]+) ms "
                    r"project=(\S+) request_id=(req-[0-9a-f-]+)$")


@pytest.mark.parametrize(("method", "path", "status", "headers"), [
    ("GET", "/v2/lbaas/loadbalancers?limit=2&name=web", 200, {}),
    ("GET", "/v2/lbaas/loadbalancers/5d0c4b2e-9a1f-4e3b-8c7d-6f5a4b3c2d1e", 404, {}),
    ("DELETE", "/v2/lbaas/pools", 405, {}),
    ("GET", "/v2/lbaas/listeners", 406, {"Accept": "text/html"}),
])
def test_every_call_is_one_access_line(server, method, path, status, headers):
    request_id = call(server, method, path, **headers)
    found = ACCESS.search(line_with(server, request_id))
    assert found is not None, line_with(server, request_id)
    assert found.group(1, 2, 3, 5, 6) == (method, path, str(status), servers.PROJECT,
                                          request_id)
    assert float(found.group(4)) < 10_000


@pytest.fixture(scope="module")
def json_server(tmp_path_factory):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api("sqlite", tmp_path_factory.mktemp("api-json"), f"json{worker}",
                             "[DEFAULT]\nlog_format = json\n") as srv:
        yield srv


def json_line(server: servers.Server, check: Callable[[dict], bool]) -> dict:
    deadline = time.monotonic() + 5
    while True:
        for line in log_of(server).splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if check(record):
                    return record
        assert time.monotonic() < deadline, log_of(server)[-3000:]
        time.sleep(0.05)


def test_json_lines_carry_the_request_id_and_their_fields(json_server):
    request_id = call(json_server, "GET", "/v2/lbaas/pools?limit=1")
    record = json_line(json_server, lambda r: r.get("request_id") == request_id)
    assert record["logger"] == "amphorae.api.access" and record["level"] == "INFO"
    assert (record["method"], record["path"], record["status"], record["project_id"]) == (
        "GET", "/v2/lbaas/pools?limit=1", 200, servers.PROJECT)
    assert record["message"].startswith("GET /v2/lbaas/pools?limit=1 200 ")
    assert isinstance(record["duration_ms"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", record["time"])
    # Every line the service writes is one JSON object (gunicorn's own lines aside).
    ours = [line for line in log_of(json_server).splitlines() if "amphorae." in line]
    assert ours and all(line.startswith("{") for line in ours)
