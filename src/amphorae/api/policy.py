"""Authorization through oslo.policy with Octavia's rule names and default rules."""

from __future__ import annotations

import functools
import threading
import time

from oslo_config import cfg
from oslo_policy import policy

from amphorae.api.context import RequestContext
from amphorae.common import config, errors

PREFIX = "os_load-balancer_api"

# Both of Octavia's role models are in the defaults: Keystone's default roles (admin,
# member, reader; a system-scoped reader observes everything) and the load-balancer_*
# roles of Octavia's advanced RBAC. Keystone's implied roles make an admin a member and a
# member a reader. An operator's policy.yaml ([oslo_policy] policy_file) overrides any rule.
BASE_RULES = [
    ("system-admin", "role:admin and system_scope:all",
     "A system-scoped token with the admin role."),
    ("system-reader", "role:reader and system_scope:all",
     "A system-scoped token with the reader role."),
    ("project-member", "role:member and project_id:%(project_id)s",
     "A token of the owning project with the member role."),
    ("project-reader", "role:reader and project_id:%(project_id)s",
     "A token of the owning project with the reader role."),
    ("context_is_admin", "role:admin or role:load-balancer_admin",
     "An administrator of the whole service."),
    ("load-balancer:owner", "project_id:%(project_id)s",
     "A token of the project that owns the object."),
    ("load-balancer:admin", "is_admin:True or role:admin or role:load-balancer_admin",
     "Administers every project's load balancers (is_admin: noauth)."),
    ("load-balancer:global_observer",
     "role:admin or rule:system-reader or role:load-balancer_global_observer",
     "Reads every project's load balancers."),
    ("load-balancer:member_and_owner",
     "rule:project-member or "
     "(role:load-balancer_member and rule:load-balancer:owner)",
     "Reads and changes its own project's load balancers."),
    ("load-balancer:observer_and_owner",
     "rule:project-reader or "
     "(role:load-balancer_observer and rule:load-balancer:owner)",
     "Reads its own project's load balancers."),
    ("load-balancer:quota-admin", "role:admin or role:load-balancer_quota_admin",
     "Changes quotas."),
    ("service", "role:service", "Another OpenStack service."),
    ("load-balancer:read",
     "rule:load-balancer:observer_and_owner or rule:load-balancer:global_observer or "
     "rule:load-balancer:member_and_owner or rule:load-balancer:admin", ""),
    ("load-balancer:read-global",
     "rule:load-balancer:global_observer or rule:load-balancer:admin", ""),
    ("load-balancer:write",
     "rule:load-balancer:member_and_owner or rule:load-balancer:admin", ""),
    ("load-balancer:read-quota",
     "rule:load-balancer:observer_and_owner or rule:load-balancer:global_observer or "
     "rule:load-balancer:member_and_owner or rule:load-balancer:quota-admin or "
     "rule:load-balancer:admin", ""),
    ("load-balancer:read-quota-global",
     "rule:load-balancer:global_observer or rule:load-balancer:quota-admin or "
     "rule:load-balancer:admin", ""),
    ("load-balancer:write-quota",
     "rule:load-balancer:quota-admin or rule:load-balancer:admin", ""),
]

_READ, _GLOBAL, _WRITE, _ADMIN = ("rule:load-balancer:read", "rule:load-balancer:read-global",
                                  "rule:load-balancer:write", "rule:load-balancer:admin")
_CRUD = {"get_all": _READ, "get_all-global": _GLOBAL, "post": _WRITE, "get_one": _READ,
         "put": _WRITE, "delete": _WRITE}

