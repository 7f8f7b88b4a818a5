"""``NetnsDriver``: Nova's fake virt driver, except that an instance given the amphora
agent's files "boots" as a network namespace running that agent.

Everything else (resources, the stable node identity, instances without agent files)
stays the fake driver's, so plain test servers still go ACTIVE at once.

The driver's directory is ``$AMPHORAE_NETNS_VIRT_DIR`` (set by scripts/openstack-dev;
default ``<state_path>/netns-virt``). ``settings.json`` there is read at every spawn, so
the agent command follows the checkout that last ran ``scripts/openstack-dev start``
without restarting nova-compute:

- ``agent_command``: argv of the amphorae agent (``[".../.venv/bin/amphorae", "agent"]``);
- ``gateway_blocks``: subnets inside these get their gateway address on the bridge;
- ``boot_timeout``: seconds the agent has to listen before the spawn fails.

Per instance: ``instances/<uuid>/state.json`` (namespace, NICs), ``root/`` (its files,
``/etc/octavia/...`` maps onto ``root/etc/octavia/...``), ``agent.log``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from nova import conf as nova_conf
from nova import exception
from nova.compute import power_state
from nova.virt import fake, hardware

from . import files, host

LOG = logging.getLogger(__name__)
CONF = nova_conf.CONF
ENV_DIR = "AMPHORAE_NETNS_VIRT_DIR"
VM_MOUNTS = ('base=$1; shift; mount -t tmpfs amph-nv /var/lib && mkdir /var/lib/octavia'
             ' && mount --bind "$base" /var/lib/octavia && exec "$@"')
DEFAULTS: dict[str, Any] = {"agent_command": None, "gateway_blocks": ["198.19.200.0/21"],
                            "boot_timeout": 60}


class NetnsDriver(fake.FakeDriverWithoutFakeNodes):
    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self.base = Path(os.environ.get(ENV_DIR) or os.path.join(CONF.state_path,
                                                                 "netns-virt"))
        self._agents: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    # -- paths and state ----------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        try:
            return DEFAULTS | json.loads((self.base / "settings.json").read_text())
        except (OSError, ValueError):
            return dict(DEFAULTS)

    def _dir(self, uuid: str) -> Path:
        return self.base / "instances" / uuid

    def _state(self, uuid: str) -> dict[str, Any] | None:
        try:
            return json.loads((self._dir(uuid) / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def _save(self, uuid: str, state: dict[str, Any]) -> None:
        host.write_json(self._dir(uuid) / "state.json", state)

    def _bridge_lock(self) -> Any:
        return host.locked(self.base / "bridges.lock")

    # -- Nova's calls -------------------------------------------------------------------

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: Any, allocations: Any, network_info: Any = None,
              block_device_info: Any = None, power_on: bool = True,
              accel_info: Any = None) -> None:
        wanted = files.from_injected(injected_files) | files.from_user_data(
            instance.user_data)
        if files.AGENT_CONF not in wanted:  # not an amphora: the fake driver's instance
            super().spawn(context, instance, image_meta, injected_files, admin_password,
                          allocations, network_info, block_device_info, power_on, accel_info)
            return
        uuid = instance.uuid
        try:
            self._boot(uuid, wanted, list(network_info or ()))
        except BaseException:
            LOG.exception("netns instance %s did not boot", uuid)
            self._teardown(uuid)
            raise
        super().spawn(context, instance, image_meta, injected_files, admin_password,
                      allocations, network_info, block_device_info, power_on, accel_info)

    def _boot(self, uuid: str, wanted: dict[str, bytes], vifs: list[Any]) -> None:
        settings = self.settings()
        command = settings["agent_command"]
        if not command:
            raise exception.NovaException(
                f"netns virt: no agent_command in {self.base / 'settings.json'}")
        folder = self._dir(uuid)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        ns = host.namespace(uuid)
        self._save(uuid, {"namespace": ns, "nics": {}})
        host.ensure_namespace(ns)
        for vif in vifs:
            self._plug(uuid, vif, settings)
        conf = files.write(folder / "root", wanted)
        assert conf is not None
        base = files.under(folder / "root", files.BASE_PATH)
        with open(folder / "agent.log", "ab") as log:
            # `ip netns exec` gives the agent a mount namespace of its own (slave to the
            # host's: nothing mounted here shows outside), where /var/lib/octavia is the
            # instance's directory, as in a VM: the controller names files there in
            # HAProxy's configuration. The host's /var/lib has no octavia directory to
            # mount on, so the agent's /var/lib is a tmpfs holding just that one.
            # sh execs the agent: the pid is the agent's. A session of its own: a
            # restarted nova-compute (SIGTERM to its group) leaves it running.
            proc = subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c", VM_MOUNTS, "sh",
                                     str(base), *command, "--config-file", str(conf)],
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=folder,
                                    start_new_session=True)
        with self._lock:
            self._agents[uuid] = proc
        state = self._state(uuid) or {}
        self._save(uuid, state | {"agent_pid": proc.pid})
        self._wait_agent(uuid, proc, files.agent_port(conf.read_text()),
                         float(settings["boot_timeout"]))

    def _wait_agent(self, uuid: str, proc: subprocess.Popen, port: int,
                    timeout: float) -> None:
        """The instance runs once its agent listens (as libvirt's spawn waits for the
        guest): only then does Nova make the server ACTIVE."""
        deadline = time.monotonic() + timeout
        while not host.listening(proc.pid, port):
            if proc.poll() is not None:
                raise exception.NovaException(
                    f"netns virt: agent of {uuid} exited ({proc.returncode}), see "
                    f"{self._dir(uuid) / 'agent.log'}")
            if time.monotonic() > deadline:
                raise exception.NovaException(
                    f"netns virt: agent of {uuid} not listening on {port} after {timeout} s")
            time.sleep(0.1)

    def _plug(self, uuid: str, vif: Any, settings: dict[str, Any]) -> None:
        state = self._state(uuid) or {}
        nics = state.setdefault("nics", {})
        if vif["id"] in nics:
            return
        index = min(set(range(len(nics) + 1)) - {n["index"] for n in nics.values()})
        nic = _nic(vif)
        entry = {"index": index, "host": host.host_veth(uuid, index),
                 "bridge": host.bridge(nic.network_id)}
        nics[vif["id"]] = entry
        self._save(uuid, state)  # first: a failed plug is still torn down
        with self._bridge_lock():
            host.ensure_bridge(entry["bridge"],
                               host.gateway_cidrs(nic, settings["gateway_blocks"]))
            host.plug(state["namespace"], entry["host"], f"eth{index}", entry["bridge"],
                      nic, default_route=index == 0)

    def attach_interface(self, context: Any, instance: Any, image_meta: Any,
                         vif: Any) -> None:
        super().attach_interface(context, instance, image_meta, vif)
        if self._state(instance.uuid) is not None:
            self._plug(instance.uuid, vif, self.settings())

    def detach_interface(self, context: Any, instance: Any, vif: Any) -> None:
        state = self._state(instance.uuid)
        if state is not None:
            entry = state.get("nics", {}).pop(vif["id"], None)
            if entry is not None:
                with self._bridge_lock():
                    host.delete_link(entry["host"])
                    host.remove_unused_bridges([entry["bridge"]])
                self._save(instance.uuid, state)
        try:
            super().detach_interface(context, instance, vif)
        except exception.InterfaceDetachFailed:
            if state is None:  # ours survive a compute restart; the fake's list does not
                raise

    def destroy(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        self._teardown(instance.uuid)
        super().destroy(context, instance, network_info, block_device_info, destroy_disks,
                        destroy_secrets)

    def _teardown(self, uuid: str) -> None:
        """Processes, veths, namespace, bridges left without ports, the directory."""
        state = self._state(uuid)
        if state is None:
            return
        ns = state["namespace"]
        with self._lock:
            proc = self._agents.pop(uuid, None)
        pids = [state["agent_pid"]] if state.get("agent_pid") else []
        host.kill_all(ns, pids)
        if proc is not None:
            proc.wait(timeout=10)
        nics = state.get("nics", {}).values()
        with self._bridge_lock():
            for entry in nics:
                host.delete_link(entry["host"])
            host.ip("netns", "delete", ns, check=False)
            host.remove_unused_bridges(e["bridge"] for e in nics)
        shutil.rmtree(self._dir(uuid), ignore_errors=True)

    def get_info(self, instance: Any, use_cache: bool = True) -> hardware.InstanceInfo:
        if instance.uuid not in self.instances and self._state(instance.uuid) is not None:
            # a namespace instance outlives a nova-compute restart; the fake's list not
            return hardware.InstanceInfo(state=power_state.RUNNING)
        return super().get_info(instance, use_cache)


def _nic(vif: Any) -> host.Nic:
    """A Neutron port as Nova's network model gives it."""
    addresses, gateways = [], []
    for subnet in vif["network"]["subnets"]:
        prefix = subnet["cidr"].split("/")[1]
        addresses += [f"{fixed['address']}/{prefix}" for fixed in subnet["ips"]]
        gateway = (subnet.get("gateway") or {}).get("address")
        if gateway:
            gateways.append(gateway)
    return host.Nic(port_id=vif["id"], mac=vif["address"], network_id=vif["network"]["id"],
                    addresses=tuple(addresses), gateways=tuple(gateways))
