"""The amphora image booted with qemu, for tests and the image bench (root only).

:func:`image` builds the image with ``scripts/amphora-image`` (cached under
``~/.cache/amphorae/image``: seconds once built on this machine). :func:`booted` starts
one VM from it on a test bridge ``amph-<marker>b`` through a tap ``amph-<marker>t``, with
a copy-on-write overlay of the image and a config drive (config_drive.py) carrying the
agent's files as Nova personality files and a static address as network_data.json;
the serial console goes to a file. On exit, also after a failure, qemu is killed and the
tap, the bridge and the work directory are removed.

KVM when it works, TCG otherwise (these machines have ``/dev/kvm`` but no virtualisation
extensions: boot to agent ready then takes ~25-55 s).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from amphorae.drivers import agent_client
from amphorae.drivers.compute import agent_config
from amphorae.drivers.network import plumbing as plumbing_mod
from amphorae.image import config_drive
from tests import leftovers

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 1200.0  # a cold build: debootstrap over the network (~3-4 min measured)
BOOT_TIMEOUT = 240.0  # TCG on a loaded 2-core host (~55 s measured)
MEMORY_MIB = 512


def image(force: bool = False) -> Path:
    """The image's path, built when not cached (root)."""
    cmd = [str(ROOT / "scripts" / "amphora-image"), *(["--force"] if force else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/amphora-image failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def kvm_usable() -> bool:
    """/dev/kvm opens and the CPU has virtualisation extensions (else qemu uses TCG)."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " vmx" in flags or " svm" in flags


@dataclasses.dataclass
class AmphoraVM:
    """A running VM; its agent answers once :meth:`wait_agent` returned."""

    amphora_id: str
    address: str  # management address, on the bridge
    host_address: str  # the host's, on the bridge
    prefixlen: int
    bridge: str
    workdir: Path
    console: Path
    proc: subprocess.Popen[bytes]
    ca: agent_config.ControllerCA
    accel: str

    def client(self, **kwargs: object) -> agent_client.AgentClient:
        """An agent client with the controller's certificate."""
        return self.ca.client(self.amphora_id, self.address, **kwargs)

    def console_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            text = self.console.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def wait_agent(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Until the agent answers /info over TLS; the seconds since qemu started."""
        started = self.started
        deadline = started + timeout
        client = self.client(max_retries=0, conn_timeout=2, read_timeout=5)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"qemu exited ({self.proc.returncode}):\n"
                                     f"{self.console_tail()}")
            try:
                client.info()
                return time.monotonic() - started
            except (agent_client.AgentError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no agent at {self.address} after {timeout:.0f} s "
                                     f"({self.accel}); console:\n{self.console_tail()}")
            time.sleep(1)

    started: float = 0.0


@contextlib.contextmanager
def booted(marker: str, cidr: str, image_path: Path, *, amphora_id: str,
           workdir: Path | None = None) -> Iterator[AmphoraVM]:
    """One VM from ``image_path`` on a new bridge for ``cidr`` (the host takes its first
    address, the VM the tenth); ``marker``: 6 hex digits naming this run's links."""
    net = ipaddress.ip_network(cidr)
    host_address, address = str(net[1]), str(net[10])
    bridge, tap = f"amph-{marker}b", f"amph-{marker}t"
    leftovers.register(f"amph-{marker}")
    own_workdir = workdir is None
    if workdir is None:  # else the caller's, kept (the bench keeps the console log)
        work = Path(tempfile.mkdtemp(prefix=f"amph-{marker}-vm-"))
        leftovers.register(work)
    else:
        work = workdir
    plumbing = plumbing_mod.Plumbing()
    proc: subprocess.Popen[bytes] | None = None
    try:
        plumbing.ensure_bridge(bridge)
        plumbing.ensure_host_address(bridge, f"{host_address}/{net.prefixlen}")
        plumbing.ip("tuntap", "add", "dev", tap, "mode", "tap")
        plumbing.ip("link", "set", "dev", tap, "master", bridge, "up")
        ca = agent_config.ControllerCA(work / "ca")
        files = ca.agent_files(amphora_id, agent_config.VM_LAYOUT, None, address)
        mac = plumbing_mod.mac_address(f"{amphora_id}/vm")
        drive = config_drive.tree(
            amphora_id, f"amphora-{amphora_id}",
            files.by_path(agent_config.VM_LAYOUT, agent_config.VM_AGENT_CONF),
            network=config_drive.network_data(
                [config_drive.Link(mac, f"{address}/{net.prefixlen}", host_address)]))
        iso = config_drive.write_iso(drive, work / "config-drive.iso")
        disk = work / "disk.qcow2"  # the cached image stays as built
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(image_path), str(disk)], check=True, timeout=60)
        console = work / "console.log"
        accel = "kvm" if kvm_usable() else "tcg"
        proc = subprocess.Popen(
            ["qemu-system-x86_64", "-name", f"amph-{marker}", "-accel", accel,
             "-m", str(MEMORY_MIB), "-smp", "1", "-display", "none", "-monitor", "none",
             "-no-reboot", "-serial", f"file:{console}",
             "-drive", f"file={disk},if=virtio,format=qcow2",
             "-drive", f"file={iso},if=virtio,format=raw,readonly=on",
             "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=n0,mac={mac}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(work / "qemu.log").open("wb"), start_new_session=True)
        vm = AmphoraVM(amphora_id, address, host_address, net.prefixlen, bridge, work,
                       console, proc, ca, accel, started=time.monotonic())
        yield vm
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        plumbing.delete_link(tap)
        plumbing.delete_bridge(bridge)
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)
