"""The config drive as Nova lays it out (image/config_drive.py) and as the amphora image's
first boot reads it (image/first_boot.py): what the controller puts in is what the
image writes, for both of compute_nova_driver's ways (personality files, cloud-config)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from amphorae.drivers.compute import nova
from amphorae.image import config_drive, first_boot

FILES = {"/etc/octavia/amphora-agent.conf": b"[amphora_agent]\namphora_id = a1\n",
         "/etc/octavia/certs/server.pem": b"-----BEGIN CERTIFICATE-----\nkey\n",
         "/etc/octavia/certs/client_ca.pem": b"ca"}
MAC = "fa:16:3e:00:00:01"


def _mount(tree: dict[str, bytes], where: Path) -> Path:
    """The tree as the mounted drive would show it."""
    for relative, data in tree.items():
        (where / relative).parent.mkdir(parents=True, exist_ok=True)
        (where / relative).write_bytes(data)
    return where


def test_personality_files_in_novas_content_layout() -> None:
    tree = config_drive.tree("uuid-1", "amphora-a1", FILES)
    meta = json.loads(tree["openstack/latest/meta_data.json"])
    assert (meta["uuid"], meta["hostname"]) == ("uuid-1", "amphora-a1")
    listed = {f["path"]: tree["openstack" + f["content_path"]] for f in meta["files"]}
    assert listed == FILES
    assert sorted(f["content_path"] for f in meta["files"]) == [
        "/content/0000", "/content/0001", "/content/0002"]


def test_relative_personality_path_refused() -> None:
    with pytest.raises(ValueError, match="not absolute"):
        config_drive.tree("u", "h", {"etc/x": b""})


def test_first_boot_writes_personality_files_secret(tmp_path: Path) -> None:
    drive = _mount(config_drive.tree("u", "amphora-a1", FILES), tmp_path / "drive")
    root, net_dir = tmp_path / "root", tmp_path / "network"
    first_boot.apply(drive, root, net_dir)
    for path, data in FILES.items():
        target = root / path.lstrip("/")
        assert target.read_bytes() == data
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert (root / "etc/hostname").read_text() == "amphora-a1\n"
    assert not net_dir.exists()  # no network_data.json: the image's DHCP default


def test_first_boot_reads_the_nova_drivers_cloud_config(tmp_path: Path) -> None:
    """user_data_config_drive = True: the same files through cloud-config user data."""
    user_data = nova.cloud_init(FILES).encode()
    drive = _mount(config_drive.tree("u", "h", user_data=user_data), tmp_path / "drive")
    first_boot.apply(drive, tmp_path / "root", tmp_path / "network")
    for path, data in FILES.items():
        assert (tmp_path / "root" / path.lstrip("/")).read_bytes() == data


def test_other_user_data_writes_nothing() -> None:
    assert first_boot.cloud_config_files(b"#!/bin/sh\necho hi\n") == {}


def test_static_network_becomes_a_networkd_unit_by_mac() -> None:
    network = config_drive.network_data(
        [config_drive.Link(MAC, "198.18.120.10/22", "198.18.120.1")])
    units = first_boot.networkd_units(network)
    assert units == {"10-amphora-fa163e000001.network":
                     f"[Match]\nMACAddress={MAC}\n\n[Network]\nAddress=198.18.120.10/22\n\n"
                     "[Route]\nDestination=0.0.0.0/0\nGateway=198.18.120.1\n"}


def test_dhcp_network_and_ipv6_static() -> None:
    network = config_drive.network_data([config_drive.Link(MAC),
                                         config_drive.Link("fa:16:3e:00:00:02", "fd00::5/64")])
    units = first_boot.networkd_units(network)
    assert "DHCP=ipv4" in units["10-amphora-fa163e000001.network"]
    assert "Address=fd00::5/64" in units["10-amphora-fa163e000002.network"]


def test_network_data_written_to_the_network_dir(tmp_path: Path) -> None:
    network = config_drive.network_data([config_drive.Link(MAC, "198.18.120.10/22")])
    drive = _mount(config_drive.tree("u", "h", network=network), tmp_path / "drive")
    written = first_boot.apply(drive, tmp_path / "root", tmp_path / "network")
    unit = tmp_path / "network" / "10-amphora-fa163e000001.network"
    assert str(unit) in written
    assert "Address=198.18.120.10/22" in unit.read_text()
