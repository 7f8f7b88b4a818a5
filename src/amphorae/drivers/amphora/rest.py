"""The REST amphora driver: brings one amphora's data plane to a load balancer's desired state
through its agent (Octavia's ``amphora_haproxy_rest_driver``).

It renders on the controller side, as Octavia does: haproxy.cfg (with the amphora's own
file paths and descriptor limit), nftables rules for UDP listeners and, in an
ACTIVE_STANDBY pair, keepalived.conf with its check script; then it uploads what changed
and reloads. The agent validates every config before swapping it in, so a config HAProxy
refuses raises :class:`ConfigRefused` and the amphora keeps serving the previous one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Callable
from pathlib import Path

from oslo_config import cfg

from amphorae.common import config
from amphorae.contract import model, udp_config
from amphorae.contract import nftables as nft_rules
from amphorae.contract.layout import VrrpFiles
from amphorae.drivers import agent_client
from amphorae.drivers.amphora.base import (
    AmphoraDriver,
    AmphoraRef,
    ConfigRefused,
    TLSFiles,
    VipSubnet,
    VRRPGroup,
)
from amphorae.drivers.compute import agent_config, amphora_boot, nova
from amphorae.drivers.compute.base import ComputeDriver
from amphorae.drivers.network import ports
from amphorae.render import haproxy as render_haproxy
from amphorae.render import keepalived as render_ka
from amphorae.render.haproxy_settings import AmphoraPaths, HaproxySettings

MAX_FDS_REMEMBERED = 4096


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one amphora should run for a load balancer; None: nothing of that kind."""

    haproxy: str | None
    udp: str | None  # the agent's UDP document (it renders the nftables rules itself)
    check_script: str | None
    keepalived: str | None


