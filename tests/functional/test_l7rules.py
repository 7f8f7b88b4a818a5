"""L7 rules through the HTTP API, openstacksdk and the openstack CLI."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.functional.test_fuzz import _fuzz
from tests.functional.test_l7policies import (
    P,
    fault,
    make_policy,
    setup_http,
    status_of,
)
from tests.servers import PROJECT, Client

RULE_KEYS = {
    "id", "type", "compare_type", "key", "value", "invert", "provisioning_status",
    "operating_status", "created_at", "updated_at", "project_id", "tenant_id",
    "admin_state_up", "tags",
}


def setup_policy(api: Client, **fields: Any) -> tuple[dict[str, Any], dict[str, Any],
                                                       dict[str, Any]]:
    lb, listener = setup_http(api)
    return lb, listener, make_policy(api, listener["id"], lb["id"], **fields)


def make_rule(api: Client, policy_id: str, lb_id: str, **fields: Any) -> dict[str, Any]:
    body = {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/x", **fields}
    status, out = api.post(f"{P}/{policy_id}/rules", {"rule": body})
    assert status == 201, out
    api.settle(lb_id)
    return out["rule"]


# --- create / show --------------------------------------------------------------------


def test_create_matches_octavia_shape_and_locks_parents(api):
    lb, listener, pol = setup_policy(api)
    rules = f"{P}/{pol['id']}/rules"
    status, body = api.post(rules, {"rule": {
        "type": "PATH", "compare_type": "STARTS_WITH", "value": "/old", "invert": None,
        "tenant_id": "someone-else"}})
    assert status == 201, body
    rule = body["rule"]
    assert set(rule) == RULE_KEYS
    assert (rule["provisioning_status"], rule["operating_status"]) == ("PENDING_CREATE",
                                                                       "OFFLINE")
    assert rule["key"] is None and rule["invert"] is False and rule["admin_state_up"] is True
    assert rule["project_id"] == rule["tenant_id"] == PROJECT
    assert rule["tags"] == [] and rule["updated_at"] is None
    for path, key in ((f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer"),
                      (f"/v2/lbaas/listeners/{listener['id']}", "listener"),
                      (f"{P}/{pol['id']}", "l7policy")):
        assert status_of(api, path, key) == "PENDING_UPDATE"
    _, shown = api.get(f"{P}/{pol['id']}")
    assert shown["l7policy"]["rules"] == [{"id": rule["id"]}]
    api.settle(lb["id"])
    status, shown = api.get(f"{rules}/{rule['id']}")
    assert status == 200 and shown["rule"]["provisioning_status"] == "ACTIVE"
    assert shown["rule"]["operating_status"] == "ONLINE"
    assert api.get(f"{rules}/{rule['id']}", fields=["id", "value"])[1] == {
        "rule": {"id": rule["id"], "value": "/old"}}
    # The unprefixed alias works too.
    assert api.get(f"/v2/l7policies/{pol['id']}/rules/{rule['id']}")[0] == 200
    rule2 = make_rule(api, pol["id"], lb["id"], type="HEADER", compare_type="REGEX",
                      key="X-Version", value="^v[0-9]+$", invert=True,
                      admin_state_up=False, tags=["t2", "t1"])
    assert (rule2["key"], rule2["invert"], rule2["admin_state_up"], rule2["tags"]) == \
        ("X-Version", True, False, ["t1", "t2"])
    _, shown = api.get(f"{rules}/{rule2['id']}")
    assert shown["rule"]["operating_status"] == "OFFLINE"


# --- per-type validation --------------------------------------------------------------

OK_RULES = [
    {"type": "HOST_NAME", "compare_type": "ENDS_WITH", "value": ".example.com"},
    {"type": "HOST_NAME", "compare_type": "REGEX", "value": r"^www\d\.example$"},
    {"type": "PATH", "compare_type": "CONTAINS", "value": '"/a b"'},
    {"type": "FILE_TYPE", "compare_type": "EQUAL_TO", "value": "jpg"},
    {"type": "FILE_TYPE", "compare_type": "REGEX", "value": "jpe?g"},
    {"type": "HEADER", "compare_type": "EQUAL_TO", "key": "X-A!#$%&'*+-.^_`|~", "value": "v"},
    {"type": "COOKIE", "compare_type": "EQUAL_TO", "key": "session", "value": "abc()"},
    {"type": "COOKIE", "compare_type": "REGEX", "key": "s", "value": "a.*"},
    {"type": "SSL_CONN_HAS_CERT", "compare_type": "EQUAL_TO", "value": "tRuE"},
    {"type": "SSL_VERIFY_RESULT", "compare_type": "EQUAL_TO", "value": "0"},
    {"type": "SSL_DN_FIELD", "compare_type": "STARTS_WITH", "key": "st-1",
     "value": "ST-FIELD1-PREFIX"},
    {"type": "SSL_DN_FIELD", "compare_type": "REGEX", "key": "CN", "value": "^host[0-9]$"},
]


def test_valid_rules_of_every_type(api):
    lb, _, pol = setup_policy(api)
    for rule in OK_RULES:
        made = make_rule(api, pol["id"], lb["id"], **rule)
        assert {k: made[k] for k in rule} == rule


BAD_RULES = [
    ({"type": "HEADER", "compare_type": "EQUAL_TO", "value": "v"},
     "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a key"),
    ({"type": "COOKIE", "compare_type": "EQUAL_TO", "key": "", "value": "v"},
     "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a key"),
    ({"type": "HEADER", "compare_type": "EQUAL_TO", "key": "X A", "value": "v"},
     "Error parsing L7Rule: Invalid characters in key"),
    ({"type": "COOKIE", "compare_type": "EQUAL_TO", "key": "a=b", "value": "v"},
     "Error parsing L7Rule: Invalid characters in key"),
    ({"type": "HEADER", "compare_type": "EQUAL_TO", "key": "X-A", "value": "a b"},
     "Error parsing L7Rule: Invalid characters in header value"),
    ({"type": "COOKIE", "compare_type": "CONTAINS", "key": "s", "value": "a;b"},
     "Error parsing L7Rule: Invalid characters in cookie value"),
    ({"type": "HEADER", "compare_type": "REGEX", "key": "X-A", "value": "(unclosed"},
     "Error parsing L7Rule: Unable to parse regular expression: "),
    ({"type": "PATH", "compare_type": "REGEX", "value": "*bad"},
     "Error parsing L7Rule: Unable to parse regular expression: "),
    ({"type": "HOST_NAME", "compare_type": "EQUAL_TO", "value": "a b"},
     "Error parsing L7Rule: Invalid characters in comparison value"),
    ({"type": "PATH", "compare_type": "STARTS_WITH", "value": ""},
     "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a value"),
    ({"type": "FILE_TYPE", "compare_type": "STARTS_WITH", "value": "jp"},
     "Error parsing L7Rule: Invalid L7 Rule: invalid comparison type for rule type"),
    ({"type": "FILE_TYPE", "compare_type": "REGEX", "value": "[a-"},
     "Error parsing L7Rule: Unable to parse regular expression: "),
    ({"type": "SSL_CONN_HAS_CERT", "compare_type": "EQUAL_TO", "value": "yes"},
     "Error parsing L7Rule: Invalid L7 Rule: L7rule value yes is not a boolean True string."),
    ({"type": "SSL_CONN_HAS_CERT", "compare_type": "EQUAL_TO", "key": "k", "value": "true"},
     'Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_CONN_HAS_CERT does not use the '
     '"key" field.'),
    ({"type": "SSL_CONN_HAS_CERT", "compare_type": "CONTAINS", "value": "true"},
     "Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_CONN_HAS_CERT only supports "
     "the EQUAL_TO compare type."),
    ({"type": "SSL_VERIFY_RESULT", "compare_type": "EQUAL_TO", "value": "-1"},
     "Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_VERIFY_RESULT needs a int "
     "value, which is >= 0"),
    ({"type": "SSL_VERIFY_RESULT", "compare_type": "EQUAL_TO", "value": "²"},
     "needs a int value"),
    ({"type": "SSL_VERIFY_RESULT", "compare_type": "REGEX", "value": "1"},
     "SSL_VERIFY_RESULT only supports the EQUAL_TO compare type."),
    ({"type": "SSL_VERIFY_RESULT", "compare_type": "EQUAL_TO", "key": "k", "value": "1"},
     'SSL_VERIFY_RESULT does not use the "key" field.'),
    ({"type": "SSL_DN_FIELD", "compare_type": "EQUAL_TO", "value": "v"},
     "Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_DN_FIELD needs to specify a "
     "key and a value."),
    ({"type": "SSL_DN_FIELD", "compare_type": "EQUAL_TO", "key": "1cn", "value": "v"},
     "Error parsing L7Rule: Invalid L7 Rule: Invalid L7rule distinguished name field."),
    ({"type": "SSL_DN_FIELD", "compare_type": "REGEX", "key": "CN", "value": "(x"},
     "Error parsing L7Rule: Unable to parse regular expression: "),
]


@pytest.mark.parametrize(("rule", "message"), BAD_RULES)
def test_type_rules_are_enforced(api, rule, message):
    lb, _, pol = setup_policy(api)
    text = fault(api.post(f"{P}/{pol['id']}/rules", {"rule": rule}), 400)
    assert text.startswith(message) or message in text, text
    # Nothing was locked or created.
    assert status_of(api, f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer") == "ACTIVE"
    assert api.get(f"{P}/{pol['id']}/rules")[1]["rules"] == []


@pytest.mark.parametrize(("fields", "named"), [
    ({"type": None}, "type"),
    ({"type": "URL"}, "type"),
    ({"compare_type": "LIKE"}, "compare_type"),
    ({"compare_type": None}, "compare_type"),
    ({"value": None}, "value"),
    ({"value": 5}, "value"),
    ({"value": "v" * 256}, "value"),
    ({"value": "/a\nb"}, "value"),
    ({"key": "k\r"}, "key"),
    ({"key": "k" * 256}, "key"),
    ({"invert": "yes"}, "invert"),
    ({"admin_state_up": 0}, "admin_state_up"),
    ({"tags": [1]}, "tags"),
    ({"l7policy_id": str(uuid.uuid4())}, "l7policy_id"),
    ({"bogus": True}, "bogus"),
])
def test_create_rejects_bad_input(api, fields, named):
    body = {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/x", **fields}
    body = {k: v for k, v in body.items() if v is not None}
    status, out = api.post(f"{P}/{uuid.uuid4()}/rules", {"rule": body})
    assert status == 400, out
    assert named in out["faultstring"]


# --- update ---------------------------------------------------------------------------


def test_update_validates_the_merged_rule(api):
    lb, _, pol = setup_policy(api)
    rule = make_rule(api, pol["id"], lb["id"], key="kept-on-create")
    assert rule["key"] == "kept-on-create"  # Octavia only clears it on update
    path = f"{P}/{pol['id']}/rules/{rule['id']}"

    def put(**fields: Any) -> dict[str, Any]:
        status, body = api.put(path, {"rule": fields})
        assert status == 200, body
        api.settle(lb["id"])
        return body["rule"]

    out = put(value="/new")
    assert (out["value"], out["key"], out["provisioning_status"]) == \
        ("/new", None, "PENDING_UPDATE")
    assert out["updated_at"] is not None
    # Switching to HEADER needs a key, given in the same request or not at all.
    assert fault(api.put(path, {"rule": {"type": "HEADER"}}), 400) == \
        "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a key"
    out = put(type="HEADER", key="X-Env", compare_type="EQUAL_TO", value="prod")
    assert (out["type"], out["key"]) == ("HEADER", "X-Env")
    assert fault(api.put(path, {"rule": {"value": "a b"}}), 400) == \
        "Error parsing L7Rule: Invalid characters in header value"
    # `openstack loadbalancer l7rule unset --key` sends null.
    assert fault(api.put(path, {"rule": {"key": None}}), 400) == \
        "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a key"
    assert "requires a value" in fault(api.put(path, {"rule": {"value": None}}), 400)
    assert "invalid rule type" in fault(api.put(path, {"rule": {"type": None}}), 400)
    out = put(invert=True, admin_state_up=False, tags=["x"])
    assert (out["invert"], out["admin_state_up"], out["tags"]) == (True, False, ["x"])
    out = put(invert=None, admin_state_up=None, tags=None)
    assert (out["invert"], out["admin_state_up"], out["tags"]) == (False, False, [])
    out = put(type="SSL_CONN_HAS_CERT", key=None, value="TRUE")
    assert (out["type"], out["key"], out["compare_type"]) == \
        ("SSL_CONN_HAS_CERT", None, "EQUAL_TO")
    assert "does not use the" in fault(api.put(path, {"rule": {"key": "k"}}), 400)
    # Back to a key-less type: the key is dropped.
    out = put(type="FILE_TYPE", value="png")
    assert out["key"] is None
    for bad, named in (({"type": "X"}, "type"), ({"compare_type": 1}, "compare_type"),
                       ({"value": "a\r"}, "value"), ({"project_id": PROJECT}, "project_id")):
        assert named in fault(api.put(path, {"rule": bad}), 400)
    _, shown = api.get(path)
    assert shown["rule"]["provisioning_status"] == "ACTIVE"


# --- limits, locking, lookups ---------------------------------------------------------


def test_at_most_fifty_rules_per_policy(api):
    lb, listener = setup_http(api)
    rule = {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/x"}
    status, body = api.post(P, {"l7policy": {"listener_id": listener["id"], "action": "REJECT",
                                             "rules": [rule] * 51}})
    assert status == 409 and body["faultstring"].startswith("Too many rules on L7 policy ")
    pol = make_policy(api, listener["id"], lb["id"], rules=[rule] * 50)
    assert len(pol["rules"]) == 50
    assert fault(api.post(f"{P}/{pol['id']}/rules", {"rule": rule}), 409) == \
        f"Too many rules on L7 policy {pol['id']}"
    status, page = api.get(f"{P}/{pol['id']}/rules", limit=20)
    assert len(page["rules"]) == 20 and page["rules_links"][0]["rel"] == "next"
    # A deleted rule makes room once it is gone.
    api.delete(f"{P}/{pol['id']}/rules/{pol['rules'][0]['id']}")
    api.settle(lb["id"])
    make_rule(api, pol["id"], lb["id"])


def test_policy_and_load_balancer_must_be_active(api):
    lb, listener, pol = setup_policy(api)
    rules = f"{P}/{pol['id']}/rules"
    rule = make_rule(api, pol["id"], lb["id"])
    assert api.put(f"{P}/{pol['id']}", {"l7policy": {"name": "busy"}})[0] == 200
    immutable = f"L7Policy {pol['id']} is immutable and cannot be updated."
    assert fault(api.post(rules, {"rule": {"type": "PATH", "compare_type": "EQUAL_TO",
                                           "value": "/y"}}), 409) == immutable
    assert fault(api.put(f"{rules}/{rule['id']}", {"rule": {"value": "/z"}}), 409) == immutable
    assert fault(api.delete(f"{rules}/{rule['id']}"), 409) == immutable
    api.settle(lb["id"])
    # The policy is ACTIVE but its load balancer is busy with something else.
    assert api.put(f"/v2/lbaas/loadbalancers/{lb['id']}", {"loadbalancer": {
        "name": "busy"}})[0] == 200
    lb_immutable = f"Load Balancer {lb['id']} is immutable and cannot be updated."
    assert fault(api.put(f"{rules}/{rule['id']}", {"rule": {"value": "/z"}}), 409) == \
        lb_immutable
    assert fault(api.delete(f"{rules}/{rule['id']}"), 409) == lb_immutable
    api.settle(lb["id"])
    assert api.delete(f"{rules}/{rule['id']}")[0] == 204
    assert status_of(api, f"{rules}/{rule['id']}", "rule") == "PENDING_DELETE"
    for path, key in ((f"/v2/lbaas/listeners/{listener['id']}", "listener"),
                      (f"{P}/{pol['id']}", "l7policy")):
        assert status_of(api, path, key) == "PENDING_UPDATE"
    api.settle(lb["id"])
    assert api.get(f"{rules}/{rule['id']}")[0] == 404
    assert status_of(api, f"{P}/{pol['id']}", "l7policy") == "ACTIVE"
    assert api.get(f"{P}/{pol['id']}")[1]["l7policy"]["rules"] == []


def test_missing_policy_rule_and_wrong_policy_are_404(api):
    lb, listener, pol = setup_policy(api)
    other = make_policy(api, listener["id"], lb["id"])
    rule = make_rule(api, pol["id"], lb["id"])
    missing = str(uuid.uuid4())
    body = {"rule": {"type": "PATH", "compare_type": "EQUAL_TO", "value": "/y"}}
    assert fault(api.post(f"{P}/{missing}/rules", body), 404) == \
        f"L7Policy {missing} not found."
    assert fault(api.get(f"{P}/{missing}/rules"), 404) == f"L7Policy {missing} not found."
    for method in ("GET", "PUT", "DELETE"):
        put = {"rule": {"value": "/z"}} if method == "PUT" else None
        assert fault(api.call(method, f"{P}/{pol['id']}/rules/{missing}", put), 404) == \
            f"L7 Rule {missing} not found."
        assert fault(api.call(method, f"{P}/{other['id']}/rules/{rule['id']}", put), 404) == \
            f"L7 Rule {rule['id']} not found."
    assert status_of(api, f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer") == "ACTIVE"
    # Deleting the policy takes its rules along.
    assert api.delete(f"{P}/{pol['id']}")[0] == 204
    api.settle(lb["id"])
    assert api.get(f"{P}/{pol['id']}/rules/{rule['id']}")[0] == 404


# --- lists ----------------------------------------------------------------------------


def test_list_pagination_sorting_filters_fields_and_tags(api):
    lb, _, pol = setup_policy(api)
    rules = f"{P}/{pol['id']}/rules"
    made = [
        make_rule(api, pol["id"], lb["id"], value="/a", tags=["red", "blue"]),
        make_rule(api, pol["id"], lb["id"], type="HEADER", compare_type="EQUAL_TO",
                  key="X-B", value="b", invert=True, tags=["red"]),
        make_rule(api, pol["id"], lb["id"], type="HOST_NAME", compare_type="EQUAL_TO",
                  value="c.example", admin_state_up=False),
    ]
    by_value = {r["value"]: r["id"] for r in made}

    def values(**params: Any) -> list[str]:
        status, body = api.get(rules, **params)
        assert status == 200, body
        return [r["value"] for r in body["rules"]]

    assert sorted(values()) == ["/a", "b", "c.example"]
    assert values(sort="value:desc") == ["c.example", "b", "/a"]
    assert values(sort_key="type") == ["b", "c.example", "/a"]
    assert values(value="b") == ["b"]
    assert values(rule_value="c.example") == ["c.example"]  # openstacksdk's spelling
    assert values(type="PATH") == ["/a"]
    assert values(compare_type="EQUAL_TO", sort="value") == ["b", "c.example"]
    assert values(key="X-B", invert="true") == ["b"]
    assert values(admin_state_up="0") == ["c.example"]
    assert values(id=by_value["/a"]) == ["/a"]
    assert values(l7policy_id=pol["id"], project_id=PROJECT, sort="value") == \
        ["/a", "b", "c.example"]
    assert values(tags="red", sort="value") == ["/a", "b"]
    assert values(**{"tags-any": "blue"}) == ["/a"]
    assert values(**{"not-tags": "red"}) == ["c.example"]
    assert values(**{"not-tags-any": "blue", "sort": "value"}) == ["b", "c.example"]
    _, page1 = api.get(rules, limit=2, sort="value")
    assert [r["value"] for r in page1["rules"]] == ["/a", "b"]
    nxt = [x["href"] for x in page1["rules_links"] if x["rel"] == "next"]
    assert len(nxt) == 1 and "/rules?" in nxt[0]
    _, page2 = api.get(rules, limit=2, sort="value", marker=by_value["b"])
    assert [r["value"] for r in page2["rules"]] == ["c.example"]
    assert [x["rel"] for x in page2["rules_links"]] == ["previous"]
    _, body = api.get(rules, fields=["id", "type"])
    assert all(set(r) == {"id", "type"} for r in body["rules"])
    assert api.get(rules, name="x")[0] == 400  # rules have no name
    assert api.get(rules, invert="maybe")[0] == 400
    # Rules of other policies never show up.
    other = make_policy(api, pol["listener_id"], lb["id"])
    make_rule(api, other["id"], lb["id"], value="/other")
    assert "/other" not in values()


# --- clients --------------------------------------------------------------------------


def test_sdk_create_show_list_update_delete(sdk, api):
    lb, _, pol = setup_policy(api)
    rule = sdk.create_l7_rule(pol["id"], type="HEADER", compare_type="STARTS_WITH",
                              key="X-Test", rule_value="abc", tags=["sdk"])
    assert rule.provisioning_status == "PENDING_CREATE" and rule.rule_value == "abc"
    api.settle(lb["id"])
    got = sdk.get_l7_rule(rule.id, pol["id"])
    assert (got.key, got.rule_value, got.invert, got.is_admin_state_up) == \
        ("X-Test", "abc", False, True)
    assert [r.id for r in sdk.l7_rules(pol["id"])] == [rule.id]
    assert [r.id for r in sdk.l7_rules(pol["id"], rule_value="abc", type="HEADER",
                                       tags="sdk")] == [rule.id]
    assert list(sdk.l7_rules(pol["id"], rule_value="nope")) == []
    assert sdk.find_l7_rule(rule.id, pol["id"]).id == rule.id
    updated = sdk.update_l7_rule(rule.id, pol["id"], rule_value="def", invert=True)
    assert (updated.rule_value, updated.invert, updated.provisioning_status) == \
        ("def", True, "PENDING_UPDATE")
    api.settle(lb["id"])
    sdk.delete_l7_rule(rule.id, pol["id"])
    api.settle(lb["id"])
    assert sdk.find_l7_rule(rule.id, pol["id"]) is None


def test_cli_create_show_list_set_unset_delete(cli, api):
    lb, _, pol = setup_policy(api, name="cli-rules-pol")
    rule = cli("loadbalancer", "l7rule", "create", "--type", "COOKIE", "--compare-type",
               "EQUAL_TO", "--key", "session", "--value", "abc", "--invert", "--tag", "a",
               "cli-rules-pol")
    assert rule["provisioning_status"] == "PENDING_CREATE" and rule["invert"] is True
    api.settle(lb["id"])
    cli.run("loadbalancer", "l7rule", "set", "--value", "xyz", "--tag", "b", pol["id"],
            rule["id"])
    shown = cli("loadbalancer", "l7rule", "show", pol["id"], rule["id"])
    assert shown["value"] == "xyz" and shown["provisioning_status"] == "PENDING_UPDATE"
    tags = shown["tags"].split("\n") if isinstance(shown["tags"], str) else shown["tags"]
    assert sorted(tags) == ["a", "b"]
    api.settle(lb["id"])
    cli.run("loadbalancer", "l7rule", "unset", "--invert", "--all-tag", pol["id"], rule["id"])
    shown = cli("loadbalancer", "l7rule", "show", pol["id"], rule["id"])
    assert shown["invert"] is False and not shown["tags"]
    api.settle(lb["id"])
    # Clearing the key of a COOKIE rule is refused with Octavia's message.
    proc = cli.run("loadbalancer", "l7rule", "unset", "--key", pol["id"], rule["id"],
                   check=False)
    assert proc.returncode != 0 and "requires a key" in proc.stderr
    listed = cli("loadbalancer", "l7rule", "list", "cli-rules-pol")
    assert [r["id"] for r in listed] == [rule["id"]]
    cli.run("loadbalancer", "l7rule", "delete", pol["id"], rule["id"])
    api.settle(lb["id"])
    assert cli("loadbalancer", "l7rule", "list", pol["id"]) == []


# --- fuzzing: no input gets a 5xx, a refused call changes nothing ----------------------


def test_fuzz_create(api):
    lb, _, pol = setup_policy(api)

    def cleanup(out: Any) -> None:
        api.settle(lb["id"])
        api.delete(f"{P}/{pol['id']}/rules/{out['rule']['id']}")
        api.settle(lb["id"])

    _fuzz(api, "POST", f"{P}/{pol['id']}/rules", "rule",
          {"type": "HEADER", "compare_type": "REGEX", "key": "X-A", "value": "^a+$",
           "invert": False, "admin_state_up": True, "tags": ["a"]}, cleanup)


def test_fuzz_update(api):
    lb, _, pol = setup_policy(api)
    rule = make_rule(api, pol["id"], lb["id"], type="SSL_DN_FIELD", compare_type="EQUAL_TO",
                     key="CN", value="host")
    _fuzz(api, "PUT", f"{P}/{pol['id']}/rules/{rule['id']}", "rule",
          {"type": "COOKIE", "compare_type": "CONTAINS", "key": "s", "value": "v",
           "invert": True, "tags": ["b"]}, lambda out: api.settle(lb["id"]))
