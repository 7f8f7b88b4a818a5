"""The amphora driver: brings one amphora's data plane to a load balancer's desired state
through its agent (Octavia's ``amphora_haproxy_rest_driver``).

It renders on the controller side, as Octavia does: haproxy.cfg (with the amphora's own
file paths and descriptor limit), nftables rules for UDP listeners and, in an
ACTIVE_STANDBY pair, keepalived.conf with its check script; then it uploads what changed
and reloads. The agent validates every config before swapping it in, so a config HAProxy
refuses raises :class:`ConfigRefused` and the amphora keeps serving the previous one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping
from pathlib import Path

from amphorae.common import config
from amphorae.drivers import agent_client
from amphorae.render import haproxy as render_haproxy
from amphorae.render import keepalived as render_ka
from amphorae.render import model
from amphorae.render import nftables as render_nft
from amphorae.render.haproxy_settings import AmphoraPaths, HaproxySettings

VIP_IFNAME = "eth1"
NFT_TABLE = "inet amphorae"


class ConfigRefused(Exception):
    """The agent refused a configuration (HAProxy's or keepalived's check failed)."""

    def __init__(self, what: str, details: str) -> None:
        super().__init__(f"{what} refused: {details}".strip())
        self.details = details


@dataclasses.dataclass(frozen=True)
class AmphoraRef:
    """What the controller knows about one running amphora."""

    id: str
    role: str  # STANDALONE, MASTER, BACKUP
    management_ip: str
    vrrp_ip: str | None = None  # ACTIVE_STANDBY: its own address on the VIP subnet


@dataclasses.dataclass(frozen=True)
class VRRPGroup:
    """The pair's shared keepalived settings (Octavia's vrrp_group row)."""

    auth_pass: str
    virtual_router_id: int = 1
    advert_int: float = 1


@dataclasses.dataclass(frozen=True)
class VipSubnet:
    prefixlen: int
    gateway: str | None


class RestAmphoraDriver:
    """``client_for(amp)`` gives an agent client; ``base_path(amp)`` the agent's base
    directory (per amphora on a netns host, the same everywhere on VMs)."""

    def __init__(self, client_for: Callable[[AmphoraRef], agent_client.AgentClient],
                 base_path: Callable[[AmphoraRef], Path]) -> None:
        self.client_for = client_for
        self.base_path = base_path
        self.settings = HaproxySettings.from_config(config.CONF)

    def apply(self, amp: AmphoraRef, lb: model.LoadBalancer, files: Mapping[str, bytes],
              vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> None:
        client = self.client_for(amp)
        base = self.base_path(amp)
        paths = AmphoraPaths.for_lb(str(base), lb.id)
        for name, pem in files.items():
            client.ensure_certificate(lb.id, name, pem)
        self._haproxy(client, lb, paths)
        self._nftables(client, lb)
        if vrrp is not None:
            self._keepalived(client, amp, lb, paths, base, vrrp, vip_subnet)

    # -- HAProxy -----------------------------------------------------------------------

    def _haproxy(self, client: agent_client.AgentClient, lb: model.LoadBalancer,
                 paths: AmphoraPaths) -> None:
        if not any(li.protocol != "UDP" for li in lb.listeners):
            if client.listeners():
                client.delete_listeners(lb.id)
            return
        settings = dataclasses.replace(self.settings, fd_limit=client.info().max_fds)
        text = render_haproxy.render(lb, settings, paths)
        running = any(x.get("status") == "ACTIVE" for x in client.listeners())
        if running and _current_config(client, lb.id) == text:
            return
        try:
            client.upload_haproxy_config(lb.id, text)
        except agent_client.AgentRequestError as exc:
            if exc.status == 400:
                raise ConfigRefused("HAProxy configuration", str(exc.details)) from exc
            raise
        client.reload(lb.id)  # starts it when it is not running

    # -- nftables (UDP listeners) --------------------------------------------------------

    def _nftables(self, client: agent_client.AgentClient, lb: model.LoadBalancer) -> None:
        if any(li.protocol == "UDP" for li in lb.listeners):
            body = render_nft.render(lb).encode()
            try:
                client.request("PUT", "nftables", body=body)
            except agent_client.AgentRequestError as exc:
                if exc.status == 400:
                    raise ConfigRefused("nftables rules", str(exc.details)) from exc
                raise
        else:
            client.request("DELETE", "nftables")

    # -- keepalived (ACTIVE_STANDBY) ------------------------------------------------------

    def _keepalived(self, client: agent_client.AgentClient, amp: AmphoraRef,
                    lb: model.LoadBalancer, paths: AmphoraPaths, base: Path,
                    group: VRRPGroup, vip_subnet: VipSubnet) -> None:
        from amphorae.agent.keepalived import VrrpFiles  # the agent's file layout

        if amp.vrrp_ip is None:
            raise ValueError(f"amphora {amp.id} of an ACTIVE_STANDBY pair has no vrrp_ip")
        conf = config.CONF.keepalived_vrrp
        has_tcp = any(li.protocol != "UDP" for li in lb.listeners)
        has_udp = any(li.protocol == "UDP" for li in lb.listeners)
        script = render_ka.render_check_script(
            [paths.stats_socket] if has_tcp else [],
            nft_tables=[NFT_TABLE] if has_udp else [])
        peers = tuple(p.address for p in lb.peers if p.address != amp.vrrp_ip)
        vrrp = render_ka.VRRPConfig(
            name=lb.id.replace("-", ""), interface=VIP_IFNAME, vrrp_ip=amp.vrrp_ip,
            peer_ips=peers, priority=render_ka.priority_for(amp.role),
            vips=tuple(render_ka.VRRPVip(v, vip_subnet.prefixlen, vip_subnet.gateway)
                       for v in lb.vips if _same_family(v, amp.vrrp_ip)),
            auth_pass=group.auth_pass,
            check_script=str(VrrpFiles.under(base).check_script),
            virtual_router_id=group.virtual_router_id, advert_int=group.advert_int,
            check_interval=conf.vrrp_check_interval, check_fall=conf.vrrp_fail_count,
            check_rise=conf.vrrp_success_count, garp_refresh=conf.vrrp_garp_refresh_interval,
            garp_refresh_repeat=conf.vrrp_garp_refresh_count,
            down_timer_adverts=conf.vrrp_down_timer_adverts, router_id=amp.id)
        client.request("PUT", "vrrp/check_script", body=script.encode())
        if _put_if_changed(client, "vrrp/upload", render_ka.render(vrrp).encode()):
            client.request("PUT", "vrrp/reload")  # starts keepalived when it is down


def _current_config(client: agent_client.AgentClient, lb_id: str) -> str | None:
    try:
        return client.get_haproxy_config(lb_id)
    except agent_client.AgentRequestError as exc:
        if exc.status == 404:
            return None
        raise


def _put_if_changed(client: agent_client.AgentClient, path: str, body: bytes) -> bool:
    try:
        if client.request("GET", path).body == body:
            return False
    except agent_client.AgentRequestError as exc:
        if exc.status != 404:
            raise
    try:
        client.request("PUT", path, body=body)
    except agent_client.AgentRequestError as exc:
        if exc.status == 400:
            raise ConfigRefused(path, str(exc.details)) from exc
        raise
    return True


def _same_family(a: str, b: str) -> bool:
    return ipaddress.ip_address(a).version == ipaddress.ip_address(b).version
