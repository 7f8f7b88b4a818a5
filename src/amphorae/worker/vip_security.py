"""What may reach a load balancer's VIP, read from the database for the network driver's
``secure_vip``: every listener not being deleted (enabled or not, as Octavia), on its
layer-4 protocol and port, from each of its allowed CIDRs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from amphorae.common import constants as c
from amphorae.db import models as m
from amphorae.drivers.network import base as net
from amphorae.worker import desired


def vip_security(session: Session, lb_id: str, topology: str,
                 vips: tuple[str, ...]) -> net.VipSecurity:
    listeners = list(session.scalars(
        select(m.Listener).options(selectinload(m.Listener.allowed_cidrs))
        .where(m.Listener.load_balancer_id == lb_id,
               m.Listener.provisioning_status.not_in(desired.GONE))
        .order_by(m.Listener.protocol_port)))
    user_groups = tuple(sorted(session.scalars(select(m.VipSecurityGroup.sg_id).where(
        m.VipSecurityGroup.load_balancer_id == lb_id))))
    openings: list[net.Opening] = []
    if not user_groups:  # the user's groups replace the listener rules (Octavia)
        for listener in listeners:
            protocol = c.L4_PROTOCOL.get(listener.protocol, c.TCP).lower()
            cidrs = sorted(x.cidr for x in listener.allowed_cidrs) or [None]
            openings += [net.Opening(protocol, listener.protocol_port, cidr)
                         for cidr in cidrs]
    return net.VipSecurity(
        load_balancer_id=lb_id, vips=vips, openings=tuple(openings),
        vrrp=topology == c.TOPOLOGY_ACTIVE_STANDBY,
        peer_ports=tuple(sorted({x.peer_port for x in listeners if x.peer_port})),
        security_groups=user_groups)