API_RULES: dict[str, dict[str, str]] = {
    "loadbalancer": {**_CRUD, "get_stats": _READ, "get_status": _READ,
                     "put_failover": _ADMIN, "post:vip_sg_ids": _WRITE,
                     "put:vip_sg_ids": _WRITE},
    "listener": {**_CRUD, "get_stats": _READ},
    "pool": dict(_CRUD),
    "healthmonitor": dict(_CRUD),
    "l7policy": dict(_CRUD),
    "member": {"get_all": f"{_READ} or rule:service", "post": _WRITE, "get_one": _READ,
               "put": _WRITE, "delete": _WRITE},
    "l7rule": {"get_all": _READ, "post": _WRITE, "get_one": _READ, "put": _WRITE,
               "delete": _WRITE},
    "quota": {"get_all": "rule:load-balancer:read-quota",
              "get_all-global": "rule:load-balancer:read-quota-global",
              "get_one": "rule:load-balancer:read-quota",
              "put": "rule:load-balancer:write-quota",
              "delete": "rule:load-balancer:write-quota",
              "get_defaults": "rule:load-balancer:read-quota"},
    "amphora": {"get_all": _ADMIN, "get_one": _ADMIN, "delete": _ADMIN, "put_config": _ADMIN,
                "put_failover": _ADMIN, "get_stats": _ADMIN},
    # Our extension: an ACTIVE_ACTIVE load balancer's amphora count.
    "loadbalancer-scale": {"get_one": _ADMIN, "put": _ADMIN},
    "provider": {"get_all": _READ},
    "provider-flavor": {"get_all": _ADMIN},
    "provider-availability-zone": {"get_all": _ADMIN},
    "flavor": {"get_all": _READ, "post": _ADMIN, "get_one": _READ, "put": _ADMIN,
               "delete": _ADMIN},
    "flavor-profile": {k: _ADMIN for k in ("get_all", "post", "get_one", "put", "delete")},
    "availability-zone": {"get_all": _READ, "post": _ADMIN, "get_one": _READ, "put": _ADMIN,
                          "delete": _ADMIN},
    "availability-zone-profile": {k: _ADMIN
                                  for k in ("get_all", "post", "get_one", "put", "delete")},
    # Our extension: /v2/octavia/events, read like the load balancers they tell of.
    "event": {"get_all": _READ, "get_all-global": _GLOBAL},
}


# Project- and system-scoped tokens are both served; a domain-scoped one is not.
SCOPES = ["project", "system"]


def default_rules() -> list[policy.RuleDefault]:
    rules = [policy.RuleDefault(name, check, description=text)
             for name, check, text in BASE_RULES]
    for resource, actions in API_RULES.items():
        for action, check in actions.items():
            rules.append(policy.RuleDefault(f"{PREFIX}:{resource}:{action}", check,
                                            scope_types=SCOPES))
    return rules


def sample() -> str:
    """The default rules as a commented policy.yaml, for operators to copy and edit."""
    lines = ["# amphorae's default policy. Uncomment a rule in [oslo_policy] policy_file",
             "# (policy.yaml next to the configuration file) to override it.", ""]
    for rule in default_rules():
        if rule.description:
            lines.append(f"# {rule.description}")
        if rule.scope_types:
            lines.append(f"# Scope types: {', '.join(rule.scope_types)}")
        lines += [f'#"{rule.name}": "{rule.check_str}"', ""]
    return "\n".join(lines)


def make_enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    """An enforcer with the defaults, overridden by ``[oslo_policy] policy_file``."""
    enf = policy.Enforcer(conf)
    enf.register_defaults(default_rules())
    enf.load_rules()
    return enf


@functools.cache
def enforcer() -> policy.Enforcer:
    return make_enforcer(config.CONF)


# oslo.policy spends ~0.3 ms per decision (it inspects every check's signature), a
# large share of a GET. A decision depends only on the rule, the target project and the
# caller's identity, so decisions are remembered until the rules are next re-read.
RELOAD_SECONDS = 5.0
_MAX_CACHED = 10000
_decisions: dict[tuple[object, ...], bool] = {}
_reload_lock = threading.Lock()
_loaded_at = 0.0


def _maybe_reload() -> None:
    global _loaded_at
    now = time.monotonic()
    if now - _loaded_at < RELOAD_SECONDS:
        return
    with _reload_lock:
        if now - _loaded_at >= RELOAD_SECONDS:
            enforcer().load_rules()
            _decisions.clear()
            _loaded_at = now


def check(ctx: RequestContext, resource: str, action: str,
          project_id: str | None = None) -> bool:
    _maybe_reload()
    target_project = project_id if project_id is not None else ctx.project_id
    creds = ctx.policy_creds()
    key = (resource, action, target_project,
           *(tuple(v) if isinstance(v, list) else v for v in creds.values()))
    decision = _decisions.get(key)
    if decision is None:
        decision = bool(enforcer().enforce(f"{PREFIX}:{resource}:{action}",
                                           {"project_id": target_project}, creds))
        if len(_decisions) >= _MAX_CACHED:
            _decisions.clear()
        _decisions[key] = decision
    return decision


def authorize(ctx: RequestContext, resource: str, action: str,
              project_id: str | None = None) -> None:
    if not check(ctx, resource, action, project_id):
        raise errors.PolicyForbidden()
