"""The Neutron network driver (``allowed_address_pairs_driver``), as Octavia's: through
openstacksdk as the service user (drivers/cloud.py).

What it makes, with Octavia's names (docs/neutron-driver.md):

- a VIP port ``octavia-lb-<lb id>`` (device_owner ``Octavia``, device_id ``lb-<lb id>``,
  admin down, in the load balancer's project), one fixed IP per VIP subnet; a user's port
  given as ``vip_port_id`` is only marked (device_id ``lb-<lb id>``) and released, never
  deleted;
- per amphora, a port ``octavia-lb-vrrp-<amphora id>`` on the VIP subnet with the VIP
  addresses as allowed address pairs (so keepalived may move them) and ports
  ``octavia-lb-member-<amphora id>`` on the member subnets, attached to the amphora's
  Nova instance;
- the security group ``lb-<lb id>`` (neutron_security.py) on the VIP and VRRP ports.

Nothing is remembered in memory: every call finds its ports by name (the service
project's) or device id, so a call killed half-way is finished by the next one.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Sequence
from typing import Any

import openstack.exceptions as os_exc
from keystoneauth1 import session, token_endpoint
from openstack.connection import Connection
from oslo_config import cfg

from amphorae.common import config, errors
from amphorae.drivers import cloud
from amphorae.drivers.network import neutron_orphans, ownership
from amphorae.drivers.network import neutron_security as security_group
from amphorae.drivers.network.base import (
    Amphora,
    AmphoraPorts,
    Network,
    NetworkDriver,
    OwnedResource,
    Port,
    Subnet,
    VipPlug,
    VipSecurity,
)

LOG = logging.getLogger(__name__)

OWNER = "Octavia"  # Octavia's OCTAVIA_OWNER


def vip_port_name(load_balancer_id: str) -> str:
    return f"octavia-lb-{load_balancer_id}"


def vip_device(load_balancer_id: str) -> str:
    return f"lb-{load_balancer_id}"


def vrrp_port_name(amphora_id: str) -> str:
    return f"octavia-lb-vrrp-{amphora_id}"


def member_port_name(amphora_id: str) -> str:
    return f"octavia-lb-member-{amphora_id}"


def _subnet(raw: Any) -> Subnet:
    return Subnet(id=raw.id, name=raw.name or "", network_id=raw.network_id,
                  cidr=ipaddress.ip_network(raw.cidr), gateway_ip=raw.gateway_ip)


def _fixed_ip(raw: Any, subnet_id: str | None = None) -> dict[str, str] | None:
    """The port's address on ``subnet_id`` (any subnet: its first)."""
    return next((f for f in raw.fixed_ips or []
                 if subnet_id is None or f["subnet_id"] == subnet_id), None)


def _port(raw: Any, subnet_id: str | None = None) -> Port:
    fixed = _fixed_ip(raw, subnet_id) or {"subnet_id": "", "ip_address": ""}
    return Port(id=raw.id, network_id=raw.network_id, subnet_id=fixed["subnet_id"],
                ip_address=fixed["ip_address"], device_id=raw.device_id or None,
                device_owner=raw.device_owner or None, project_id=raw.project_id or None)


def _user_error(exc: os_exc.HttpException, subnet: Subnet, ip_address: str | None
                ) -> errors.APIError:
    """Neutron's refusal of a VIP address, as the API answers it."""
    detail = exc.details or str(exc)
    if isinstance(exc, os_exc.ConflictException):
        if ip_address:
            return errors.Conflict(
                f"The VIP IP address is already in use: {ip_address} on {subnet.id}")
        return errors.Conflict(f"No more IP addresses available on subnet {subnet.id}.")
    if isinstance(exc, os_exc.NotFoundException):
        return errors.InvalidSubresource(resource="Subnet", id=subnet.id)
    return errors.ValidationError(detail=f"vip_address {ip_address}: {detail}")


