"""The amphora image's boot step (unit ``amphora-config.service``): the config drive's
contents onto the system, before the network and the agent start.

From the drive labelled ``config-2`` (config_drive.py writes one as Nova does):
personality files from ``meta_data.json`` (the agent's configuration and certificates,
compute_nova_driver's default), or the ``write_files`` of ``#cloud-config`` user data
(``user_data_config_drive = True``); the hostname; and ``network_data.json`` as
systemd-networkd units (static addresses, or DHCP). Runs on every boot: a rebuilt or
re-plugged instance gets what its drive says now. Standard library only (and PyYAML
when the user data is cloud-config), as the agent.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOG = logging.getLogger("amphora-config")
DEVICE = Path("/dev/disk/by-label/config-2")
NETWORK_DIR = Path("/run/systemd/network")
WAIT_SECONDS = 30.0  # for udev to show the drive


def personality_files(meta: dict, read: Callable[[str], bytes]) -> dict[str, bytes]:
    """Path -> contents of meta_data.json's ``files``; ``read`` takes a path under
    ``openstack/`` (``content/0000``)."""
    return {entry["path"]: read(entry["content_path"].lstrip("/"))
            for entry in meta.get("files", [])}


def cloud_config_files(user_data: bytes) -> dict[str, bytes]:
    """Path -> contents of ``#cloud-config`` user data's ``write_files``; nothing for
    other user data."""
    if not user_data.startswith(b"#cloud-config"):
        return {}
    import yaml  # only cloud-config needs it

    doc = yaml.safe_load(user_data) or {}
    files = {}
    for entry in doc.get("write_files", []):
        content = entry.get("content", "")
        data = content.encode() if isinstance(content, str) else bytes(content)
        if entry.get("encoding") in ("b64", "base64"):
            data = base64.b64decode(data)
        files[entry["path"]] = data
    return files


def networkd_units(network: dict) -> dict[str, str]:
    """File name -> systemd-networkd unit, one per network of network_data.json, matched
    by its link's MAC address."""
    macs = {link["id"]: link["ethernet_mac_address"] for link in network.get("links", [])
            if link.get("ethernet_mac_address")}
    units: dict[str, list[str]] = {}
    for net in network.get("networks", []):
        mac = macs.get(net.get("link"))
        if mac is None:
            continue
        lines = units.setdefault(mac, ["[Match]", f"MACAddress={mac}", "", "[Network]"])
        kind = net.get("type", "")
        if kind.endswith("_dhcp"):
            lines.append("DHCP=ipv6" if kind.startswith("ipv6") else "DHCP=ipv4")
            continue
        if kind not in ("ipv4", "ipv6"):
            continue
        address = ipaddress.ip_interface(f"{net['ip_address']}/{_prefixlen(net['netmask'])}")
        lines.append(f"Address={address.with_prefixlen}")
        for route in net.get("routes", []):
            dest = ipaddress.ip_network(f"{route['network']}/{_prefixlen(route['netmask'])}")
            lines += ["", "[Route]", f"Destination={dest.with_prefixlen}",
                      f"Gateway={route['gateway']}"]
    return {f"10-amphora-{mac.replace(':', '')}.network": "\n".join(lines) + "\n"
            for mac, lines in units.items()}


def _prefixlen(netmask: str) -> int:
    """``255.255.252.0``, ``ffff:ffff::`` (IPv6 masks come in address form too) or ``22``."""
    if str(netmask).isdigit():
        return int(netmask)
    return bin(int(ipaddress.ip_address(netmask))).count("1")


def apply(drive: Path, root: Path = Path("/"), network_dir: Path = NETWORK_DIR) -> list[str]:
    """Write what the mounted ``drive`` holds under ``root``; the paths written."""
    latest = drive / "openstack" / "latest"
    meta = json.loads((latest / "meta_data.json").read_text())
    user_data = latest / "user_data"
    files = personality_files(meta, lambda rel: (drive / "openstack" / rel).read_bytes())
    if user_data.exists():
        files |= cloud_config_files(user_data.read_bytes())
    written = []
    for path, data in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(target, data, 0o600)  # certificates and keys among them
        written.append(str(target))
    if hostname := meta.get("hostname"):
        (root / "etc").mkdir(parents=True, exist_ok=True)
        _write(root / "etc/hostname", f"{hostname.split('.')[0]}\n".encode(), 0o644)
    network = latest / "network_data.json"
    if network.exists():
        network_dir.mkdir(parents=True, exist_ok=True)
        for name, text in networkd_units(json.loads(network.read_text())).items():
            _write(network_dir / name, text.encode(), 0o644)
            written.append(str(network_dir / name))
    return written


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextlib.contextmanager
def mounted(device: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="config-drive-") as where:
        subprocess.run(["mount", "-o", "ro", str(device), where], check=True, timeout=30)
        try:
            yield Path(where)
        finally:
            subprocess.run(["umount", where], check=False, timeout=30)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="amphora-config: %(message)s")
    deadline = time.monotonic() + WAIT_SECONDS
    while not DEVICE.exists():
        if time.monotonic() > deadline:
            LOG.warning("no config drive (%s): the agent stays stopped", DEVICE)
            return 0
        time.sleep(0.2)
    with mounted(DEVICE) as drive:
        written = apply(drive)
    if (Path("/etc/hostname")).exists():
        subprocess.run(["hostname", Path("/etc/hostname").read_text().strip()], check=False)
    LOG.info("from the config drive: %s", ", ".join(written) or "nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
