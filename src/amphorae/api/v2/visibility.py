"""Whether the requesting user may use the VIP's network, subnet and port: Octavia's
``[networking] allow_invisible_resource_usage``.

False (the default): each is looked up with the user's own Keystone token, so a user
cannot put a load balancer on another project's private network by knowing its id (the
service user, which the driver looks up as otherwise, sees every project's); what the
user cannot see is answered as Octavia does, ``400 <Kind> <id> not found.``. True: the
service user's lookups only. A driver without owners (local, no-op), or a request
without a token (``noauth``), has nothing to check.
"""

from __future__ import annotations

from typing import Any

from amphorae.api.context import RequestContext
from amphorae.common import config, errors
from amphorae.drivers import registry


def check(ctx: RequestContext, kind: str, resource_id: str | None) -> None:
    """400 naming ``kind`` and the id when the user cannot see it."""
    if (not resource_id or ctx.auth_token is None
            or config.CONF.networking.allow_invisible_resource_usage):
        return
    if not registry.shared_network().visible_to(ctx.auth_token, kind, resource_id):
        raise errors.InvalidSubresource(resource=kind.capitalize(), id=resource_id)


def check_vip(ctx: RequestContext, data: Any) -> None:
    """The VIP's port, network, subnet and additional VIPs' subnets of a create."""
    check(ctx, "port", data.vip_port_id)
    check(ctx, "network", data.vip_network_id and str(data.vip_network_id))
    check(ctx, "subnet", data.vip_subnet_id and str(data.vip_subnet_id))
    for extra in data.additional_vips:
        check(ctx, "subnet", str(extra.subnet_id))
