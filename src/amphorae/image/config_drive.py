"""A config drive as Nova makes one (label ``config-2``, ``openstack/latest/...``).

Nova hands an instance its metadata on a small disk: ``meta_data.json`` (uuid, hostname,
and the personality files, whose contents sit under ``openstack/content/``),
``user_data`` and ``network_data.json``. The amphora image reads it at first boot
(first_boot.py). Tests and the image bench boot the image with one made here, so the
path the controller's files take to the agent is the one they take under Nova.

:func:`tree` is pure (relative path -> bytes); :func:`write_iso` writes it as Nova's
default ``config_drive_format = iso9660`` does.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

LABEL = "config-2"
LATEST = "openstack/latest"


@dataclasses.dataclass(frozen=True)
class Link:
    """One NIC: its MAC, and its static address (``198.18.120.10/22``) or None for DHCP."""

    mac: str
    address: str | None = None
    gateway: str | None = None


def network_data(links: Sequence[Link]) -> dict:
    """Nova's network_data.json for ``links`` (a static or DHCP network per link)."""
    doc: dict[str, list] = {"links": [], "networks": [], "services": []}
    for index, link in enumerate(links):
        link_id = f"tap{index}"
        doc["links"].append({"id": link_id, "type": "phy", "ethernet_mac_address": link.mac,
                             "mtu": 1500})
        network: dict = {"id": f"network{index}", "link": link_id}
        if link.address is None:
            network["type"] = "ipv4_dhcp"
        else:
            iface = ipaddress.ip_interface(link.address)
            network.update(type="ipv6" if iface.version == 6 else "ipv4",
                           ip_address=str(iface.ip), netmask=str(iface.netmask),
                           routes=[])
            if link.gateway:
                default = "::" if iface.version == 6 else "0.0.0.0"
                network["routes"].append({"network": default, "netmask": default,
                                          "gateway": link.gateway})
        doc["networks"].append(network)
    return doc


def tree(uuid: str, hostname: str, files: Mapping[str, bytes] | None = None, *,
         user_data: bytes | None = None, network: dict | None = None,
         meta: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """The drive's files: relative path -> contents. ``files``: personality files
    (absolute path in the instance -> contents), in Nova's ``content/NNNN`` layout."""
    out: dict[str, bytes] = {}
    listed = []
    for number, (path, data) in enumerate(sorted((files or {}).items())):
        if not path.startswith("/"):
            raise ValueError(f"personality file path {path!r} is not absolute")
        content = f"/content/{number:04d}"
        out[f"openstack{content}"] = data
        listed.append({"path": path, "content_path": content})
    meta_data = {"uuid": uuid, "name": hostname, "hostname": hostname, "launch_index": 0,
                 "availability_zone": "nova", "meta": dict(meta or {}), "files": listed}
    out[f"{LATEST}/meta_data.json"] = json.dumps(meta_data, indent=1).encode()
    if network is not None:
        out[f"{LATEST}/network_data.json"] = json.dumps(network, indent=1).encode()
    if user_data is not None:
        out[f"{LATEST}/user_data"] = user_data
    return out


def write_iso(files: Mapping[str, bytes], path: str | os.PathLike[str]) -> Path:
    """``files`` (from :func:`tree`) as an ISO 9660 image labelled config-2 (genisoimage,
    with Rock Ridge and Joliet names, as Nova does)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="amph-configdrive-") as staging:
        for relative, data in files.items():
            target = Path(staging, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        subprocess.run(["genisoimage", "-quiet", "-o", str(path), "-V", LABEL, "-J", "-r",
                        "-ldots", "-allow-lowercase", "-allow-multidot", "-l",
                        staging], check=True, capture_output=True, timeout=60)
    return path
