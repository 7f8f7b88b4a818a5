"""The Nova driver's pure parts: server names, status mapping, cloud-init user data, and
how the REST amphora driver reaches agents in VMs (no cloud call is made here; the driver
against the real Nova is tests/functional/test_nova_driver.py)."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from amphorae.common import config
from amphorae.drivers.amphora.base import AmphoraRef
from amphorae.drivers.amphora.rest import RestAmphoraDriver
from amphorae.drivers.compute import base
from amphorae.drivers.compute import nova as nova_mod


def test_server_names_are_octavias_and_opaque_ones_are_stable() -> None:
    amp_id = str(uuid.uuid4())
    assert nova_mod.server_name(amp_id) == f"amphora-{amp_id}"
    opaque = nova_mod.server_name(amp_id, 10)
    assert re.fullmatch(r"a[A-Z0-9]{9}", opaque)
    assert nova_mod.server_name(amp_id, 10) == opaque  # a repeated build asks for it again
    assert nova_mod.server_name(str(uuid.uuid4()), 10) != opaque


@pytest.mark.parametrize(("nova", "ours"), [
    ("BUILD", base.BUILDING), ("ACTIVE", base.ACTIVE), ("HARD_REBOOT", base.ACTIVE),
    ("MIGRATING", base.ACTIVE), ("ERROR", base.ERROR), ("SHUTOFF", base.ERROR),
    ("SOFT_DELETED", base.DELETED), ("UNKNOWN", base.ERROR), (None, base.ERROR)])
def test_nova_statuses_map_to_ours(nova: str | None, ours: str) -> None:
    assert nova_mod.map_status(nova) == ours


def test_cloud_init_writes_every_file_private_and_restarts_the_agent() -> None:
    files = {"/etc/octavia/amphora-agent.conf": b"[amphora_agent]\nx = 1\n",
             "/etc/octavia/certs/server.pem": b"-----BEGIN-----\n\x00binary\n"}
    text = nova_mod.cloud_init(files)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert {f["path"]: base64.b64decode(f["content"]) for f in doc["write_files"]} == files
    assert {f["permissions"] for f in doc["write_files"]} == {"0600"}
    assert doc["runcmd"] == [["systemctl", "restart", "amphora-agent"]]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    config.CONF.set_override("state_path", str(tmp_path))
    yield tmp_path
    config.CONF.clear_override("state_path")


def test_the_rest_driver_reaches_vm_agents_with_the_controller_certificate(
        state: Path) -> None:
    compute = nova_mod.NovaComputeDriver(config.CONF, deployment="amph-unit")
    driver = RestAmphoraDriver.from_config(config.CONF, compute)
    amp = AmphoraRef(id=str(uuid.uuid4()), role="STANDALONE", management_ip="198.19.96.7",
                     vrrp_ip=None)
    client = driver.client_for(amp)
    assert (client.address, client.amphora_id) == ("198.19.96.7", amp.id)
    assert Path(compute.controller_ca.client_cert).is_file()
    assert compute.controller_ca.ca_dir == state / "ca"
    assert driver.base_path(amp) == Path("/var/lib/octavia")