class NeutronNetworkDriver(NetworkDriver):
    serves_networks = False  # the clients ask Neutron itself
    # No distributor yet: ACTIVE_ACTIVE would need ECMP routes on the tenant router, or a
    # distributor instance with the VIP as an allowed address pair (docs/active-active.md).
    distributes = False

    def __init__(self, conn: Connection, max_retries: int = 15, retry_interval: float = 1,
                 port_detach_timeout: float = 300, *, deployment: str | None = None,
                 conf: cfg.ConfigOpts = config.CONF) -> None:
        """``deployment``: whose objects these are (default: the state path's of
        ``conf``); it marks every port and group made (neutron_orphans.py)."""
        self.conn = conn
        self.max_retries = max_retries
        self.retry_interval = retry_interval
        self.port_detach_timeout = port_detach_timeout
        self._deployment = deployment
        self._conf = conf

    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts) -> NeutronNetworkDriver:
        opts = conf.networking
        conn = cloud.shared_connection() if conf is config.CONF else cloud.connection(conf)
        return cls(conn, opts.max_retries, opts.retry_interval, opts.port_detach_timeout,
                   conf=conf)

    @functools.cached_property
    def deployment(self) -> str:
        return self._deployment or ownership.local_deployment(self._conf)

    @property
    def mark(self) -> str:
        """The description of what this driver makes (the orphan sweep's key)."""
        return neutron_orphans.mark(self.deployment)

    @property
    def net(self) -> Any:
        return self.conn.network

    # -- lookups -----------------------------------------------------------------------

    def get_subnet(self, subnet_id: str, network_id: str | None = None) -> Subnet | None:
        raw = self._get(self.net.get_subnet, subnet_id)
        return None if raw is None else _subnet(raw)

    def get_network(self, network_id: str) -> Network | None:
        raw = self._get(self.net.get_network, network_id)
        if raw is None:
            return None
        subnets = sorted(self.net.subnets(network_id=raw.id), key=lambda s: s.id)
        return Network(id=raw.id, name=raw.name or "", subnets=tuple(map(_subnet, subnets)))

    def get_port(self, port_id: str) -> Port | None:
        raw = self._get(self.net.get_port, port_id)
        return None if raw is None else _port(raw)

    def visible_to(self, token: str, kind: str, resource_id: str) -> bool:
        """Asks Neutron with the user's own token (as Octavia does without
        ``allow_invisible_resource_usage``): what the user may not see is a 404."""
        endpoint = self.conn.network.get_endpoint().rstrip("/")
        if not endpoint.endswith("/v2.0"):
            endpoint += "/v2.0"
        user = session.Session(auth=token_endpoint.Token(endpoint, token))
        response = user.get(f"{endpoint}/{kind}s/{resource_id}", raise_exc=False)
        if response.status_code in (400, 404):  # 400: not an id Neutron accepts
            return False
        if response.status_code >= 300:
            raise os_exc.HttpException(
                f"Neutron answered {response.status_code} to GET {kind} {resource_id}")
        return True

    @staticmethod
    def _get(call: Any, resource_id: str) -> Any | None:
        if not resource_id:
            return None
        try:
            return call(resource_id)
        except os_exc.NotFoundException:
            return None
        except os_exc.BadRequestException:  # not an id Neutron accepts
            return None

    # -- VIPs --------------------------------------------------------------------------

    def allocate_vip(self, load_balancer_id: str, subnet: Subnet,
                     ip_address: str | None = None, project_id: str | None = None) -> Port:
        """The load balancer's VIP port gets an address on ``subnet`` (the port is made
        with the first VIP; additional VIPs are more fixed IPs on it, as in Octavia)."""
        if ip_address is not None and ipaddress.ip_address(ip_address) not in subnet.cidr:
            raise errors.ValidationError(
                detail=f"IP address {ip_address} is not in subnet {subnet.id}.")
        wanted: dict[str, str] = {"subnet_id": subnet.id}
        if ip_address:
            wanted["ip_address"] = ip_address
        existing = self._vip_port(load_balancer_id)
        try:
            if existing is None:
                args: dict[str, Any] = {}
                if project_id:
                    args["project_id"] = project_id
                raw = self.net.create_port(
                    name=vip_port_name(load_balancer_id), network_id=subnet.network_id,
                    admin_state_up=False, device_id=vip_device(load_balancer_id),
                    device_owner=OWNER, fixed_ips=[wanted], description=self.mark, **args)
                return _port(raw, subnet.id)
            held = _fixed_ip(existing, subnet.id)
            if held is not None and ip_address in (None, held["ip_address"]):
                return _port(existing, subnet.id)  # an earlier call got this far
            if held is not None:
                raise errors.ValidationError(
                    detail="Duplicate VIP subnet(s) specified. Only one IP can be bound "
                           "per subnet.")
            raw = self.net.update_port(existing.id,
                                       fixed_ips=[*existing.fixed_ips, wanted])
            return _port(raw, subnet.id)
        except os_exc.HttpException as exc:
            if exc.status_code in (400, 404, 409):
                raise _user_error(exc, subnet, ip_address) from None
            raise

    def _vip_port(self, load_balancer_id: str) -> Any | None:
        """The VIP port this driver made for the load balancer."""
        found = [p for p in self.net.ports(device_id=vip_device(load_balancer_id))
                 if p.name == vip_port_name(load_balancer_id)]
        return found[0] if found else None

    def adopt_vip_port(self, load_balancer_id: str, port_id: str) -> Port:
        raw = self._get(self.net.get_port, port_id)
        if raw is None:
            raise errors.InvalidSubresource(resource="Port", id=port_id)
        device = vip_device(load_balancer_id)
        if raw.device_id and raw.device_id != device:
            raise errors.BadRequest(f"Port {port_id} is already used by device "
                                    f"{raw.device_id}.")
        if not raw.fixed_ips:
            raise errors.ValidationError(detail=f"Port {port_id} has no IP address.")
        if raw.device_id != device:  # marked, so no other load balancer takes it
            raw = self.net.update_port(raw.id, device_id=device)
        return _port(raw)

    def deallocate_vip(self, load_balancer_id: str) -> None:
        """Delete the VIP port this driver made, release an adopted one (its device id
        and the VIP security group removed, the user's groups kept), delete the group."""
        group = security_group.find_group(self.conn, load_balancer_id)
        for raw in self.net.ports(device_id=vip_device(load_balancer_id)):
            if raw.name == vip_port_name(load_balancer_id):
                self._delete_port(raw.id)
                continue
            groups = [g for g in raw.security_group_ids or []
                      if group is None or g != group.id]
            self.net.update_port(raw.id, device_id="", security_group_ids=groups)
        security_group.delete(self.conn, load_balancer_id, self.max_retries,
                              self.retry_interval)

    def secure_vip(self, security: VipSecurity) -> None:
        group_id = security_group.ensure(self.conn, security, self.mark)
        for raw in self.net.ports(device_id=vip_device(security.load_balancer_id)):
            ours = raw.name == vip_port_name(security.load_balancer_id)
            kept = () if ours else tuple(raw.security_group_ids or ())
            self._set_groups(raw, (group_id, *security.security_groups, *kept))

    def _set_groups(self, raw: Any, groups: Sequence[str]) -> Any:
        wanted = list(dict.fromkeys(groups))
        if sorted(raw.security_group_ids or []) == sorted(wanted):
            return raw
        return self.net.update_port(raw.id, security_group_ids=wanted)

    # -- amphorae ----------------------------------------------------------------------

    def plug(self, amphora: Amphora, vip: VipPlug,
             member_subnets: Sequence[Subnet]) -> AmphoraPorts:
        vip_subnet = self.get_subnet(vip.subnet_id)
        if vip_subnet is None:
            raise errors.ValidationError(detail=f"subnet {vip.subnet_id} is unknown")
        group = security_group.find_group(self.conn, vip.load_balancer_id)
        if group is None:
            raise RuntimeError(f"security group {security_group.group_name(vip.load_balancer_id)}"
                               " is missing: secure_vip comes before plug")
        vrrp = self._ensure_port(amphora, vrrp_port_name(amphora.id), vip_subnet,
                                 groups=(group.id, *vip.security_groups),
                                 pairs=vip.addresses)
        members = self._own_ports(member_port_name(amphora.id))
        wanted = {s.id: s for s in member_subnets if s.id != vip_subnet.id}
        for raw in members:  # ports no longer wanted first
            fixed = _fixed_ip(raw)
            if fixed is None or fixed["subnet_id"] not in wanted:
                self._remove_port(raw, amphora.compute_id)
        member_ports = {s.id: self._ensure_port(amphora, member_port_name(amphora.id), s)
                        for s in wanted.values()}
        return AmphoraPorts(vrrp_port=vrrp, member_ports=member_ports)

    def _own_ports(self, name: str) -> list[Any]:
        return sorted(self.net.ports(name=name, project_id=self.conn.current_project_id),
                      key=lambda p: (p.created_at or "", p.id))

    def _ensure_port(self, amphora: Amphora, name: str, subnet: Subnet,
                     groups: Sequence[str] | None = None, pairs: Sequence[str] = ()) -> Port:
        """The amphora's port ``name`` on ``subnet``, made when missing (extra copies
        from a retried create deleted), with these security groups (None: Neutron's
        default) and allowed address pairs, attached to the instance."""
        found = [p for p in self._own_ports(name) if _fixed_ip(p, subnet.id) is not None]
        for extra in found[1:]:
            self._remove_port(extra, amphora.compute_id)
        pair_list = [{"ip_address": a} for a in pairs]
        if found:
            raw = found[0]
            if groups is not None:
                raw = self._set_groups(raw, groups)
            held = sorted(p["ip_address"] for p in raw.allowed_address_pairs or [])
            if held != sorted(pairs):
                raw = self.net.update_port(raw.id, allowed_address_pairs=pair_list)
        else:
            args: dict[str, Any] = {}
            if groups is not None:
                args["security_group_ids"] = list(dict.fromkeys(groups))
            if pair_list:
                args["allowed_address_pairs"] = pair_list
            raw = self.net.create_port(name=name, network_id=subnet.network_id,
                                       fixed_ips=[{"subnet_id": subnet.id}],
                                       admin_state_up=True, device_owner=OWNER,
                                       description=self.mark, **args)
        if amphora.compute_id and raw.device_id != amphora.compute_id:
            self._attach(amphora.compute_id, raw)
            raw = self.net.get_port(raw.id)
        return _port(raw, subnet.id)

    def _attach(self, compute_id: str, raw: Any) -> None:
        if raw.device_id:  # still on a device Nova has not let go of: not ours to take
            raise RuntimeError(f"port {raw.id} ({raw.name}) is attached to "
                               f"{raw.device_id}, not to {compute_id}")
        try:
            self.conn.compute.create_server_interface(compute_id, port_id=raw.id)
        except os_exc.ConflictException:
            current = self.net.get_port(raw.id)
            if current.device_id != compute_id:
                raise
            LOG.info("port %s is attached to %s already", raw.id, compute_id)

    # -- orphans -------------------------------------------------------------------------

    def owned_resources(self) -> list[OwnedResource]:
        return neutron_orphans.owned(self.conn, self.deployment)

    def remove_resource(self, resource: OwnedResource) -> None:
        if resource.kind == "security_group":
            security_group.ignore_missing(self.net.delete_security_group, resource.id)
            return
        raw = self._get(self.net.get_port, resource.id)
        if raw is None:
            return
        # An amphora port may still be on its (orphaned) server: detached through Nova.
        attached = (raw.device_owner or "").startswith("compute:")
        self._remove_port(raw, raw.device_id if attached else None)

    def unplug(self, amphora_id: str, compute_id: str | None) -> None:
        for name in (vrrp_port_name(amphora_id), member_port_name(amphora_id)):
            for raw in self._own_ports(name):
                self._remove_port(raw, compute_id)

    def _remove_port(self, raw: Any, compute_id: str | None) -> None:
        """Detach the port from the instance (waiting a bounded time for Nova), then
        delete it."""
        if compute_id and raw.device_id == compute_id:
            try:
                self.conn.compute.delete_server_interface(raw.id, server=compute_id)
            except os_exc.NotFoundException:
                pass  # the instance or its interface is gone already
            else:
                self._await_detached(raw.id)
        self._delete_port(raw.id)

    def _await_detached(self, port_id: str) -> None:
        deadline = time.monotonic() + self.port_detach_timeout
        while time.monotonic() < deadline:
            current = self._get(self.net.get_port, port_id)
            if current is None or not current.device_id:
                return
            time.sleep(min(self.retry_interval, 0.2))
        LOG.warning("port %s still attached after %s s; deleting it anyway", port_id,
                    self.port_detach_timeout)

    def _delete_port(self, port_id: str) -> None:
        security_group.ignore_missing(self.net.delete_port, port_id)

