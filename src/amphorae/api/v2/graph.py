"""The fully populated load balancer create: listeners, pools, members, monitors and L7
policies nested in one POST (what Kubernetes' cloud provider sends).

An inline pool with more than a name is a definition, a name-only pool refers to a
definition elsewhere in the request; an unnamed pool is a definition only its place uses
(Octavia accepts those too). Each nested object is validated and
built by its own resource module, so the rules are the same as for a single create.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.orm import Session

from amphorae.api import body
from amphorae.api.context import RequestContext
from amphorae.api.v2 import (
    healthmonitors,
    l7policies,
    listeners,
    members,
    pools,
    validators,
)
from amphorae.common import errors
from amphorae.db import models as m

POOL_CHILDREN = ("healthmonitor", "members")
LISTENER_CHILDREN = ("default_pool", "l7policies")


def _pool_key(pool: dict[str, Any]) -> str | int:
    """A pool's name, or for an unnamed pool its own identity in the request."""
    return pool.get("name") or id(pool)


def _pool_definitions(listener_dicts: list[dict[str, Any]],
                      pool_dicts: list[dict[str, Any]]) -> dict[str | int, dict]:
    """Full pool definitions by key (_pool_key); every name-only reference resolves."""
    inline: list[Any] = []
    for listener in listener_dicts:
        if not isinstance(listener, dict):
            raise errors.InvalidInput(field="listeners", value=listener,
                                      reason="Value should be a JSON object.")
        inline.append(listener.get("default_pool"))
        for policy in listener.get("l7policies") or []:
            if isinstance(policy, dict):
                inline.append(policy.get("redirect_pool"))
    definitions: dict[str | int, dict[str, Any]] = {}
    references: set[str | int] = set()
    for pool in [*pool_dicts, *(p for p in inline if p is not None)]:
        if not isinstance(pool, dict):
            raise errors.InvalidInput(field="pools", value=pool,
                                      reason="Value should be a JSON object.")
        name = pool.get("name")
        if name is not None and not isinstance(name, str):
            raise errors.InvalidInput(field="pool name", value=name,
                                      reason="Value should be a string.")
        if name and set(pool) == {"name"}:
            references.add(name)
            continue
        if name and name in definitions:
            raise errors.ValidationError(
                detail=f"Pool name '{name}' is defined more than once in the request.")
        for field in ("protocol", "lb_algorithm"):
            if field not in pool:
                raise errors.InvalidInput(field=f"pool {name or '(unnamed)'}.{field}",
                                          value="None", reason="Mandatory field missing.")
        definitions[_pool_key(pool)] = pool
    for name in references - set(definitions):
        raise errors.ValidationError(
            detail=f"Pool '{name}' was referenced but no full definition was found.")
    return definitions


def _build_pool(session: Session, ctx: RequestContext, lb: m.LoadBalancer,
                spec: dict[str, Any], counts: Counter[str]) -> m.Pool:
    fields = {k: v for k, v in spec.items() if k not in POOL_CHILDREN}
    data = body.validate({**fields, "loadbalancer_id": lb.id}, "pool", pools.Create)
    pool = pools.build(session, ctx, lb, data)
    counts["pool"] += 1
    if spec.get("healthmonitor") is not None:
        hm_data = body.validate(spec["healthmonitor"], "healthmonitor",
                                healthmonitors.SingleCreate)
        healthmonitors.build(session, ctx, pool, hm_data)
        counts["health_monitor"] += 1
    member_specs = spec.get("members") or []
    if not isinstance(member_specs, list):
        raise errors.InvalidInput(field="members", value=member_specs,
                                  reason="Value should be a list.")
    # NO_MONITOR whatever the pool gets: Octavia's graph makes the members before the
    # monitor (the health manager sets them once the amphorae report).
    for member_spec in member_specs:
        members.build(session, ctx, pool,
                      body.validate(member_spec, "member", members.SingleCreate),
                      has_monitor=False)
        counts["member"] += 1
    return pool


def build(session: Session, ctx: RequestContext, lb: m.LoadBalancer,
          listener_dicts: list[dict[str, Any]],
          pool_dicts: list[dict[str, Any]]) -> dict[str, int]:
    """Build the nested tree of a new load balancer; returns the counts for quotas."""
    definitions = _pool_definitions(listener_dicts, pool_dicts)
    counts: Counter[str] = Counter()
    by_key = {key: _build_pool(session, ctx, lb, spec, counts)
              for key, spec in definitions.items()}
    for spec in listener_dicts:
        fields = {k: v for k, v in spec.items() if k not in LISTENER_CHILDREN}
        data = body.validate({**fields, "loadbalancer_id": lb.id}, "listener",
                             listeners.Create)
        listener = listeners.build(session, ctx, lb, data)
        counts["listener"] += 1
        default = spec.get("default_pool")
        if default is not None:
            pool = by_key[_pool_key(default)]
            validators.check_pool_protocol(listener.protocol, pool.protocol)
            listener.default_pool = pool
            listener.default_pool_id = pool.id
        for policy_spec in spec.get("l7policies") or []:
            policy_data = body.validate(policy_spec, "l7policy", l7policies.SingleCreate)
            redirect = (by_key[_pool_key(policy_spec["redirect_pool"])]
                        if policy_data.redirect_pool else None)
            l7policies.build(session, ctx, listener, policy_data, redirect_pool=redirect)
            counts["l7policy"] += 1
            counts["l7rule"] += len(policy_data.rules)
    return dict(counts)


def view(lb: m.LoadBalancer) -> dict[str, Any]:
    """The create response's listeners and pools, expanded (the load balancer's own
    view lists only their ids)."""
    out: dict[str, Any] = {"listeners": []}
    for listener in sorted(lb.listeners, key=lambda x: (x.created_at, x.id)):
        lview = listeners.view(listener)
        lview.pop("loadbalancers", None)
        lview["l7policies"] = [l7policies.full_view(p) for p in
                               sorted(listener.l7policies, key=lambda p: p.position)]
        out["listeners"].append(lview)
    out["pools"] = []
    for pool in sorted(lb.pools, key=lambda x: (x.created_at, x.id)):
        pview = pools.view(pool)
        pview.pop("loadbalancers", None)
        pview.pop("healthmonitor_id", None)
        pview["members"] = [members.view(mb) for mb in
                            sorted(pool.members, key=lambda x: (x.created_at, x.id))]
        if pool.health_monitor is not None:
            hview = healthmonitors.view(pool.health_monitor)
            hview.pop("pools", None)
            pview["healthmonitor"] = hview
        else:
            pview["healthmonitor"] = None
        out["pools"].append(pview)
    return out
