"""The Nova compute driver (``compute_nova_driver``): an amphora is a Nova server.

Octavia's options and names: the server is ``amphora-<amphora id>`` (or, with ``[nova]
random_amphora_name_length``, an opaque ``a[A-Z0-9]*`` name, here derived from the id so
that it can be found again), booted from the newest active Glance image tagged
``[controller_worker] amp_image_tag`` (of ``amp_image_owner_id``), with ``amp_flavor_id``,
on ``amp_boot_network_list`` (the first is the management network: ``lb_network_ip``),
``amp_secgroup_list``, ``amp_ssh_key_name``, ``[nova] availability_zone``, a config drive,
and the agent's three files (agent_config.py) as personality files, or with
``user_data_config_drive`` as cloud-init user data. A pair's servers share the server
group ``octavia-lb-<load balancer id>`` when ``[nova] enable_anti_affinity`` is set.

Asynchronous: :meth:`build` asks Nova for the server and answers BUILDING at once; the
reconcile comes back later and :meth:`build` (idempotent) then answers what became of it.
Crash-safe without memory: every server carries metadata naming its amphora and this
deployment, so a repeated build finds the server of a build that was killed half-way
instead of booting a second one, and :meth:`list_instances` finds this deployment's.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import logging
import string
from typing import Any

import openstack
import yaml
from openstack import exceptions as os_exc
from oslo_config import cfg

from amphorae.common import config
from amphorae.drivers import cloud
from amphorae.drivers.compute import agent_config, base
from amphorae.drivers.network import ownership

LOG = logging.getLogger(__name__)

NAME_PREFIX = "amphora-"
SERVER_GROUP_PREFIX = "octavia-lb-"
META_AMPHORA = "amphorae_amphora_id"
META_DEPLOYMENT = "amphorae_deployment"
META_CERT_EXPIRATION = "amphorae_cert_expiration"  # of the agent's certificate, ISO UTC
# The last microversion that takes personality files (2.57 dropped them).
PERSONALITY_MICROVERSION = "2.56"
ANTI_AFFINITY = "anti-affinity"
SOFT_ANTI_AFFINITY = "soft-anti-affinity"

# Nova's server status -> ours. A server that is being rebooted, migrated or resized
# still is the amphora (its agent comes back); stopped, paused or failed ones are not.
_STATUS = {"BUILD": base.BUILDING,
           "ACTIVE": base.ACTIVE, "REBOOT": base.ACTIVE, "HARD_REBOOT": base.ACTIVE,
           "MIGRATING": base.ACTIVE, "RESIZE": base.ACTIVE, "VERIFY_RESIZE": base.ACTIVE,
           "REVERT_RESIZE": base.ACTIVE, "PASSWORD": base.ACTIVE, "REBUILD": base.ACTIVE,
           "DELETED": base.DELETED, "SOFT_DELETED": base.DELETED}

nova_opts = [
    cfg.BoolOpt("enable_anti_affinity", default=False,
                help="Put the two amphorae of an ACTIVE_STANDBY load balancer into one "
                     "Nova server group (octavia-lb-<id>) with anti_affinity_policy."),
    cfg.StrOpt("anti_affinity_policy", default=ANTI_AFFINITY,
               choices=[ANTI_AFFINITY, SOFT_ANTI_AFFINITY],
               help="Policy of those server groups: anti-affinity (never on one host) or "
                    "soft-anti-affinity (when possible)."),
    cfg.StrOpt("availability_zone",
               help="Availability zone amphorae boot in (unset: Nova's default)."),
    cfg.IntOpt("random_amphora_name_length", default=0, min=0,
               help="Non-zero: servers get opaque names of this length, a[A-Z0-9]* "
                    "(derived from the amphora id) instead of amphora-<id>."),
]
config.CONF.register_opts(nova_opts, group="nova")


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("nova", nova_opts)]


class ComputeBuildError(RuntimeError):
    """Nova cannot boot the amphora as configured (the message names the option)."""


def server_name(amphora_id: str, random_length: int = 0) -> str:
    """``amphora-<id>``; or an opaque ``a[A-Z0-9]*`` name of ``random_length``
    characters, drawn from a hash of the id so a repeated build asks for the same one."""
    if not random_length:
        return NAME_PREFIX + amphora_id
    alphabet = string.ascii_uppercase + string.digits
    number = int.from_bytes(hashlib.sha256(amphora_id.encode()).digest(), "big")
    chars = []
    for _ in range(random_length - 1):
        number, digit = divmod(number, len(alphabet))
        chars.append(alphabet[digit])
    return "a" + "".join(chars)


def map_status(nova_status: str | None) -> str:
    return _STATUS.get((nova_status or "").upper(), base.ERROR)


def cloud_init(files: dict[str, bytes]) -> str:
    """cloud-init user data that writes ``files`` (secret ones too: 0600) and restarts
    the agent, as Octavia's user_data_config_drive template does."""
    doc = {"write_files": [{"path": path, "permissions": "0600", "encoding": "b64",
                            "content": base64.b64encode(data).decode()}
                           for path, data in files.items()],
           "runcmd": [["systemctl", "restart", "amphora-agent"]]}
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


