"""Keystone authentication: keystonemiddleware's auth_token in front of the API.

Importing keystonemiddleware.auth_token registers its ``[keystone_authtoken]`` options on
the global configuration (as in every OpenStack service); the auth plugin's own options
(``auth_type = password`` with ``username``, ``password``...) are registered when the
middleware loads the plugin.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from keystonemiddleware import auth_token
from oslo_config import cfg

from amphorae.common import config


class AuthToken(auth_token.AuthProtocol):  # type: ignore[misc]
    """auth_token that lets version discovery through without a token, as Octavia does."""

    def __init__(self, app: Any, public_paths: Iterable[str]) -> None:
        # The service's own configuration object, already parsed (--config-file).
        super().__init__(app, {"oslo_config_config": config.CONF})
        self._public = frozenset(public_paths)

    def process_request(self, request: Any) -> Any:
        path = request.path_info.removesuffix(".json")
        if path in self._public or path.rstrip("/") in self._public:
            # Unauthenticated, and nothing the client sent may pass for an identity.
            request.remove_auth_headers()
            request.headers.pop("OpenStack-System-Scope", None)
            return None
        return super().process_request(request)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """``[keystone_authtoken]`` for the sample file: the middleware's options and those
    of the password plugin, the one a service user normally uses."""
    from keystoneauth1 import loading

    groups = auth_token.list_opts()
    plugin = loading.get_auth_plugin_conf_options("password")
    known = {opt.dest for _, opts in groups for opt in opts}
    return [(group, [*opts, *(o for o in plugin if o.dest not in known)])
            for group, opts in groups]
