"""The amphora image, booted with qemu (tests/amphora_vm.py), configured by the control
plane's amphora driver, carries traffic (root; builds the image when not cached).

The agent's files reach the VM as Nova gives them, as personality files on a config
drive (config_drive.py); the image's first boot writes them and its network
configuration, then starts the agent. The controller's RestAmphoraDriver then talks to
that agent over TLS with the controller CA's client certificate, as with Nova, plugs the
VIP and pushes a listener, a pool and a member; an HTTP request from the host to the VIP
comes back from the member, a namespace on the same bridge::

    host 198.18.120.1 --[amph-<run>b]-- tap -- VM eth0 198.18.120.10 (+ VIP .20)
                                    +-- member m1 198.18.120.30:8080
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amphorae.contract import model
from amphorae.drivers.amphora.base import AmphoraRef, TLSFiles, VipSubnet
from amphorae.drivers.amphora.rest import RestAmphoraDriver
from amphorae.drivers.compute import agent_config
from tests import amphora_vm, netns
from tests import dataplane as dp
from tests.dataplane import new_id
from tests.deployment import per_worker
from tests.members import MemberFarm

RUN = secrets.token_hex(3)
CIDR = per_worker("198.18.120.0/24", "198.18.121.0/24")[0]
VIP_HOST, MEMBER_HOST = 20, 30


@pytest.fixture(scope="module")
def vm() -> Iterator[amphora_vm.AmphoraVM]:
    netns.require_root()
    image = amphora_vm.image()
    with amphora_vm.booted(RUN, CIDR, image, amphora_id=new_id()) as vm:
        vm.wait_agent()
        yield vm


def test_agent_in_the_vm_is_configured_from_the_config_drive(vm) -> None:
    info = vm.client(max_retries=3, retry_interval=1).info()
    assert info.hostname == f"amphora-{vm.amphora_id}"  # meta_data.json's hostname
    assert info.haproxy_version  # the image's HAProxy answers


def test_control_plane_configures_haproxy_and_traffic_passes(vm, tmp_path: Path) -> None:
    net = ipaddress.ip_network(CIDR)
    vip = str(net[VIP_HOST])
    farm = MemberFarm(RUN, vm.bridge, CIDR, tmp_path)
    try:
        address = farm.add("m1", MEMBER_HOST)
        pool = model.Pool(id=new_id(), protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                          members=(model.Member(id=new_id(), address=address,
                                                protocol_port=dp.HTTP.port),))
        listener = model.Listener(id=new_id(), protocol="HTTP", protocol_port=80,
                                  default_pool_id=pool.id)
        lb = model.LoadBalancer(id=new_id(), project_id=new_id(), vips=(vip,),
                                listeners=(listener,), pools=(pool,))
        driver = RestAmphoraDriver(
            lambda amp: vm.client(max_retries=5, retry_interval=1, read_timeout=60),
            lambda amp: Path(agent_config.VM_LAYOUT.base_path), plugs_vip=True)
        amp = AmphoraRef(vm.amphora_id, "STANDALONE", vm.address, vrrp_ip=vm.address)
        driver.apply(amp, lb, TLSFiles(), None, VipSubnet(net.prefixlen, None))
        assert vm.client().interface_of(vip) == "eth0"
        # HAProxy comes up within the apply; under TCG the first answer may take a moment.
        reply = _first_answer(vip)
        assert (reply.status, reply.text) == (200, "m1")
        assert driver.drifted(amp, lb, TLSFiles(), None, VipSubnet(net.prefixlen, None)) == []
    finally:
        farm.close()


def _first_answer(vip: str, attempts: int = 20) -> dp.Reply:
    for attempt in range(attempts):
        try:
            return dp.http_request(vip, 80, "/", timeout=10)
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")