@dataclasses.dataclass(frozen=True)
class BootSettings:
    """What every amphora is booted with, from ``[controller_worker]`` and ``[nova]``."""

    image_tag: str
    image_owner: str
    flavor_id: str
    networks: tuple[str, ...]
    security_groups: tuple[str, ...]
    key_name: str
    user_data_config_drive: bool
    availability_zone: str | None
    random_name_length: int
    anti_affinity: bool
    anti_affinity_policy: str

    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts) -> BootSettings:
        cw, nova = conf.controller_worker, conf.nova
        return cls(image_tag=cw.amp_image_tag, image_owner=cw.amp_image_owner_id,
                   flavor_id=cw.amp_flavor_id, networks=tuple(cw.amp_boot_network_list),
                   security_groups=tuple(cw.amp_secgroup_list), key_name=cw.amp_ssh_key_name,
                   user_data_config_drive=cw.user_data_config_drive,
                   availability_zone=nova.availability_zone or None,
                   random_name_length=nova.random_amphora_name_length,
                   anti_affinity=nova.enable_anti_affinity,
                   anti_affinity_policy=nova.anti_affinity_policy)


class NovaComputeDriver(base.ComputeDriver):
    @classmethod
    def from_config(cls, conf: cfg.ConfigOpts) -> NovaComputeDriver:
        return cls(conf)

    def __init__(self, conf: cfg.ConfigOpts = config.CONF,
                 connection: openstack.connection.Connection | None = None, *,
                 deployment: str | None = None) -> None:
        """``connection``: default the service user's from ``[service_auth]``;
        ``deployment``: whose amphorae these are (default: the state path's)."""
        self.conf = conf
        self.settings = BootSettings.from_config(conf)
        self._connection = connection
        self._deployment = deployment
        self.controller_ca = agent_config.ControllerCA(
            agent_config.ca_dir(conf), conf.certificates.cert_validity_time)

    @functools.cached_property
    def conn(self) -> openstack.connection.Connection:
        if self._connection is not None:
            return self._connection
        return cloud.shared_connection() if self.conf is config.CONF else cloud.connection(
            self.conf)

    @functools.cached_property
    def deployment(self) -> str:
        return self._deployment or ownership.local_deployment(self.conf)

    # -- build -------------------------------------------------------------------------

    def build(self, amphora_id: str, server_group_id: str | None = None) -> base.Instance:
        """The amphora's server as it is now; asks Nova for one when there is none.
        BUILDING until Nova has it running: call again to follow it."""
        server = self._find(amphora_id)
        if server is None:
            self._boot(amphora_id, server_group_id)
            server = self._find(amphora_id)
            if server is None:  # accepted but not listed: the next call finds it
                return base.Instance(amphora_id, "", base.BUILDING)
        return self._instance(server, with_address=True)

    def _boot(self, amphora_id: str, server_group_id: str | None) -> None:
        s = self.settings
        if not s.flavor_id:
            raise ComputeBuildError("[controller_worker] amp_flavor_id: not set")
        files = self.controller_ca.agent_files(
            amphora_id, agent_config.VM_LAYOUT,
            agent_config.heartbeat_target(self.conf, self.controller_address()))
        by_path = files.by_path(agent_config.VM_LAYOUT, agent_config.VM_AGENT_CONF)
        server: dict[str, Any] = {
            "name": server_name(amphora_id, s.random_name_length),
            "imageRef": self.image_id(), "flavorRef": s.flavor_id,
            "networks": [{"uuid": n} for n in s.networks] or "auto",
            "config_drive": True,
            "metadata": {META_AMPHORA: amphora_id, META_DEPLOYMENT: self.deployment,
                         META_CERT_EXPIRATION: files.cert_expiration.isoformat()}}
        if s.security_groups:
            server["security_groups"] = [{"name": g} for g in s.security_groups]
        if s.key_name:
            server["key_name"] = s.key_name
        if s.availability_zone:
            server["availability_zone"] = s.availability_zone
        if s.user_data_config_drive:
            server["user_data"] = _b64(cloud_init(by_path).encode())
        else:
            server["personality"] = [{"path": path, "contents": _b64(data)}
                                     for path, data in by_path.items()]
        body: dict[str, Any] = {"server": server}
        if server_group_id:
            body["os:scheduler_hints"] = {"group": server_group_id}
        # A raw request: openstacksdk would speak a microversion without personality.
        response = self.conn.compute.post("/servers", json=body,
                                          microversion=PERSONALITY_MICROVERSION)
        try:
            os_exc.raise_from_response(response)
        except os_exc.HttpException as exc:
            raise ComputeBuildError(f"Nova refused to boot amphora {amphora_id}: "
                                    f"{exc.details or exc}") from exc
        LOG.info("amphora %s: server %s requested", amphora_id,
                 response.json()["server"]["id"])

    def image_id(self) -> str:
        """The newest active image with the configured tag (and owner)."""
        s = self.settings
        if not s.image_tag:
            raise ComputeBuildError("[controller_worker] amp_image_tag: not set")
        query: dict[str, Any] = {"tag": [s.image_tag], "status": "active",
                                 "sort": "created_at:desc", "limit": 2}
        if s.image_owner:
            query["owner"] = s.image_owner
        images = list(itertools.islice(self.conn.image.images(**query), 2))
        if not images:
            owner = f" owned by {s.image_owner}" if s.image_owner else ""
            raise ComputeBuildError(
                f"no active Glance image is tagged {s.image_tag!r}{owner} "
                "([controller_worker] amp_image_tag, amp_image_owner_id)")
        if len(images) > 1:
            LOG.warning("more than one image is tagged %r: booting the newest, %s",
                        s.image_tag, images[0].id)
        return str(images[0].id)

    # -- finding servers ----------------------------------------------------------------

    def _servers(self, **query: Any) -> list[Any]:
        """This deployment's servers (of the service project), oldest first; servers
        being deleted are gone already for our purposes."""
        found = [srv for srv in self.conn.compute.servers(details=True, **query)
                 if (srv.metadata or {}).get(META_DEPLOYMENT) == self.deployment
                 and srv.metadata.get(META_AMPHORA)
                 and srv.task_state != "deleting"]
        return sorted(found, key=lambda srv: (srv.created_at or "", srv.id))

    def _find(self, amphora_id: str) -> Any | None:
        """The amphora's server; when two builds raced and made two, the oldest one
        (the others are deleted)."""
        name = server_name(amphora_id, self.settings.random_name_length)
        found = [srv for srv in self._servers(name=f"^{name}$")
                 if srv.metadata[META_AMPHORA] == amphora_id]
        for extra in found[1:]:
            LOG.warning("amphora %s has a second server %s: deleting it", amphora_id,
                        extra.id)
            self.conn.compute.delete_server(extra, ignore_missing=True)
        return found[0] if found else None

    def _instance(self, server: Any, with_address: bool = False) -> base.Instance:
        status = map_status(server.status)
        address = (self._management_ip(server)
                   if with_address and status == base.ACTIVE else None)
        expiration = server.metadata.get(META_CERT_EXPIRATION)
        return base.Instance(server.metadata[META_AMPHORA], server.id, status, address,
                             dt.datetime.fromisoformat(expiration) if expiration else None)

    def _management_ip(self, server: Any) -> str | None:
        """The first address on the first boot network (any network when none is
        configured), as Octavia's driver takes it from the server's interfaces."""
        interfaces = list(self.conn.compute.server_interfaces(server))
        wanted = self.settings.networks
        for net_id in wanted or (None,):
            for iface in interfaces:
                if (net_id is None or iface.net_id == net_id) and iface.fixed_ips:
                    return str(iface.fixed_ips[0]["ip_address"])
        return None

    # -- the rest of the interface --------------------------------------------------------

    def delete(self, amphora_id: str) -> None:
        name = server_name(amphora_id, self.settings.random_name_length)
        for server in self._servers(name=f"^{name}$"):
            if server.metadata[META_AMPHORA] == amphora_id:
                self.conn.compute.delete_server(server, ignore_missing=True)

    def status(self, amphora_id: str) -> str:
        server = self._find(amphora_id)
        return base.DELETED if server is None else map_status(server.status)

    def list_instances(self) -> list[base.Instance]:
        return [self._instance(server) for server in self._servers()]

    def create_server_group(self, load_balancer_id: str) -> str | None:
        """The load balancer's anti-affinity group (found again by its name); None when
        ``[nova] enable_anti_affinity`` is off."""
        if not self.settings.anti_affinity:
            return None
        name = SERVER_GROUP_PREFIX + load_balancer_id
        found = self._server_groups(name)
        if found:
            return str(found[0].id)
        group = self.conn.compute.create_server_group(
            name=name, policy=self.settings.anti_affinity_policy)
        return str(group.id)

    def delete_server_group(self, load_balancer_id: str) -> None:
        for group in self._server_groups(SERVER_GROUP_PREFIX + load_balancer_id):
            self.conn.compute.delete_server_group(group, ignore_missing=True)

    def _server_groups(self, name: str) -> list[Any]:
        return [g for g in self.conn.compute.server_groups() if g.name == name]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
