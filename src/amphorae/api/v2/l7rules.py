"""/v2/lbaas/l7policies/{l7policy_id}/rules: L7 rules, the match conditions of a policy.

Envelope keys are ``rule`` / ``rules`` (links ``rules_links``). Every rule is checked for
its type's constraints on create and, against the merged rule, on update.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import falcon
from pydantic import AfterValidator, Field, StrictBool
from sqlalchemy import select
from sqlalchemy.orm import Session

from amphorae.api import body, listing
from amphorae.api import types as t
from amphorae.api.v2 import common
from amphorae.common import constants as c
from amphorae.common import errors
from amphorae.db import engine as db
from amphorae.db import models as m

RESOURCE = "l7rule"
NAME = "L7 Rule"
# The rules sub-path reports a missing parent without the space, as Octavia does.
POLICY_PATH_NAME = "L7Policy"

HOST_NAME, PATH, FILE_TYPE, HEADER, COOKIE = "HOST_NAME", "PATH", "FILE_TYPE", "HEADER", "COOKIE"
SSL_CONN_HAS_CERT, SSL_VERIFY_RESULT, SSL_DN_FIELD = (
    "SSL_CONN_HAS_CERT", "SSL_VERIFY_RESULT", "SSL_DN_FIELD")
REGEX, EQUAL_TO = "REGEX", "EQUAL_TO"
# Rule types that never use a key: an update clears it.
KEYLESS_ON_UPDATE = (HOST_NAME, PATH, FILE_TYPE)

# Character sets from the HTTP RFCs (2616, 6265, 7230). '+-.' is a range, which also lets
# ',' through; kept so the same strings are accepted as by Octavia.
_HEADER_NAME = re.compile(r"\A[a-zA-Z0-9!#$%&'*+-.^_`|~]+\Z")
_COOKIE_VALUE = re.compile(r"\A[a-zA-Z0-9!#$%&'()*+-./:<=>?@\[\]^_`{|}~]+\Z")
_HEADER_VALUE = re.compile(r"\A[a-zA-Z0-9!\"#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~\\]+\Z")
_QUOTED_HEADER_VALUE = re.compile(r"\A\"[a-zA-Z0-9 \t!\"#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~\\]*\"\Z")
_DN_FIELD = re.compile(r"^([a-zA-Z][A-Za-z0-9-]*)$")
_DIGITS = re.compile(r"\A[0-9]+\Z")
_NO_NEWLINE = r"^[^\r\n]*$"


def _single_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"Value should match the pattern {_NO_NEWLINE}")
    return value


RuleText = Annotated[t.StrictStr, Field(max_length=255), AfterValidator(_single_line)]
RuleType = t.enum(*c.L7RULE_TYPES)
CompareType = t.enum(*c.L7RULE_COMPARE_TYPES)


class SingleCreate(t.Schema):
    """A rule as nested in an L7 policy (policy create, load balancer graph create)."""

    type: RuleType
    compare_type: CompareType
    key: RuleText | None = None
    value: RuleText
    # null reads as false, as Octavia treats it on update.
    invert: t.AdminState = False
    admin_state_up: t.AdminState = True
    tags: t.Tags | None = None


class Create(SingleCreate):
    # Deprecated in Octavia and overridden by the load balancer's project.
    project_id: t.ProjectId | None = None
    tenant_id: t.ProjectId | None = None


class Update(t.Schema):
    type: RuleType | None = None
    compare_type: CompareType | None = None
    key: RuleText | None = None
    value: RuleText | None = None
    invert: StrictBool | None = None
    admin_state_up: t.AdminState = True
    tags: t.Tags | None = None


_COLUMNS = {
    "id": m.L7Rule.id, "type": m.L7Rule.type, "compare_type": m.L7Rule.compare_type,
    "key": m.L7Rule.key, "value": m.L7Rule.value, "invert": m.L7Rule.invert,
    "admin_state_up": m.L7Rule.enabled, "project_id": m.L7Rule.project_id,
    "l7policy_id": m.L7Rule.l7policy_id,
    "provisioning_status": m.L7Rule.provisioning_status,
    "operating_status": m.L7Rule.operating_status,
    "created_at": m.L7Rule.created_at, "updated_at": m.L7Rule.updated_at,
}
COLLECTION = listing.Collection(
    model=m.L7Rule, key="rules", links_key="rules_links",
    # openstacksdk filters on the value as 'rule_value' (its attribute name).
    columns={**_COLUMNS, "rule_value": m.L7Rule.value},
)


def view(rule: m.L7Rule) -> dict[str, Any]:
    out = common.base_view(rule)
    out.update(type=rule.type, compare_type=rule.compare_type, key=rule.key,
               value=rule.value, invert=rule.invert)
    return out


# --- validation -----------------------------------------------------------------------


def _invalid(message: str) -> errors.BadRequest:
    return errors.BadRequest(f"Error parsing L7Rule: {message}")


def _rule_error(message: str) -> errors.BadRequest:
    return _invalid(f"Invalid L7 Rule: {message}")


def _check_regex(value: str) -> None:
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError, ValueError, MemoryError) as exc:
        raise _invalid(f"Unable to parse regular expression: {exc}") from None


def _check_header_value(value: str, what: str) -> None:
    if not (_HEADER_VALUE.match(value) or _QUOTED_HEADER_VALUE.match(value)):
        raise _invalid(f"Invalid characters in {what}")


def _check_ssl(rule_type: str, compare_type: str | None, key: str | None,
               value: str) -> None:
    message = None
    if rule_type == SSL_CONN_HAS_CERT:
        if key:
            message = f'L7rule type {rule_type} does not use the "key" field.'
        elif value.lower() != "true":
            message = f"L7rule value {value} is not a boolean True string."
        elif compare_type != EQUAL_TO:
            message = f"L7rule type {rule_type} only supports the {EQUAL_TO} compare type."
    elif rule_type == SSL_VERIFY_RESULT:
        if key:
            message = f'L7rule type {rule_type} does not use the "key" field.'
        elif not _DIGITS.match(value):
            message = f"L7rule type {rule_type} needs a int value, which is >= 0"
        elif compare_type != EQUAL_TO:
            message = f"L7rule type {rule_type} only supports the {EQUAL_TO} compare type."
    else:
        if compare_type == REGEX:
            _check_regex(value)
        if not key:
            message = f"L7rule type {rule_type} needs to specify a key and a value."
        elif not _DN_FIELD.match(key):
            message = "Invalid L7rule distinguished name field."
    if message:
        raise _rule_error(message)


def validate_rule(rule_type: str | None, compare_type: str | None, key: str | None,
                  value: str | None) -> None:
    """The per-type constraints of a complete rule (400 with Octavia's wording)."""
    if not value:
        raise _rule_error("L7 rule type requires a value")
    plain = compare_type in ("STARTS_WITH", "ENDS_WITH", "CONTAINS", EQUAL_TO)
    if rule_type in (HEADER, COOKIE):
        if not key:
            raise _rule_error("L7 rule type requires a key")
        if not _HEADER_NAME.match(key):
            raise _invalid("Invalid characters in key")
        if compare_type == REGEX:
            _check_regex(value)
        elif not plain:
            raise _rule_error("invalid comparison type for rule type")
        elif rule_type == HEADER:
            _check_header_value(value, "header value")
        elif not _COOKIE_VALUE.match(value):
            raise _invalid("Invalid characters in cookie value")
    elif rule_type in (HOST_NAME, PATH):
        if compare_type == REGEX:
            _check_regex(value)
        elif plain:
            _check_header_value(value, "comparison value")
        else:
            raise _rule_error("invalid comparison type for rule type")
    elif rule_type == FILE_TYPE:
        if compare_type == REGEX:
            _check_regex(value)
        elif compare_type == EQUAL_TO:
            _check_header_value(value, "comparison value")
        else:
            raise _rule_error("invalid comparison type for rule type")
    elif rule_type in (SSL_CONN_HAS_CERT, SSL_VERIFY_RESULT, SSL_DN_FIELD):
        _check_ssl(rule_type, compare_type, key, value)
    else:
        raise _rule_error("invalid rule type")


def check_rule_count(policy: m.L7Policy, adding: int = 1) -> None:
    if len(policy.rules) + adding > c.MAX_RULES_PER_L7POLICY:
        raise errors.Conflict(f"Too many rules on L7 policy {policy.id}")


def build(session: Session, ctx: Any, policy: m.L7Policy,
          data: SingleCreate) -> m.L7Rule:
    """Validate and create a rule on ``policy`` (which may be new and not yet flushed).

    Does not lock, check quotas or enqueue: the caller does.
    """
    validate_rule(data.type, data.compare_type, data.key, data.value)
    check_rule_count(policy)
    rule = m.L7Rule(
        id=m.new_id(), project_id=policy.project_id, type=data.type,
        compare_type=data.compare_type, key=data.key, value=data.value,
        invert=data.invert, enabled=data.admin_state_up,
        provisioning_status=c.PENDING_CREATE, operating_status=c.OFFLINE,
    )
    rule.tags = data.tags
    policy.rules.append(rule)
    session.add(rule)
    return rule


# --- lookups and locking --------------------------------------------------------------


def load_policy_authorized(req: falcon.Request, session: Session, policy_id: str,
                           action: str) -> m.L7Policy:
    policy = common.find(session, m.L7Policy, policy_id, POLICY_PATH_NAME,
                         errors.ParentNotFound)
    return common.authorized(req, RESOURCE, action, policy)


def _load_rule(session: Session, policy: m.L7Policy, rule_id: str) -> m.L7Rule:
    rule = session.get(m.L7Rule, rule_id)
    # A rule reached through another policy's path does not exist there.
    if rule is None or rule.l7policy_id != policy.id:
        raise errors.NotFound(resource=NAME, id=rule_id)
    return rule


def _lock(session: Session, policy: m.L7Policy) -> None:
    """Policy must be ACTIVE and the load balancer lockable; parents go PENDING_UPDATE."""
    if policy.provisioning_status != c.ACTIVE:
        raise errors.ImmutableObject(resource=POLICY_PATH_NAME, id=policy.id)
    listener = policy.listener
    common.lock_load_balancer(session, listener.load_balancer_id)
    common.mark_pending_update(listener, policy)


# --- controllers ----------------------------------------------------------------------


class Rules:
    def on_get(self, req: falcon.Request, resp: falcon.Response, l7policy_id: str) -> None:
        with db.session() as session:
            policy = load_policy_authorized(req, session, l7policy_id, "get_all")
            common.serve_list(req, resp, COLLECTION, view,
                              select(m.L7Rule).where(m.L7Rule.l7policy_id == policy.id),
                              session=session)

    def on_post(self, req: falcon.Request, resp: falcon.Response, l7policy_id: str) -> None:
        data = body.parse(req, "rule", Create)
        with db.transaction() as session:
            policy = load_policy_authorized(req, session, l7policy_id, "post")
            # Octavia checks the rule itself and the rule count before taking the lock.
            validate_rule(data.type, data.compare_type, data.key, data.value)
            check_rule_count(policy)
            lb_id = policy.listener.load_balancer_id
            _lock(session, policy)
            rule = build(session, common.context(req), policy, data)
            out = common.finish_create(session, rule, view, lb_id, policy.project_id,
                                       {"l7rule": 1})
        common.send(resp, {"rule": out}, 201)


class Rule:
    def on_get(self, req: falcon.Request, resp: falcon.Response, l7policy_id: str,
               l7rule_id: str) -> None:
        with db.session() as session:
            policy = load_policy_authorized(req, session, l7policy_id, "get_one")
            rule = _load_rule(session, policy, l7rule_id)
            common.send_one(resp, req, "rule", view(rule))

    def on_put(self, req: falcon.Request, resp: falcon.Response, l7policy_id: str,
               l7rule_id: str) -> None:
        data = body.parse(req, "rule", Update)
        given = data.given()
        with db.transaction() as session:
            policy = load_policy_authorized(req, session, l7policy_id, "put")
            rule = _load_rule(session, policy, l7rule_id)
            merged = {"type": rule.type, "compare_type": rule.compare_type,
                      "key": rule.key, "value": rule.value}
            merged.update({k: v for k, v in given.items() if k in merged})
            if merged["type"] in KEYLESS_ON_UPDATE:
                merged["key"] = None
            validate_rule(merged["type"], merged["compare_type"], merged["key"],
                          merged["value"])
            lb_id = policy.listener.load_balancer_id
            _lock(session, policy)
            rule.type, rule.compare_type = merged["type"], merged["compare_type"]
            rule.key, rule.value = merged["key"], merged["value"]
            if "invert" in given:
                rule.invert = bool(data.invert)
            common.set_given(rule, given, {"admin_state_up": "enabled", "tags": "tags"})
            out = common.finish_update(session, rule, view, lb_id)
        common.send(resp, {"rule": out})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, l7policy_id: str,
                  l7rule_id: str) -> None:
        with db.transaction() as session:
            policy = load_policy_authorized(req, session, l7policy_id, "delete")
            rule = _load_rule(session, policy, l7rule_id)
            lb_id = policy.listener.load_balancer_id
            _lock(session, policy)
            common.finish_delete(session, rule, lb_id)
        resp.status = 204


ROUTES = [
    ("/l7policies/{l7policy_id}/rules", Rules()),
    ("/l7policies/{l7policy_id}/rules/{l7rule_id}", Rule()),
]
