"""Octavia's RBAC models as the conformance suite (octavia-tempest-plugin 3.5.0, its
`RBAC_test_type`) expects them: keystone_default_roles from our defaults, advanced and
owner_or_admin from the files in etc/policy, decided without a server."""

from __future__ import annotations

import functools
import pathlib

import pytest
import yaml
from oslo_config import cfg
from oslo_policy import opts
from oslo_policy import policy as oslo_policy

from amphorae.api import policy
from amphorae.api.context import RequestContext

POLICY_DIR = pathlib.Path(__file__).resolve().parents[2] / "etc" / "policy"
FILES = {"advanced": POLICY_DIR / "advanced.yaml",
         "owner_or_admin": POLICY_DIR / "owner_or_admin.yaml"}
MODELS = ("keystone_default_roles", *FILES)


@functools.cache
def enforcer(model: str) -> oslo_policy.Enforcer:
    conf = cfg.ConfigOpts()
    conf([], project="amphorae-unit-test", default_config_files=[])
    if model in FILES:  # set_defaults would change every ConfigOpts' default
        for group, options in opts.list_opts():
            conf.register_opts(options, group=group)
        conf.set_override("policy_file", str(FILES[model]), group="oslo_policy")
    return policy.make_enforcer(conf)


def test_etc_policy_holds_one_file_per_model():
    assert sorted(POLICY_DIR.iterdir()) == sorted(FILES.values())


@pytest.mark.parametrize("model", sorted(FILES))
def test_a_file_changes_only_rules_we_register(model):
    """A misspelt name would be a rule nothing asks for: the model would silently be
    the defaults. A rule equal to its default is noise (oslo.policy warns of it)."""
    rules = yaml.safe_load(FILES[model].read_text())
    defaults = {r.name: r.check_str for r in policy.default_rules()}
    assert rules and set(rules) <= set(defaults)
    assert not {name for name, check in rules.items() if defaults[name] == check}
    enf = enforcer(model)
    assert {name: r.check_str for name, r in enf.file_rules.items()} == rules
    assert enf.check_rules()  # every rule:… it names exists, no rule refers to itself


# --- the suite's personas -------------------------------------------------------------

# LoadBalancerBaseTest.credentials per RBAC_test_type: each persona in a project of its
# own, with the roles Keystone puts in its token (admin implies member, member reader).
ADMIN, MEMBER, READER = ("admin", "member", "reader"), ("member", "reader"), ("reader",)
PERSONAS: dict[str, dict[str, tuple[str, ...]]] = {
    "keystone_default_roles": {
        "admin": ADMIN, "primary": MEMBER, "lb_admin": ADMIN, "lb_observer": READER,
        "lb_global_observer": READER, "lb_member": MEMBER, "lb_member2": MEMBER,
        "not_member": ("a-random-role",)},
    "advanced": {
        "admin": ADMIN, "primary": MEMBER, "lb_admin": ("load-balancer_admin",),
        "lb_observer": ("load-balancer_observer", *READER),
        "lb_global_observer": ("load-balancer_global_observer", *READER),
        "lb_member": ("load-balancer_member", *MEMBER),
        "lb_member2": ("load-balancer_member", *MEMBER)},
    "owner_or_admin": {
        "admin": ADMIN, "primary": MEMBER, "lb_admin": ("load-balancer_admin",),
        "lb_member": ("load-balancer_member",), "lb_member2": ("load-balancer_member",)},
}
OWNER = "lb_member"  # the suite's objects are lb_member's

# Who may do what, by the suite's `expected_allowed` lists (tests/api/v2/*.py). Where the
# suite checks only refusals (creates, updates, deletes) the sets are Octavia's own
# answer, so they are exact here too. A check is (resource, action, target project):
# "own" is the caller's project, OWNER lb_member's; ("list", resource) is a listing
# without a project filter: every project's, else the caller's own.
CHILDREN = ("listener", "pool", "member", "healthmonitor", "l7policy", "l7rule")
ANY_LIST = [("list", r) for r in ("loadbalancer", "listener", "pool", "healthmonitor",
                                  "l7policy")] + [
    ("provider", "get_all", "own"), ("flavor", "get_all", "own"),
    ("flavor", "get_one", "own"), ("availability-zone", "get_all", "own"),
    ("availability-zone", "get_one", "own")]
SHOW = [("loadbalancer", a, OWNER) for a in ("get_one", "get_stats", "get_status")] + [
    (r, "get_one", OWNER) for r in CHILDREN] + [
    ("listener", "get_stats", OWNER), ("member", "get_all", OWNER),
    ("l7rule", "get_all", OWNER)]
CHANGE = [("loadbalancer", a, OWNER) for a in ("post", "put", "delete")] + [
    (r, a, OWNER) for r in CHILDREN for a in ("post", "put", "delete")]
ADMINS_ONLY = [("loadbalancer", "put_failover", OWNER)] + [
    ("amphora", a, "own") for a in ("get_all", "get_one", "put_config", "put_failover")] + [
    (r, a, "own") for r in ("flavor", "availability-zone") for a in ("post", "put", "delete")
] + [(r, a, "own") for r in ("flavor-profile", "availability-zone-profile")
     for a in ("get_all", "get_one", "post", "put", "delete")] + [
    ("provider-flavor", "get_all", "own"), ("provider-availability-zone", "get_all", "own")]
GLOBAL = [(r, "get_all-global", "own") for r in ("loadbalancer", "listener", "pool",
                                                 "healthmonitor", "l7policy")]


def expected(model: str) -> list[tuple[list[tuple[str, ...]], set[str]]]:
    """(checks, the personas each of them admits) of ``model``."""
    personas = set(PERSONAS[model])
    admins = {"admin", "lb_admin"}
    owners = admins | {OWNER}
    global_observer = {"lb_global_observer"} if model == "advanced" else set()
    refused_everything = {"keystone_default_roles": {"not_member"},
                          "advanced": {"primary"}, "owner_or_admin": set()}[model]
    return [(ANY_LIST, personas - refused_everything),
            (SHOW, owners | global_observer),
            (CHANGE, owners),
            (ADMINS_ONLY, admins),
            (GLOBAL, admins | global_observer)]


def allowed(model: str, persona: str, check: tuple[str, ...]) -> bool:
    caller = RequestContext(project_id=f"project-of-{persona}", user_id=persona,
                            roles=list(PERSONAS[model][persona]))

    def decide(resource: str, action: str, target: str) -> bool:
        project = caller.project_id if target == "own" else f"project-of-{target}"
        return bool(enforcer(model).enforce(f"{policy.PREFIX}:{resource}:{action}",
                                            {"project_id": project}, caller.policy_creds()))

    if check[0] == "list":  # as api/v2/common.scoped_list decides
        return decide(check[1], "get_all-global", "own") or decide(check[1], "get_all", "own")
    return decide(*check)


@pytest.mark.parametrize("model", MODELS)
def test_the_conformance_suites_personas(model):
    decided, wanted = {}, {}
    for checks, personas in expected(model):
        for check in checks:
            decided[check] = {p for p in PERSONAS[model] if allowed(model, p, check)}
            wanted[check] = personas
    assert decided == wanted
