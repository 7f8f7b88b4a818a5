"""The netns virt driver's pure parts (tests/nova_virt): an instance's files from
personality or cloud-init, their paths moved under the instance root, and which bridge
addresses a port's subnets give."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from amphorae.drivers.compute import agent_config
from amphorae.drivers.compute.nova import cloud_init
from tests.nova_virt.amphorae_nova_virt import files, host

CONF = agent_config.render_agent_config("a1", agent_config.VM_LAYOUT)


def _agent_files() -> dict[str, bytes]:
    return {agent_config.VM_LAYOUT.server_cert: b"cert+key",
            agent_config.VM_LAYOUT.client_ca: b"ca", agent_config.VM_AGENT_CONF: CONF.encode()}


def test_cloud_init_user_data_gives_the_files_the_nova_driver_wrote() -> None:
    user_data = base64.b64encode(cloud_init(_agent_files()).encode()).decode()
    assert files.from_user_data(user_data) == _agent_files()


def test_user_data_that_is_not_cloud_config_gives_no_files() -> None:
    assert files.from_user_data(base64.b64encode(b"#!/bin/sh\necho hi\n").decode()) == {}
    assert files.from_user_data("not base64!") == {}
    assert files.from_user_data(None) == {}


def test_the_agent_config_paths_move_under_the_root(tmp_path: Path) -> None:
    conf = files.write(tmp_path, files.from_injected(list(_agent_files().items())))
    assert conf == tmp_path / "etc/octavia/amphora-agent.conf"
    text = conf.read_text()
    assert f"agent_server_cert = {tmp_path}/etc/octavia/certs/server.pem\n" in text
    assert "base_path = /var/lib/octavia\n" in text  # mounted there from the root
    assert "haproxy_cmd = /usr/sbin/haproxy\n" in text  # the host's binary stays
    assert (tmp_path / "etc/octavia/certs/server.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "var/lib/octavia").is_dir()
    assert files.agent_port(text) == agent_config.VM_LAYOUT.bind_port


def test_a_file_path_may_not_leave_the_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="leaves the instance root"):
        files.write(tmp_path, {"/etc/../../escape": b"x"})


def test_bridges_get_gateways_only_inside_the_allowed_blocks() -> None:
    nic = host.Nic("p", "fa:16:3e:00:00:01", "n",
                   ("198.19.200.5/24", "198.19.96.5/24"), ("198.19.200.1", "198.19.96.1"))
    assert host.gateway_cidrs(nic, ["198.19.200.0/21"]) == ["198.19.200.1/24"]
    assert host.gateway_cidrs(nic, []) == []


def test_names_fit_linux_interface_names() -> None:
    uuid = "3fa9c1d2-0000-4000-8000-000000000000"
    assert host.namespace(uuid) == "amph-nv-3fa9c1d2"
    assert host.host_veth(uuid, 12) == "amph-nv3fa9c112"
    assert len(host.bridge(uuid)) <= 15 and host.bridge(uuid).startswith("amph-nvb")
