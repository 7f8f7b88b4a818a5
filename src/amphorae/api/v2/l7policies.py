"""/v2/lbaas/l7policies: ordered per-listener L7 policies (reject or redirect requests).

Argument sanitising follows Octavia: a redirect pool, URL or prefix decides the action,
REJECT clears every redirect field, and positions stay contiguous (1..N per listener).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

import falcon
from pydantic import AfterValidator, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from amphorae.api import body, listing
from amphorae.api import policy as rbac  # "policy" here is an L7 policy
from amphorae.api import types as t
from amphorae.api.v2 import common, l7rules
from amphorae.common import constants as c
from amphorae.common import errors
from amphorae.db import engine as db
from amphorae.db import models as m

RESOURCE = "l7policy"
NAME = "L7 Policy"

REJECT, TO_URL, TO_POOL, PREFIX = (
    "REJECT", "REDIRECT_TO_URL", "REDIRECT_TO_POOL", "REDIRECT_PREFIX")
DEFAULT_REDIRECT_CODE = 302
# Listener protocols the amphora driver can apply L7 policies to (HAProxy http mode).
L7_LISTENER_PROTOCOLS = (c.HTTP, c.TERMINATED_HTTPS)
REDIRECT_FIELDS = ("redirect_pool_id", "redirect_url", "redirect_prefix", "redirect_http_code")

# --- redirect URL syntax (RFC 3986 subset: http/https, a host, a valid path) ---------

_URL = re.compile(r"\A(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)"
                  r"(?P<path>[^?#]*)(?:[?#].*)?\Z", re.S)
_PCT = r"%[0-9A-Fa-f]{2}"
_REG_NAME = re.compile(rf"\A(?:[A-Za-z0-9\-._~!$&'()*+,;=]|{_PCT})+\Z")
_USERINFO = re.compile(rf"\A(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|{_PCT})*\Z")
_PATH = re.compile(rf"\A(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|{_PCT})*\Z")
_BAD_URL = "Value must be a valid URL string"


def _valid_host(hostport: str) -> bool:
    if hostport.startswith("["):
        host, sep, rest = hostport[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        port = rest[1:] if rest.startswith(":") else rest
        return bool(sep) and (not rest or rest.startswith(":")) and (not port or port.isdigit())
    host, _, port = hostport.partition(":")
    return bool(_REG_NAME.match(host)) and (not port or port.isdigit())


def redirect_url(value: str) -> str:
    # Spaces and control characters would also break the rendered HAProxy line.
    if any(ch <= " " or ch >= "\x7f" for ch in value):
        raise ValueError(_BAD_URL)
    parts = _URL.match(value)
    if parts is None or parts["scheme"].lower() not in ("http", "https"):
        raise ValueError(_BAD_URL)
    userinfo, _, hostport = parts["authority"].rpartition("@")
    if not _USERINFO.match(userinfo) or not _valid_host(hostport):
        raise ValueError(_BAD_URL)
    if not _PATH.match(parts["path"]):
        raise ValueError(_BAD_URL)
    return value


URL = Annotated[t.StrictStr, Field(max_length=255), AfterValidator(redirect_url)]
Action = t.enum(*c.L7POLICY_ACTIONS)
RedirectCode = t.enum(*c.L7POLICY_REDIRECT_CODES)
Position = Annotated[t.StrictInt, Field(ge=c.MIN_POSITION, le=c.MAX_POSITION)]


class _Fields(t.Schema):
    name: t.Name | None = None
    description: t.Description | None = None
    admin_state_up: t.AdminState = True
    action: Action
    redirect_url: URL | None = None
    redirect_prefix: URL | None = None
    redirect_http_code: RedirectCode | None = None
    # None appends at the end (Octavia's default is the maximum position).
    position: Position | None = None
    rules: list[l7rules.SingleCreate] = Field(default_factory=list)
    tags: t.Tags | None = None


class SingleCreate(_Fields):
    """A policy nested in a listener of the fully populated load balancer create; the
    redirect pool is an inline pool object the caller resolves and passes to build()."""

    redirect_pool: dict[str, Any] | None = None


class Create(_Fields):
    listener_id: t.UUID
    redirect_pool_id: t.UUID | None = None
    # Deprecated in Octavia and overridden by the load balancer's project.
    project_id: t.ProjectId | None = None
    tenant_id: t.ProjectId | None = None


class Update(t.Schema):
    name: t.Name | None = None
    description: t.Description | None = None
    admin_state_up: t.AdminState = True
    action: Action | None = None
    redirect_pool_id: t.UUID | None = None
    redirect_url: URL | None = None
    redirect_prefix: URL | None = None
    redirect_http_code: RedirectCode | None = None
    position: Position | None = None
    tags: t.Tags | None = None


COLLECTION = listing.Collection(
    model=m.L7Policy, key="l7policies", links_key="l7policies_links",
    columns={
        "id": m.L7Policy.id, "name": m.L7Policy.name,
        "description": m.L7Policy.description, "project_id": m.L7Policy.project_id,
        "action": m.L7Policy.action, "listener_id": m.L7Policy.listener_id,
        "redirect_pool_id": m.L7Policy.redirect_pool_id,
        "redirect_url": m.L7Policy.redirect_url,
        "redirect_prefix": m.L7Policy.redirect_prefix,
        "redirect_http_code": m.L7Policy.redirect_http_code,
        "position": m.L7Policy.position, "admin_state_up": m.L7Policy.enabled,
        "provisioning_status": m.L7Policy.provisioning_status,
        "operating_status": m.L7Policy.operating_status,
        "created_at": m.L7Policy.created_at, "updated_at": m.L7Policy.updated_at,
    },
    extra_params=frozenset({"project_id"}),
)

LOAD_OPTIONS = (selectinload(m.L7Policy.rules).load_only(m.L7Rule.id, m.L7Rule.created_at),)


def _sorted_rules(policy: m.L7Policy) -> list[m.L7Rule]:
    return sorted(policy.rules, key=lambda r: (r.created_at is not None, r.created_at, r.id))


def _base(policy: m.L7Policy) -> dict[str, Any]:
    out = common.base_view(policy)
    out.update(
        action=policy.action,
        listener_id=policy.listener_id or (policy.listener.id if policy.listener else None),
        redirect_pool_id=policy.redirect_pool_id or (
            policy.redirect_pool.id if policy.redirect_pool is not None else None),
        redirect_url=policy.redirect_url,
        redirect_prefix=policy.redirect_prefix,
        position=policy.position,
        redirect_http_code=policy.redirect_http_code,
    )
    return out


def view(policy: m.L7Policy) -> dict[str, Any]:
    out = _base(policy)
    out["rules"] = common.ids(_sorted_rules(policy))
    return out


def full_view(policy: m.L7Policy) -> dict[str, Any]:
    """The policy with its rules expanded, as the graph create answers."""
    out = _base(policy)
    out["rules"] = [l7rules.view(r) for r in _sorted_rules(policy)]
    return out


# --- argument sanitising --------------------------------------------------------------


def _args_error(message: str) -> errors.BadRequest:
    return errors.BadRequest(f"Invalid L7 Policy arguments: {message}")


def sanitize(args: dict[str, Any], *, create: bool, pool_object: bool = False) -> dict[str, Any]:
    """Make the action and redirect arguments consistent, Octavia's way.

    ``args`` holds the sent subset of action / redirect_* fields; the result holds every
    field to write. ``pool_object`` says an inline redirect pool (graph create) was given;
    the result then has ``redirect_pool`` True while that pool is to be used.
    """
    out = dict(args)
    if pool_object:
        out["redirect_pool"] = True
    if "action" in out:
        action = out["action"]
        if action == REJECT:
            out.update(dict.fromkeys(REDIRECT_FIELDS))
            out.pop("redirect_pool", None)
        elif action == TO_URL:
            if not out.get("redirect_url"):
                raise _args_error("redirect_url must not be None")
            out["redirect_pool_id"] = None
            out.pop("redirect_pool", None)
        elif action == TO_POOL:
            if not out.get("redirect_pool_id") and not out.get("redirect_pool"):
                raise _args_error("redirect_pool_id or redirect_pool must not be None")
            out["redirect_url"] = None
        elif action == PREFIX:
            if not out.get("redirect_prefix"):
                raise _args_error("redirect_prefix must not be None")
        else:
            raise errors.BadRequest(f"Invalid L7 Policy action specified: {action}")
    pool = out.get("redirect_pool_id") or out.get("redirect_pool")
    if pool and (out.get("redirect_url") or out.get("redirect_prefix")):
        raise _args_error("Cannot specify redirect_pool_id and redirect_url or "
                          "redirect_prefix at the same time")
    if pool:
        out.update(action=TO_POOL, redirect_url=None, redirect_prefix=None,
                   redirect_http_code=None)
    for field, action in (("redirect_url", TO_URL), ("redirect_prefix", PREFIX)):
        if out.get(field):
            other = "redirect_prefix" if field == "redirect_url" else "redirect_url"
            out.update(action=action, redirect_pool_id=None)
            out[other] = None
            out.pop("redirect_pool", None)
            if not out.get("redirect_http_code"):
                out["redirect_http_code"] = DEFAULT_REDIRECT_CODE
    if create and "action" not in out:
        raise errors.BadRequest("Invalid L7 Policy action specified: None")
    return out


def _redirect_args(data: t.Schema, fields: set[str] | None = None) -> dict[str, Any]:
    names = ("action", *REDIRECT_FIELDS)
    return {k: getattr(data, k) for k in names
            if hasattr(data, k) and (fields is None or k in fields)}


def _check_merged(policy: m.L7Policy) -> None:
    """After an update every action still has its argument; unused fields are null."""
    if policy.action == REJECT:
        for field in REDIRECT_FIELDS:
            setattr(policy, field, None)
        policy.redirect_pool = None
    elif policy.action == TO_POOL:
        policy.redirect_url = policy.redirect_prefix = policy.redirect_http_code = None
        if not policy.redirect_pool_id:
            raise _args_error("redirect_pool_id or redirect_pool must not be None")
    elif policy.action == TO_URL and not policy.redirect_url:
        raise _args_error("redirect_url must not be None")
    elif policy.action == PREFIX and not policy.redirect_prefix:
        raise _args_error("redirect_prefix must not be None")


# --- semantic checks ------------------------------------------------------------------


def _load_balancer(session: Session, listener: m.Listener) -> m.LoadBalancer:
    lb = listener.load_balancer
    if lb is None:
        lb = session.get(m.LoadBalancer, listener.load_balancer_id)
    return lb


def _check_listener(listener: m.Listener) -> None:
    if listener.protocol == c.PROMETHEUS:
        raise errors.BadRequest("Protocol PROMETHEUS listeners cannot have child objects.")


def _check_provider(lb: m.LoadBalancer, listener: m.Listener) -> None:
    if listener.protocol not in L7_LISTENER_PROTOCOLS:
        raise errors.ProviderUnsupportedOption(
            provider=lb.provider or c.PROVIDER_AMPHORA,
            detail=f"{listener.protocol} protocol listeners do not support L7 policies")


def _check_pool(pool: m.Pool, pool_id: str, lb: m.LoadBalancer,
                listener: m.Listener) -> None:
    """The redirect pool must be on the listener's load balancer (404 otherwise, as in
    Octavia) and speak a protocol the listener can forward to."""
    pool_lb = pool.load_balancer_id or (pool.load_balancer.id if pool.load_balancer else None)
    if pool_lb != lb.id or (pool.project_id and lb.project_id
                            and pool.project_id != lb.project_id):
        raise errors.NotFound(resource="Pool", id=pool_id)
    if pool.protocol not in c.VALID_LISTENER_POOL_PROTOCOLS.get(listener.protocol, ()):
        raise errors.ValidationError(
            detail=f"The pool protocol '{pool.protocol}' is invalid while the listener "
                   f"protocol is '{listener.protocol}'.")


def _redirect_pool(session: Session, pool_id: str) -> m.Pool:
    pool = session.get(m.Pool, pool_id)
    if pool is None:
        raise errors.NotFound(resource="Pool", id=pool_id)
    return pool


def precheck(listener: m.Listener, data: Create | SingleCreate,
             pool_object: bool = False) -> dict[str, Any]:
    """The checks that need no database: Octavia runs them before taking the lock."""
    _check_listener(listener)
    args = sanitize(_redirect_args(data), create=True, pool_object=pool_object)
    for rule in data.rules:
        l7rules.validate_rule(rule.type, rule.compare_type, rule.key, rule.value)
    return args


# --- positions ------------------------------------------------------------------------


def _renumber(listener: m.Listener, moving: m.L7Policy | None = None,
              position: int | None = None) -> None:
    """Keep a listener's positions contiguous 1..N. ``moving`` goes to ``position``
    (None or beyond the end: last); policies being deleted sort after all others."""
    ordered = sorted(
        (p for p in listener.l7policies if p is not moving),
        key=lambda p: (p.position if p.position is not None else c.MAX_POSITION + 1, p.id))
    live = [p for p in ordered if p.provisioning_status != c.PENDING_DELETE]
    doomed = [p for p in ordered if p.provisioning_status == c.PENDING_DELETE]
    if moving is not None:
        index = len(live) if position is None else min(position - 1, len(live))
        live.insert(index, moving)
    for number, policy in enumerate(live + doomed, 1):
        if policy.position != number:
            policy.position = number


# --- build ----------------------------------------------------------------------------


def build(session: Session, ctx: Any, listener: m.Listener, data: Create | SingleCreate,
          redirect_pool: m.Pool | None = None) -> m.L7Policy:
    """Validate and create a policy (and its nested rules) on ``listener``.

    The listener (and ``redirect_pool``, an inline pool of the graph create) may be new
    and not yet flushed. Does not lock, check quotas or enqueue: the caller does.
    """
    args = precheck(listener, data, pool_object=redirect_pool is not None)
    lb = _load_balancer(session, listener)
    pool = None
    if args.get("redirect_pool_id"):
        pool = _redirect_pool(session, args["redirect_pool_id"])
        _check_pool(pool, args["redirect_pool_id"], lb, listener)
    elif args.get("redirect_pool") and redirect_pool is not None:
        pool = redirect_pool
        _check_pool(pool, pool.id, lb, listener)
    _check_provider(lb, listener)
    policy = m.L7Policy(
        id=m.new_id(), project_id=listener.project_id or lb.project_id, name=data.name,
        description=data.description, enabled=data.admin_state_up, action=args["action"],
        redirect_url=args.get("redirect_url"), redirect_prefix=args.get("redirect_prefix"),
        redirect_http_code=args.get("redirect_http_code"),
        provisioning_status=c.PENDING_CREATE, operating_status=c.OFFLINE,
    )
    policy.redirect_pool = pool
    policy.tags = data.tags
    listener.l7policies.append(policy)
    _renumber(listener, policy, data.position)
    session.add(policy)
    for rule in data.rules:
        l7rules.build(session, ctx, policy, rule)
    return policy


# --- lookups --------------------------------------------------------------------------


def load_authorized(req: falcon.Request, session: Session, policy_id: str,
                    action: str) -> m.L7Policy:
    policy = common.find(session, m.L7Policy, policy_id, NAME)
    return common.authorized(req, RESOURCE, action, policy)


def _lock(session: Session, listener: m.Listener) -> None:
    common.lock_load_balancer(session, listener.load_balancer_id)
    common.mark_pending_update(listener)


# --- controllers ----------------------------------------------------------------------


class Policies:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        common.serve_project_list(req, resp, RESOURCE, COLLECTION, m.L7Policy.project_id, view,
                                  select(m.L7Policy).options(*LOAD_OPTIONS))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body.parse(req, RESOURCE, Create)
        ctx = common.context(req)
        with db.transaction() as session:
            listener = session.get(m.Listener, data.listener_id)
            if listener is None:
                raise errors.NotFound(resource="Listener", id=data.listener_id)
            lb = _load_balancer(session, listener)
            project = listener.project_id or lb.project_id
            rbac.authorize(ctx, RESOURCE, "post", project)
            precheck(listener, data)
            _lock(session, listener)
            policy = build(session, ctx, listener, data)
            out = common.finish_create(session, policy, view, lb.id, project,
                                       {"l7policy": 1, "l7rule": len(policy.rules)})
        common.send(resp, {RESOURCE: out}, 201)


class Policy:
    def on_get(self, req: falcon.Request, resp: falcon.Response, l7policy_id: str) -> None:
        with db.session() as session:
            policy = load_authorized(req, session, l7policy_id, "get_one")
            common.send_one(resp, req, RESOURCE, view(policy))

    def on_put(self, req: falcon.Request, resp: falcon.Response, l7policy_id: str) -> None:
        data = body.parse(req, RESOURCE, Update)
        given = data.given()
        if not given:
            raise _args_error("Invalid update options")
        args = sanitize(_redirect_args(data, set(given)), create=False)
        with db.transaction() as session:
            policy = load_authorized(req, session, l7policy_id, "put")
            listener = policy.listener
            lb = _load_balancer(session, listener)
            _lock(session, listener)
            common.set_given(policy, given, {"name": "name", "description": "description",
                                             "tags": "tags", "admin_state_up": "enabled"})
            for field in ("action", "redirect_url", "redirect_prefix", "redirect_http_code"):
                if field in args:
                    setattr(policy, field, args[field])
            if "redirect_pool_id" in args:
                pool_id = args["redirect_pool_id"]
                pool = _redirect_pool(session, pool_id) if pool_id else None
                if pool is not None:
                    _check_pool(pool, pool_id, lb, listener)
                policy.redirect_pool = pool
                policy.redirect_pool_id = pool_id
            _check_merged(policy)
            if data.position is not None and data.position != policy.position:
                _renumber(listener, policy, data.position)
            out = common.finish_update(session, policy, view, lb.id)
        common.send(resp, {RESOURCE: out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, l7policy_id: str) -> None:
        with db.transaction() as session:
            policy = load_authorized(req, session, l7policy_id, "delete")
            listener = policy.listener
            _lock(session, listener)
            policy.provisioning_status = c.PENDING_DELETE
            # Rules go with their policy; marking them lets completion remove their tags.
            for rule in policy.rules:
                rule.provisioning_status = c.PENDING_DELETE
            # The remaining policies close the gap now; the doomed one sorts last.
            _renumber(listener)
            common.enqueue(session, listener.load_balancer_id)
        resp.status = 204


ROUTES = [
    ("/l7policies", Policies()),
    ("/l7policies/{l7policy_id}", Policy()),
]
