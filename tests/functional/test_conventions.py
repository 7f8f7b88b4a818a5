"""API-wide conventions: versions, path aliases, errors, content negotiation, listing."""

from __future__ import annotations

import json
import pathlib
import urllib.parse

import pytest

from tests.servers import PUBLIC_SUBNET

SAMPLES = pathlib.Path(__file__).resolve().parents[3] / "shared/docs/octavia-api-samples"


def test_versions_match_octavia(api):
    status, body = api.get("/")
    assert status == 200
    sample = json.loads((SAMPLES / "00_versions.json").read_text())["response"]["body"]
    assert [v["id"] for v in body["versions"]] == [v["id"] for v in sample["versions"]]
    assert [v["status"] for v in body["versions"]] == [v["status"] for v in sample["versions"]]
    assert [v["updated"] for v in body["versions"]] == [v["updated"] for v in sample["versions"]]
    assert body["versions"][-1]["links"] == [{"href": api.url + "/v2", "rel": "self"}]


@pytest.mark.parametrize("prefix", ["/v2/lbaas", "/v2.0/lbaas", "/v2", "/v2.0"])
def test_path_aliases_and_json_suffix(api, prefix):
    lb = api.create_lb(name="alias")
    for suffix in ("", ".json", "/"):
        status, body = api.get(f"{prefix}/loadbalancers/{lb['id']}{suffix}")
        assert status == 200, (prefix, suffix, body)
        assert body["loadbalancer"]["id"] == lb["id"]


def test_error_bodies(api):
    status, body = api.get("/v2/lbaas/nothing-here")
    assert status == 404 and body["faultcode"] == "Client" and body["debuginfo"] is None
    status, body = api.call("PATCH", "/v2/lbaas/loadbalancers")
    assert status == 405 and body["faultcode"] == "Client"
    status, body = api.call("GET", "/v2/lbaas/loadbalancers", headers={"Accept": "text/html"})
    assert status == 406
    assert body["errors"][0]["detail"] == "Only content type application/json is accepted."
    resp = api.http.get(api.url + "/v2/lbaas/loadbalancers")
    assert resp.headers["x-openstack-request-id"].startswith("req-")
    # What Octavia refuses while routing, before its controller, pecan answers.
    assert api.get("/v2/lbaas/loadbalancers", limit="x") == (400, {
        "code": 400, "title": "Bad Request",
        "description": "Supplied pagination limit 'x' is not valid."})
    assert api.get("/v2/lbaas/loadbalancers", sort="name:up")[1]["code"] == 400
    assert api.get("/v2/lbaas/loadbalancers", sort="name:DESC")[0] == 200
    missing = "f306d1d2-cb1d-48fd-9f01-6b8eae891d2f"
    for path in (f"/v2/lbaas/pools/{missing}/members",
                 f"/v2/lbaas/pools/{missing}/members/{missing}",
                 f"/v2/lbaas/l7policies/{missing}/rules"):
        assert api.get(path)[1]["description"].endswith(f"{missing} not found."), path


@pytest.mark.parametrize("raw,needle", [
    (b"{", "Malformed JSON"),
    (b"[]", "loadbalancer"),
    (b'{"loadbalancer": []}', "loadbalancer"),
    (b'{"loadbalancer": {}, "x": 1}', "x"),
    (b'{"loadbalancer": {"vip_subnet_id": 5}}', "vip_subnet_id"),
    (b'{"loadbalancer": {"vip_subnet_id": "nope"}}', "vip_subnet_id"),
    (b'{"loadbalancer": {"vip_subnet_id": "%s", "name": "%s"}}' % (
        PUBLIC_SUBNET.encode(), b"n" * 256), "name"),
    (b'{"loadbalancer": {"vip_subnet_id": "%s", "admin_state_up": "yes"}}' % (
        PUBLIC_SUBNET.encode()), "admin_state_up"),
    (b'{"loadbalancer": {"vip_subnet_id": "%s", "vip_address": "1.2.3"}}' % (
        PUBLIC_SUBNET.encode()), "vip_address"),
    (b'{"loadbalancer": {"vip_subnet_id": "%s", "tags": "a"}}' % (
        PUBLIC_SUBNET.encode()), "tags"),
    (b'{"loadbalancer": {"vip_subnet_id": "%s", "color": "red"}}' % (
        PUBLIC_SUBNET.encode()), "color"),
    (b'{"loadbalancer": {"vip_subnet_id": "f306d1d2-cb1d-48fd-9f01-6b8eae891d2f"}}',
     "f306d1d2-cb1d-48fd-9f01-6b8eae891d2f"),
])
def test_bad_bodies_are_400_naming_the_field(api, raw, needle):
    status, body = api.call("POST", "/v2/lbaas/loadbalancers", raw=raw)
    assert status == 400, body
    assert needle in body["faultstring"], body


