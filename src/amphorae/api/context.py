"""Who is calling: the request context every controller and policy check uses."""

from __future__ import annotations

import dataclasses

from amphorae.common import config


@dataclasses.dataclass
class RequestContext:
    project_id: str | None
    user_id: str | None = None
    roles: list[str] = dataclasses.field(default_factory=list)
    is_admin: bool = False
    system_scope: str | None = None
    request_id: str = ""

    def policy_creds(self) -> dict[str, object]:
        return {
            "project_id": self.project_id,
            "user_id": self.user_id,
            "roles": self.roles,
            "is_admin": self.is_admin,
            "system_scope": self.system_scope,
        }


def _header_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def from_headers(headers: dict[str, str], request_id: str) -> RequestContext:
    """Build the context from the identity headers keystonemiddleware (or a noauth
    client) sets. Under noauth every caller is an admin, as in Octavia."""
    conf = config.CONF.api_settings
    noauth = conf.auth_strategy == "noauth"
    project = headers.get("X-PROJECT-ID") or headers.get("X-TENANT-ID")
    if noauth and not project:
        project = conf.noauth_default_project_id
    return RequestContext(
        project_id=project,
        user_id=headers.get("X-USER-ID"),
        roles=_header_list(headers.get("X-ROLES")),
        is_admin=noauth,
        system_scope=headers.get("OPENSTACK-SYSTEM-SCOPE"),
        request_id=request_id,
    )
