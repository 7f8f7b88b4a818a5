"""Names and command handling of the host plumbing and the netns compute driver (no root)."""

from __future__ import annotations

import re
import subprocess

import pytest

from amphorae.drivers.compute import netns as compute
from amphorae.drivers.network import plumbing


class FakeRunner:
    """Records argv; answers from a table of (argv prefix) -> (returncode, stdout, stderr)."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv):
        self.calls.append(list(argv))
        for prefix, (rc, out, err) in self.answers.items():
            if tuple(argv[:len(prefix)]) == prefix:
                return subprocess.CompletedProcess(argv, rc, out, err)
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_derived_names_fit_and_are_stable():
    name = plumbing.derived_name("amph-m", "0123abcd")
    assert len(name) == plumbing.IFNAMSIZ
    assert name == plumbing.derived_name("amph-m", "0123abcd")
    assert name != plumbing.derived_name("amph-m", "0123abce")
    assert re.fullmatch(r"amph-br[0-9a-f]{8}", plumbing.bridge_name("deployment", "net-id"))
    with pytest.raises(ValueError):
        plumbing.derived_name("amph-too-long-", "x")


def test_mac_is_openstack_range_and_stable():
    mac = plumbing.mac_address("some-id")
    assert re.fullmatch(r"fa:16:3e(:[0-9a-f]{2}){3}", mac)
    assert mac == plumbing.mac_address("some-id")


@pytest.mark.parametrize("bad", ["", "x" * 16, "a/b", "a b"])
def test_check_name_rejects(bad):
    with pytest.raises(ValueError):
        plumbing.check_name(bad)


def test_compute_names():
    amp_id = "0A1B2C3D-4e5f-6789-abcd-ef0123456789"
    assert compute.short_id(amp_id) == "0a1b2c3d"
    assert compute.short_id("0a1b2c3d") == "0a1b2c3d"
    assert compute.namespace_name(amp_id) == "amphora-0a1b2c3d"
    assert compute.mgmt_veth_name(amp_id) == compute.mgmt_veth_name("0a1b2c3d")
    assert len(compute.mgmt_veth_name(amp_id)) <= plumbing.IFNAMSIZ
    for bad in ("xyz", "0a1b2c3", "0a1b2c3g-0000"):
        with pytest.raises(ValueError):
            compute.short_id(bad)


def test_already_done_is_not_an_error():
    runner = FakeRunner({
        ("ip", "link", "delete"): (1, "", 'Cannot find device "amph-x"\n'),
        ("ip", "netns", "delete"): (1, "", "Cannot remove namespace file: No such file\n"),
        ("ip", "-json", "link", "show"): (1, "", 'Device "amph-x" does not exist.\n'),
    })
    pl = plumbing.Plumbing(runner)
    pl.delete_link("amph-x")
    pl.delete_netns("amph-x")
    assert pl.link("amph-x") is None


def test_real_failures_raise():
    runner = FakeRunner({
        ("ip", "-n", "ns", "address"): (2, "", "RTNETLINK answers: Permission denied")})
    with pytest.raises(plumbing.PlumbingError, match="Permission denied"):
        plumbing.Plumbing(runner).ensure_address("ns", "eth0", "198.18.210.5/24")


def test_ipv6_route_and_address_options():
    runner = FakeRunner({})
    pl = plumbing.Plumbing(runner)
    pl.ensure_address("ns", "eth0", "2001:db8::5/64")
    pl.ensure_route("ns", "default", via="2001:db8::1", dev="eth0", table="7")
    assert runner.calls == [
        ["ip", "-n", "ns", "address", "replace", "2001:db8::5/64", "dev", "eth0", "nodad"],
        ["ip", "-n", "ns", "-6", "route", "replace", "default", "via", "2001:db8::1",
         "dev", "eth0", "table", "7"],
    ]


def test_driver_options_registered():
    from amphorae.common import config

    group = config.CONF.netns_compute
    assert group.management_cidr == "198.19.0.0/24"
    assert group.management_bridge == ""  # derived from the deployment id
    assert compute.list_opts()[0][0] == "netns_compute"


def test_default_state_dir_follows_state_path(monkeypatch, tmp_path):
    monkeypatch.setenv("AMPHORAE_STATE_PATH", str(tmp_path))
    drv = compute.NetnsComputeDriver(plumbing=plumbing.Plumbing(FakeRunner({})))
    assert drv.state_dir == tmp_path / "amphorae"
    assert str(drv.gateway) == "198.19.0.1"
    # The deployment id, and the management bridge named after it, come from there too.
    assert drv.deployment == (tmp_path / "deployment-id").read_text().strip()
    assert drv.bridge == plumbing.bridge_name(drv.deployment, compute.MANAGEMENT_NETWORK)


def test_management_addresses_run_out(tmp_path):
    runner = FakeRunner({("ip", "-json", "netns", "list"): (0, "[]", "")})
    drv = compute.NetnsComputeDriver(plumbing=plumbing.Plumbing(runner),
                                     state_dir=str(tmp_path), management_cidr="198.19.9.0/30")
    first = "0a1b2c3d-0000-4000-8000-000000000000"
    assert drv._reserve(first) == "198.19.9.2"  # .1 is the host's
    assert drv._reserve(first) == "198.19.9.2"  # the same amphora keeps its address
    with pytest.raises(RuntimeError, match="already uses amphora-0a1b2c3d"):
        drv.create("0a1b2c3d-ffff-4000-8000-000000000000")
    assert (tmp_path / "0a1b2c3d" / compute.STATE_FILE).exists()  # not rolled back
    assert runner.calls == []  # nothing was plumbed for the colliding id
    with pytest.raises(RuntimeError, match="no free management address"):
        drv._reserve("1a1b2c3d-0000-4000-8000-000000000000")
    assert drv.pid(first, "agent") is None  # never started
    assert [a.status for a in drv.list_amphorae()] == ["BUILDING"]
