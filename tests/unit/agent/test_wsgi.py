"""The agent's WSGI application (agent/wsgi.py): routing, the framework's own answers and
the error shape, through a WSGI test client. Every answer is in the agent's JSON shape."""

from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

import falcon.testing
import pytest

from amphorae.agent import wsgi


class Named:
    """Answers which route matched and with what fields."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_get(self, req: wsgi.Request, resp: wsgi.Response, **fields: str) -> None:
        resp.media = {"route": self.name, **fields}

    def on_put(self, req: wsgi.Request, resp: wsgi.Response, **fields: str) -> None:
        if req.body == b"boom":
            raise RuntimeError("boom")
        if req.body == b"refuse":
            raise wsgi.AgentError(400, "Invalid request", "refused")
        resp.status = 202
        resp.etag = "abc"
        resp.media = {"body": req.body.decode()}


@pytest.fixture
def client() -> falcon.testing.TestClient:
    app = wsgi.App(max_body=10)
    app.add_route("/", Named("root"))
    app.add_route("/a/{x}/{y}", Named("fields"))
    app.add_route("/a/{x}/fixed", Named("literal"))
    app.add_route("/a/{x}/certs/{name}", Named("certs"))
    app.add_route("/a/{x}/{y}/fixed", Named("deep"))
    return falcon.testing.TestClient(app)


def test_a_literal_segment_wins_over_a_field_at_its_level(client) -> None:
    assert client.simulate_get("/a/1/fixed").json == {"route": "literal", "x": "1"}
    assert client.simulate_get("/a/1/2").json == {"route": "fields", "x": "1", "y": "2"}
    assert client.simulate_get("/a/1/certs/fixed").json == {
        "route": "certs", "x": "1", "name": "fixed"}
    assert client.simulate_get("/a/1/2/fixed").json == {
        "route": "deep", "x": "1", "y": "2"}


def test_paths_as_the_agent_always_matched_them(client) -> None:
    assert client.simulate_get("/").json == {"route": "root"}
    assert client.simulate_get("/a/1/2/").json["route"] == "fields"  # one slash ignored
    assert client.simulate_get("/a/1/2//").status_code == 404
    assert client.simulate_get("//a/1/2").json["route"] == "fields"
    assert client.simulate_get("/a//2").json == {"route": "fields", "x": "", "y": "2"}
    assert client.simulate_get("/a/é/2").json["x"] == "é"
    answer = client.simulate_get("/nothing")
    assert answer.status_code == 404
    assert answer.json == {"message": "404 Not Found", "details": ""}


def test_methods(client) -> None:
    answer = client.simulate_post("/a/1/2")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, PUT, OPTIONS"
    assert answer.json == {"message": "405 Method Not Allowed", "details": ""}
    options = client.simulate_options("/a/1/2")
    assert (options.status_code, options.headers["allow"], options.text) == (200, "GET, PUT",
                                                                             "")
    head = client.simulate_head("/a/1/2")
    assert head.status_code == 405 and head.text == ""


def test_bodies_and_answers(client) -> None:
    answer = client.simulate_put("/a/1/2", body=b"hello")
    assert answer.status_code == 202
    assert answer.headers["etag"] == '"abc"'
    assert answer.headers["content-type"] == "application/json"
    assert answer.json == {"body": "hello"}
    too_big = client.simulate_put("/nothing", body=b"x" * 11)  # read before routing
    assert too_big.status_code == 413
    assert too_big.json == {"message": "Request too large", "details": "limit 10 bytes"}



def test_a_bad_content_length_is_a_400_naming_it() -> None:
    """Called directly: the test client's WSGI validator refuses such a request itself."""
    app = wsgi.App(max_body=10)
    app.add_route("/a/{x}/{y}", Named("fields"))
    started: list[str] = []
    for length, must in (("abc", "a number"), ("-1", "a positive number")):
        environ = {"REQUEST_METHOD": "PUT", "PATH_INFO": "/a/1/2", "CONTENT_LENGTH": length}
        setup_testing_defaults(environ)
        body = b"".join(app(environ, lambda status, headers: started.append(status)))
        assert started.pop() == "400 Bad Request"
        details = json.loads(body)["details"]
        assert "Content-Length" in details and details.endswith(f"must be {must}.")


def test_errors_keep_the_agent_shape_and_no_traceback(client) -> None:
    refused = client.simulate_put("/a/1/2", body=b"refuse")
    assert refused.status_code == 400
    assert refused.json == {"message": "Invalid request", "details": "refused"}
    failed = client.simulate_put("/a/1/2", body=b"boom")
    assert failed.status_code == 500
    assert failed.json == {"message": "Internal error", "details": "RuntimeError: boom"}
