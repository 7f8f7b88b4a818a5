"""The dashboard as a real `amphorae api` serves it: the page and its modules under
``/dashboard/``, nothing else; and, in a real headless Chromium (tests/browser.py)
against an API checking tokens with a real Keystone, the page asks for a token and the
API's policy decides what a persona's token may see and do through it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from amphorae.api import dashboard
from tests import browser, servers
from tests import keystone as ks

TOKEN_KEY = "amphorae.dashboard.token"  # api.js


@pytest.fixture(scope="module")
def noauth_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.running_api("sqlite", tmp_path_factory.mktemp("api-dash"), "dash") as srv:
        yield srv


@pytest.fixture(scope="module")
def keystone_api(keystone: ks.Keystone,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """The API checking tokens against the shared Keystone (its catalog is left alone:
    the page sends tokens, it never looks an endpoint up)."""
    with servers.running_api("sqlite", tmp_path_factory.mktemp("api-dash-ks"), "dashks",
                             keystone.authtoken_config()) as srv:
        yield srv


def test_the_page_and_its_files_are_served(noauth_api: servers.Server) -> None:
    url = noauth_api.url
    moved = requests.get(f"{url}/dashboard?interval=1", allow_redirects=False, timeout=5)
    assert (moved.status_code, moved.headers["Location"]) == (301, "/dashboard/?interval=1")
    for name, path in dashboard.FILES.items():
        got = requests.get(f"{url}/dashboard/{name}", timeout=5)
        assert got.status_code == 200, name
        assert got.headers["Content-Type"] == dashboard.TYPES[path.suffix], name
        assert got.content == path.read_bytes(), name
        # The page holds a token: only its own scripts run, it talks to its own origin.
        assert got.headers["Content-Security-Policy"] == dashboard.HEADERS[
            "Content-Security-Policy"], name
    page = requests.get(f"{url}/dashboard/", timeout=5)
    assert page.content == (dashboard.STATIC / "index.html").read_bytes()


@pytest.mark.parametrize("path", [
    "/dashboard/__init__.py", "/dashboard/static", "/dashboard/nothing.js",
    "/dashboard/..%2F__init__.py", "/dashboard/%2e%2e/dashboard/__init__.py",
    "/dashboard/static/app.js",
])
def test_nothing_else_is_served(noauth_api: servers.Server, path: str) -> None:
    got = requests.get(noauth_api.url + path, timeout=5)
    assert got.status_code == 404, got.text


def _call(srv: servers.Server, token: str, method: str, path: str,
          body: Any = None) -> dict[str, Any]:
    resp = requests.request(method, srv.url + path, json=body, timeout=10,
                            headers={"X-Auth-Token": token})
    assert resp.ok, resp.text
    return resp.json() if resp.content else {}


def _paste_token(page: browser.Page, token: str) -> None:
    page.evaluate(f"document.getElementById('token').value = {json.dumps(token)}")
    page.click("#auth button[type=submit]")


def test_under_keystone_the_page_takes_a_token_and_the_policy_decides(
        keystone: ks.Keystone, keystone_api: servers.Server, tmp_path: Path) -> None:
    srv = keystone_api
    # The files are public, the API is not.
    assert requests.get(srv.url + "/dashboard/", timeout=5).status_code == 200
    assert requests.get(srv.url + "/dashboard/app.js", timeout=5).status_code == 200
    assert requests.get(srv.url + "/v2/lbaas/loadbalancers", timeout=5).status_code == 401

    member = keystone.token("project-a-member")
    lb = _call(srv, member, "POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {
        "name": "dash-ks", "vip_subnet_id": servers.PUBLIC_SUBNET, "listeners": [{
            "protocol": "HTTP", "protocol_port": 80, "default_pool": {
                "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "members": [
                    {"name": "web1", "address": "198.18.64.10", "protocol_port": 80}]}}]}})
    lb_id = lb["loadbalancer"]["id"]
    servers.settle_db(srv.db_url, lb_id)
    pool_id = lb["loadbalancer"]["pools"][0]["id"]
    web1 = _call(srv, member, "GET", f"/v2/lbaas/pools/{pool_id}/members")["members"][0]
    toggle = f'button[data-action="member-toggle"][data-id="{web1["id"]}"]'

    with browser.chromium(secrets.token_hex(3)) as page:
        page.goto(srv.url + "/dashboard/?interval=1")
        page.wait_text("401: the API wants a Keystone token", selector="#lb-list")

        # A reader of project A sees its load balancer; changing it is refused.
        reader = keystone.token("project-a-reader")
        _paste_token(page, reader)
        page.wait_text("dash-ks", "web1", "Disable", selector="#lb-list")
        assert page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})") == reader
        assert page.evaluate("document.getElementById('token').value") == ""
        page.wait_text("403: listing amphorae is for administrators", selector="#amphorae")
        page.click(toggle)
        page.wait_text("403: Policy does not allow", selector="#notice")
        assert _call(srv, member, "GET", f"/v2/lbaas/pools/{pool_id}/members/{web1['id']}")[
            "member"]["admin_state_up"] is True
        page.screenshot(tmp_path / "dashboard-5-keystone-reader-refused.png")

        # A member of project A may: the same button, another token.
        _paste_token(page, member)
        assert page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})") == member
        page.click(toggle)
        page.wait_text("Member disabled.", selector="#notice")
        assert _call(srv, member, "GET", f"/v2/lbaas/pools/{pool_id}/members/{web1['id']}")[
            "member"]["admin_state_up"] is False

        # Forgotten, the token is gone from the tab and the API asks again.
        page.click("#forget")
        page.wait_text("401: the API wants a Keystone token", selector="#lb-list")
        assert page.evaluate(f"sessionStorage.getItem({json.dumps(TOKEN_KEY)})") is None
        assert page.errors == [], page.errors