class RestAmphoraDriver(AmphoraDriver):
    """``client_for(amp)`` gives an agent client; ``base_path(amp)`` the agent's base
    directory (per amphora on a netns host, the same everywhere on VMs)."""

    def __init__(self, client_for: Callable[[AmphoraRef], agent_client.AgentClient],
                 base_path: Callable[[AmphoraRef], Path], plugs_vip: bool = False) -> None:
        """``plugs_vip``: a SINGLE amphora's VIP is put on its VIP-network interface
        through the agent (VMs; on a netns host the network driver does it)."""
        self.client_for = client_for
        self.base_path = base_path
        self.plugs_vip = plugs_vip
        self.settings = HaproxySettings.from_config(config.CONF)
        # amphora id -> its agent's descriptor limit: fixed for an amphora's life, so
        # asked once rather than on every reconcile.
        self._max_fds: dict[str, int | None] = {}

    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts, compute: ComputeDriver) -> RestAmphoraDriver:
        """Agents reached the way the compute driver booted them (netns: per-amphora
        certificates and folders on this host; Nova: the controller CA's client
        certificate and the image's fixed folder)."""
        ha = conf.haproxy_amphora
        if isinstance(compute, nova.NovaComputeDriver):
            ca, vm_base = compute.controller_ca, Path(agent_config.VM_LAYOUT.base_path)

            def vm_client(amp: AmphoraRef) -> agent_client.AgentClient:
                return ca.client(amp.id, amp.management_ip,
                                 max_retries=ha.active_connection_max_retries,
                                 retry_interval=ha.active_connection_retry_interval)

            return cls(vm_client, lambda amp: vm_base, plugs_vip=True)
        if not isinstance(compute, amphora_boot.AmphoraBooter):
            raise ValueError("[controller_worker] amphora_driver = amphora_haproxy_rest_driver "
                             "needs compute_driver = compute_netns_driver or "
                             "compute_nova_driver")

        def client_for(amp: AmphoraRef) -> agent_client.AgentClient:
            return compute.client(amp.id, amp.management_ip,
                                  max_retries=ha.active_connection_max_retries,
                                  retry_interval=ha.active_connection_retry_interval)

        def base_path(amp: AmphoraRef) -> Path:
            return compute.folder(amp.id) / amphora_boot.AGENT_BASE

        return cls(client_for, base_path)

    def apply(self, amp: AmphoraRef, lb: model.LoadBalancer, tls: TLSFiles,
              vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> None:
        client = self.client_for(amp)
        paths = AmphoraPaths.for_lb(str(self.base_path(amp)), lb.id)
        self._certificates(client, lb.id, paths, tls)
        if self.plugs_vip and vrrp is None:
            _plug_vips(client, amp, lb, vip_subnet)
        plan = self._plan(client, amp, lb, vrrp, vip_subnet)
        self._haproxy(client, lb.id, plan.haproxy)
        self._nftables(client, plan.udp)
        if plan.keepalived is not None and plan.check_script is not None:
            self._keepalived(client, plan.check_script, plan.keepalived)

    def holds(self, amp: AmphoraRef, address: str) -> bool:
        return self.client_for(amp).interface_of(address, max_retries=0) is not None

    def drifted(self, amp: AmphoraRef, lb: model.LoadBalancer, tls: TLSFiles,
                vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> list[str]:
        client = self.client_for(amp)
        client.max_retries = 0  # an agent that does not answer is the health manager's
        plan = self._plan(client, amp, lb, vrrp, vip_subnet)
        found = []
        if plan.haproxy is not None and client.running_haproxy_md5(lb.id) != _md5(plan.haproxy):
            found.append("haproxy")
        if plan.udp is not None and client.get_udp_config() != plan.udp:
            found.append("udp")
        if plan.keepalived is not None and client.running_vrrp_md5() != _md5(plan.keepalived):
            found.append("keepalived")
        return found

    def _plan(self, client: agent_client.AgentClient, amp: AmphoraRef,
              lb: model.LoadBalancer, vrrp: VRRPGroup | None, vip_subnet: VipSubnet) -> _Plan:
        base = self.base_path(amp)
        paths = AmphoraPaths.for_lb(str(base), lb.id)
        has_tcp = any(li.protocol != "UDP" for li in lb.listeners)
        has_udp = any(li.protocol == "UDP" for li in lb.listeners)
        haproxy = None
        if has_tcp:
            settings = dataclasses.replace(self.settings, fd_limit=self._fd_limit(client, amp))
            haproxy = render_haproxy.render(lb, settings, paths)
        script = keepalived = None
        if vrrp is not None:
            script = render_ka.render_check_script(
                [paths.stats_socket] if has_tcp else [],
                nft_tables=[nft_rules.TABLE] if has_udp else [])
            keepalived = render_ka.render(_vrrp_config(amp, lb, base, vrrp, vip_subnet))
        return _Plan(haproxy, udp_config.render(lb) if has_udp else None, script, keepalived)

    def _fd_limit(self, client: agent_client.AgentClient, amp: AmphoraRef) -> int | None:
        if amp.id not in self._max_fds:
            if len(self._max_fds) >= MAX_FDS_REMEMBERED:  # amphorae come and go
                self._max_fds.clear()
            self._max_fds[amp.id] = client.info().max_fds
        return self._max_fds[amp.id]

    # -- certificates ------------------------------------------------------------------

    @staticmethod
    def _certificates(client: agent_client.AgentClient, lb_id: str, paths: AmphoraPaths,
                      tls: TLSFiles) -> None:
        """Upload what the agent does not hold yet; a crt-list names the files by their
        paths on this amphora."""
        for name, pem in tls.files.items():
            client.ensure_certificate(lb_id, name, pem)
        for name, certs in tls.crt_lists.items():
            text = "".join(f"{paths.cert(cert)}\n" for cert in certs)
            client.ensure_certificate(lb_id, name, text.encode())

    # -- pushing -------------------------------------------------------------------------

    @staticmethod
    def _haproxy(client: agent_client.AgentClient, lb_id: str, text: str | None) -> None:
        if text is None:
            if client.listeners():
                client.delete_listeners(lb_id)
            return
        # What HAProxy runs, not what is installed: a worker that died between an upload
        # and its reload left the new file installed and the old config serving.
        if client.running_haproxy_md5(lb_id) == _md5(text):
            return
        _upload("HAProxy configuration", lambda: client.upload_haproxy_config(lb_id, text))
        client.reload(lb_id)  # starts it when it is not running

    @staticmethod
    def _nftables(client: agent_client.AgentClient, document: str | None) -> None:
        """The agent gets the UDP part of the model, not rules: it checks the members'
        health itself and renders the nftables rules for the healthy ones."""
        if document is not None:
            if client.get_udp_config() == document:
                return  # unchanged: the agent keeps its members' health
            _upload("UDP listeners", lambda: client.upload_udp_config(document))
        elif client.get_nftables() is not None:
            client.delete_nftables()  # also ends the agent's UDP health checks

    @staticmethod
    def _keepalived(client: agent_client.AgentClient, script: str, text: str) -> None:
        client.upload_vrrp_check_script(script)
        if client.running_vrrp_md5() == _md5(text):
            return
        _upload("keepalived configuration", lambda: client.upload_vrrp_config(text))
        client.vrrp_reload()  # starts keepalived when it is down


def _vrrp_config(amp: AmphoraRef, lb: model.LoadBalancer, base: Path, group: VRRPGroup,
                 vip_subnet: VipSubnet) -> render_ka.VRRPConfig:
    if amp.vrrp_ip is None:
        raise ValueError(f"amphora {amp.id} of an ACTIVE_STANDBY pair has no vrrp_ip")
    conf = config.CONF.keepalived_vrrp
    peers = tuple(p.address for p in lb.peers if p.address != amp.vrrp_ip)
    return render_ka.VRRPConfig(
        name=lb.id.replace("-", ""), interface=ports.VIP_IFNAME, vrrp_ip=amp.vrrp_ip,
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


def _plug_vips(client: agent_client.AgentClient, amp: AmphoraRef, lb: model.LoadBalancer,
               vip_subnet: VipSubnet) -> None:
    """The VIPs of the amphora's subnet onto the interface holding its own address there
    (Neutron gave it that one; keepalived would add the VIPs in a pair)."""
    if amp.vrrp_ip is None:
        raise ValueError(f"amphora {amp.id} has no address on the VIP network (vrrp_ip)")
    subnet = ipaddress.ip_interface(f"{amp.vrrp_ip}/{vip_subnet.prefixlen}").network
    for vip in lb.vips:
        if ipaddress.ip_address(vip) in subnet:
            client.plug_vip(vip, str(subnet), amp.vrrp_ip)


def _upload(what: str, upload: Callable[[], object]) -> None:
    """The agent validates what it is sent: its 400 means the content was refused."""
    try:
        upload()
    except agent_client.AgentRequestError as exc:
        if exc.status == 400:
            raise ConfigRefused(what, str(exc.details)) from exc
        raise


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _same_family(a: str, b: str) -> bool:
    return ipaddress.ip_address(a).version == ipaddress.ip_address(b).version
