"""The VIP security group of the Neutron driver: ``lb-<load balancer id>``, as Octavia's
allowed_address_pairs driver names it, holding exactly the ingress rules a
:class:`VipSecurity` asks for (Neutron's default egress rules stay).

Rules are compared as values, so an update deletes only the rules no longer wanted and
creates only the missing ones: a run killed half-way is completed by the next.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from typing import Any

import openstack.exceptions as os_exc
from openstack.connection import Connection

from amphorae.drivers.network.base import VipSecurity

LOG = logging.getLogger(__name__)

VRRP_PROTOCOL = "112"
AUTH_HEADER_PROTOCOL = "51"  # AH, which keepalived's VRRP authentication may use

# (ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id);
# remote_group_id "self": the group itself (its id is not known before it exists).
Rule = tuple[str, str, int | None, int | None, str | None, str | None]
SELF = "self"


def group_name(load_balancer_id: str) -> str:
    return f"lb-{load_balancer_id}"


def ethertype(address: str) -> str:
    return f"IPv{ipaddress.ip_address(address).version}"


def wanted_rules(security: VipSecurity) -> set[Rule]:
    """Octavia's rules: each listener port from each allowed CIDR (from anywhere when it
    has none) for every IP version of the VIPs. For a pair, VRRP (and AH) and HAProxy's
    peer ports, only from the group's own ports (Octavia opens those to anyone)."""
    types = {ethertype(a) for a in security.vips}
    rules: set[Rule] = set()
    for opening in security.openings:
        cidr = (None if opening.cidr is None
                else str(ipaddress.ip_network(opening.cidr, strict=False)))
        for kind in types:
            if cidr is None or f"IPv{ipaddress.ip_network(cidr).version}" == kind:
                rules.add((kind, opening.protocol, opening.port, opening.port, cidr, None))
    if security.vrrp:
        primary = ethertype(security.vips[0])
        rules |= {(primary, proto, None, None, None, SELF)
                  for proto in (VRRP_PROTOCOL, AUTH_HEADER_PROTOCOL)}
        rules |= {(primary, "tcp", port, port, None, SELF) for port in security.peer_ports}
    return rules


def _key(rule: Any, group_id: str) -> Rule:
    remote_group = SELF if rule.remote_group_id == group_id else rule.remote_group_id
    prefix = rule.remote_ip_prefix
    if prefix is not None:
        prefix = str(ipaddress.ip_network(prefix, strict=False))
    return (rule.ether_type, str(rule.protocol).lower() if rule.protocol else "",
            rule.port_range_min, rule.port_range_max, prefix, remote_group)


def find_groups(conn: Connection, load_balancer_id: str) -> list[Any]:
    """The service project's groups of that name, oldest first (one, unless a create
    was retried after a timeout)."""
    found = conn.network.security_groups(name=group_name(load_balancer_id),
                                         project_id=conn.current_project_id)
    return sorted(found, key=lambda g: (g.created_at or "", g.id))


def find_group(conn: Connection, load_balancer_id: str) -> Any | None:
    groups = find_groups(conn, load_balancer_id)
    return groups[0] if groups else None


def ensure(conn: Connection, security: VipSecurity, mark: str) -> str:
    """The group with exactly the wanted ingress rules; returns its id. ``mark``: its
    description, naming the deployment that made it (neutron_orphans.py)."""
    group = find_group(conn, security.load_balancer_id)
    if group is None:
        group = conn.network.create_security_group(
            name=group_name(security.load_balancer_id), description=mark)
    wanted = wanted_rules(security)
    have: set[Rule] = set()
    for rule in conn.network.security_group_rules(security_group_id=group.id):
        if rule.direction != "ingress":
            continue
        key = _key(rule, group.id)
        if key in wanted and key not in have:
            have.add(key)
        else:
            ignore_missing(conn.network.delete_security_group_rule, rule.id)
    for kind, proto, low, high, prefix, remote in wanted - have:
        # Conflict: made by a run that died before it could tell.
        with contextlib.suppress(os_exc.ConflictException):
            conn.network.create_security_group_rule(
                security_group_id=group.id, direction="ingress", ether_type=kind,
                protocol=proto, port_range_min=low, port_range_max=high,
                remote_ip_prefix=prefix,
                remote_group_id=group.id if remote == SELF else remote)
    return str(group.id)


def delete(conn: Connection, load_balancer_id: str, attempts: int, interval: float) -> None:
    """Delete the group(s); Neutron refuses while a port still uses one (a port it is
    removing from an instance), so retry, then remove the driver's own amphora ports
    left on it (Octavia's way out), and try once more."""
    for group in find_groups(conn, load_balancer_id):
        for attempt in range(attempts + 1):
            try:
                ignore_missing(conn.network.delete_security_group, group.id)
                break
            except os_exc.ConflictException:
                if attempt == attempts:
                    _delete_own_ports_on(conn, group.id)
                    ignore_missing(conn.network.delete_security_group, group.id)
                    break
                time.sleep(interval)


def _delete_own_ports_on(conn: Connection, group_id: str) -> None:
    for port in conn.network.ports(project_id=conn.current_project_id):
        if group_id in (port.security_group_ids or []) and \
                (port.name or "").startswith("octavia-lb-"):
            LOG.warning("deleting port %s (%s), left on security group %s", port.id,
                        port.name, group_id)
            ignore_missing(conn.network.delete_port, port.id)


def ignore_missing(call: Any, *args: Any) -> None:
    """``call(*args)``; what is gone already needs no deleting."""
    with contextlib.suppress(os_exc.NotFoundException):
        call(*args)
