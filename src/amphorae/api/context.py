"""Who is calling: the request context every controller and policy check uses.

Under ``keystone`` the identity headers come from keystonemiddleware's auth_token, which
drops any the client sent and sets them from the validated token; under ``testing`` the
client's own headers are trusted (tests only); under ``noauth`` every caller is an admin.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from amphorae.common import config


@dataclasses.dataclass
class RequestContext:
    project_id: str | None
    user_id: str | None = None
    roles: list[str] = dataclasses.field(default_factory=list)
    is_admin: bool = False
    system_scope: str | None = None
    domain_id: str | None = None
    request_id: str = ""
    user_name: str | None = None
    project_name: str | None = None
    # X-Service-Catalog as sent (JSON); parsed only when something reads it.
    raw_service_catalog: str | None = dataclasses.field(default=None, repr=False)
    # The caller's own token (keystone only): the Barbican certificate manager reads the
    # references a request names with it, as that user.
    auth_token: str | None = dataclasses.field(default=None, repr=False)

    @functools.cached_property
    def service_catalog(self) -> list[dict[str, Any]]:
        """The token's catalog in auth_token's v2-style form ([] without one)."""
        return json.loads(self.raw_service_catalog) if self.raw_service_catalog else []

    def policy_creds(self) -> dict[str, object]:
        return {
            "project_id": self.project_id,
            "user_id": self.user_id,
            "roles": self.roles,
            "is_admin": self.is_admin,
            "system_scope": self.system_scope,
            "domain_id": self.domain_id,
        }


def _header_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _identity(headers: dict[str, str], strategy: str) -> dict[str, str | None]:
    """The identity headers that count under ``strategy``: under keystone only those of
    a token auth_token confirmed (with delay_auth_decision an unconfirmed request gets
    here too, and must not be taken at its word)."""
    if strategy == "keystone" and headers.get("X-IDENTITY-STATUS") != "Confirmed":
        return {}
    return headers  # type: ignore[return-value]


def from_headers(headers: dict[str, str], request_id: str) -> RequestContext:
    """Build the context from the identity headers keystonemiddleware (or a noauth
    client) sets. Under noauth every caller is an admin, as in Octavia."""
    conf = config.CONF.api_settings
    noauth = conf.auth_strategy == "noauth"
    found = _identity(headers, conf.auth_strategy)
    project = found.get("X-PROJECT-ID") or found.get("X-TENANT-ID")
    if noauth and not project:
        project = conf.noauth_default_project_id
    return RequestContext(
        project_id=project,
        user_id=found.get("X-USER-ID"),
        roles=_header_list(found.get("X-ROLES")),
        is_admin=noauth,
        system_scope=found.get("OPENSTACK-SYSTEM-SCOPE") or None,
        # Set for a domain-scoped token only (a project's domain is X-Project-Domain-Id).
        domain_id=found.get("X-DOMAIN-ID") or None,
        request_id=request_id,
        user_name=found.get("X-USER-NAME"),
        project_name=found.get("X-PROJECT-NAME"),
        raw_service_catalog=found.get("X-SERVICE-CATALOG"),
        auth_token=found.get("X-AUTH-TOKEN") if conf.auth_strategy == "keystone" else None,
    )
