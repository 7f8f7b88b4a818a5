"""The policy defaults: `amphorae policy sample` and how they decide, without a server."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from oslo_config import cfg

from amphorae.api import policy
from amphorae.api.context import RequestContext

PROJECT, OTHER = "project-a", "project-b"


def test_policy_sample_lists_every_default_as_yaml():
    out = subprocess.run([sys.executable, "-m", "amphorae.cli", "policy", "sample"],
                         capture_output=True, text=True, check=True).stdout
    uncommented = "\n".join(line[1:] for line in out.splitlines() if line.startswith('#"'))
    rules = yaml.safe_load(uncommented)
    assert rules == {r.name: r.check_str for r in policy.default_rules()}
    assert rules["os_load-balancer_api:loadbalancer:get_all-global"] == \
        "rule:load-balancer:read-global"


@pytest.fixture(scope="module")
def enforcer():
    conf = cfg.ConfigOpts()
    conf([], project="amphorae-unit-test", default_config_files=[])
    return policy.make_enforcer(conf)


def ctx(*roles: str, project: str | None = PROJECT, system: str | None = None,
        domain: str | None = None) -> RequestContext:
    return RequestContext(project_id=project, user_id="u", roles=list(roles),
                          system_scope=system, domain_id=domain)


@pytest.mark.parametrize(("caller", "own", "other", "change_other", "everything"), [
    (ctx("member", "reader"), True, False, False, False),
    (ctx("reader"), True, False, False, False),
    (ctx("load-balancer_member"), True, False, False, False),
    (ctx("load-balancer_observer"), True, False, False, False),
    (ctx("load-balancer_global_observer"), True, True, False, True),
    (ctx("load-balancer_admin"), True, True, True, True),
    (ctx("admin", "member", "reader"), True, True, True, True),
    (ctx("reader", project=None, system="all"), True, True, False, True),
    (ctx("admin", "reader", project=None, system="all"), True, True, True, True),
    (ctx("other"), False, False, False, False),
    # A domain-scoped token is in neither of the scopes the API serves.
    (ctx("admin", project=None, domain="default"), False, False, False, False),
])
def test_both_role_models(enforcer, caller, own, other, change_other, everything):
    def allowed(action: str, project: str | None) -> bool:
        return bool(enforcer.enforce(f"{policy.PREFIX}:loadbalancer:{action}",
                                     {"project_id": project}, caller.policy_creds()))

    assert allowed("get_one", PROJECT) == own
    assert allowed("get_one", OTHER) == other
    assert allowed("put", OTHER) == change_other
    assert allowed("get_all-global", caller.project_id) == everything
