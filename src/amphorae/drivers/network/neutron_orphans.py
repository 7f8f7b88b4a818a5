"""This deployment's Neutron objects, found again by the mark on their description.

Every port and security group the Neutron driver makes carries ``amphorae deployment
<id>`` (ownership.alias) as its description, so the orphan sweep can list exactly what
this deployment made, in every project (a VIP port lives in the load balancer's), and
leave other deployments' and users' objects alone. Whose object it is comes from the
name Octavia gives it: ``octavia-lb-<lb>`` (VIP port), ``octavia-lb-vrrp-<amphora>`` and
``octavia-lb-member-<amphora>`` (amphora ports), ``lb-<lb>`` (the VIP security group).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from openstack.connection import Connection

from amphorae.drivers.network import ownership
from amphorae.drivers.network.base import OwnedResource

# Longest prefix first: a VIP port's prefix starts the amphora ports' names too.
PORT_OWNERS = (("octavia-lb-vrrp-", "amphora"), ("octavia-lb-member-", "amphora"),
               ("octavia-lb-", "load_balancer"))
GROUP_PREFIX = "lb-"


def mark(deployment: str) -> str:
    """The description of everything the driver makes for ``deployment``."""
    return ownership.alias(deployment)


def created(raw: Any) -> dt.datetime:
    """Neutron's ``created_at`` (ISO 8601, UTC) as a naive UTC datetime."""
    stamp = dt.datetime.fromisoformat(str(raw.created_at).replace("Z", "+00:00"))
    return stamp.astimezone(dt.UTC).replace(tzinfo=None) if stamp.tzinfo else stamp


def port_owner(raw: Any) -> OwnedResource | None:
    name = raw.name or ""
    for prefix, owner in PORT_OWNERS:
        if name.startswith(prefix):
            key = f"{owner}_id"
            return OwnedResource("port", raw.id, name, created(raw),
                                 **{key: name[len(prefix):]})
    return None


def owned(conn: Connection, deployment: str) -> list[OwnedResource]:
    """The deployment's ports and security groups (all projects: the service user is
    an admin), each with the load balancer or amphora it belongs to. The mark is
    checked again here: a Neutron that ignored the filter would list everything."""
    wanted = mark(deployment)
    ports = [port_owner(p) for p in conn.network.ports(description=wanted)
             if p.description == wanted]
    groups = [OwnedResource("security_group", g.id, g.name, created(g),
                            load_balancer_id=g.name[len(GROUP_PREFIX):])
              for g in conn.network.security_groups(description=wanted)
              if g.description == wanted and (g.name or "").startswith(GROUP_PREFIX)]
    return [r for r in ports if r is not None] + groups