def test_vip_address_conflict_is_409(api):
    lb = api.create_lb()
    status, body = api.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "vip_subnet_id": PUBLIC_SUBNET, "vip_address": lb["vip_address"]}})
    assert status == 409, body


def _page_through(api, path, **params):
    seen, pages = [], 0
    status, body = api.get(path, **params)
    while True:
        assert status == 200, body
        pages += 1
        seen += body["loadbalancers"]
        nxt = [link["href"] for link in body["loadbalancers_links"] if link["rel"] == "next"]
        if not nxt:
            return seen, pages
        url = urllib.parse.urlsplit(nxt[0])
        status, body = api.get(url.path, **dict(urllib.parse.parse_qsl(url.query)))


def test_pagination_sorting_filters_fields_tags(api):
    tag = f"page-{api.server.backend}"
    made = [api.create_lb(name=f"pg-{i:02d}", tags=[tag, "odd" if i % 2 else "even"])
            for i in range(7)]
    seen, pages = _page_through(api, "/v2/lbaas/loadbalancers", limit=3, tags=tag)
    assert [x["id"] for x in seen] == [x["id"] for x in made] and pages == 3
    seen, _ = _page_through(api, "/v2/lbaas/loadbalancers", limit=2, tags=tag,
                            sort="name:desc")
    assert [x["name"] for x in seen] == [f"pg-{i:02d}" for i in reversed(range(7))]
    _, body = api.get("/v2/lbaas/loadbalancers", tags=tag, sort_key="name", sort_dir="desc",
                      limit=2, marker=made[3]["id"])
    assert [x["name"] for x in body["loadbalancers"]] == ["pg-02", "pg-01"]
    assert [link["rel"] for link in body["loadbalancers_links"]] == ["previous", "next"]
    _, body = api.get("/v2/lbaas/loadbalancers", tags=tag, sort="name:asc", limit=2,
                      marker=made[1]["id"])
    previous, _ = (link["href"] for link in body["loadbalancers_links"])
    # As Octavia writes them: the sort as given, the first row as the marker, reversed.
    assert "sort=name:asc" in previous and f"marker={made[2]['id']}" in previous
    assert "page_reverse=True" in previous
    _, body = api.get("/v2/lbaas/loadbalancers", name="pg-03", fields=["id", "name"])
    assert body["loadbalancers"] == [{"id": made[3]["id"], "name": "pg-03"}]
    _, body = api.get("/v2/lbaas/loadbalancers", **{"tags": f"{tag},odd"})
    assert len(body["loadbalancers"]) == 3
    _, body = api.get("/v2/lbaas/loadbalancers", **{"tags-any": "odd,even", "tags": tag})
    assert len(body["loadbalancers"]) == 7
    _, body = api.get("/v2/lbaas/loadbalancers", **{"not-tags-any": "odd", "tags": tag})
    assert {x["name"] for x in body["loadbalancers"]} == {"pg-00", "pg-02", "pg-04", "pg-06"}
    _, body = api.get("/v2/lbaas/loadbalancers", **{"not-tags": f"{tag},odd", "tags": tag})
    assert len(body["loadbalancers"]) == 4
    _, body = api.get("/v2/lbaas/loadbalancers", vip_address=made[0]["vip_address"])
    assert [x["id"] for x in body["loadbalancers"]] == [made[0]["id"]]
    _, body = api.get("/v2/lbaas/loadbalancers", admin_state_up="false", tags=tag)
    assert body["loadbalancers"] == []


@pytest.mark.parametrize("params,needle", [
    ({"limit": "x"}, "limit"), ({"sort": "bogus"}, "bogus"), ({"sort": "name:up"}, "up"),
    ({"marker": "f306d1d2-cb1d-48fd-9f01-6b8eae891d2f"}, "marker"),
    ({"color": "red"}, "invalid"), ({"admin_state_up": "maybe"}, "invalid"),
])
def test_bad_list_parameters_are_400(api, params, needle):
    status, body = api.get("/v2/lbaas/loadbalancers", **params)
    assert status == 400 and needle in (body.get("faultstring") or body["description"]), body
