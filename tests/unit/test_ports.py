"""Commands of plugging / unplugging an amphora port (no root; the real kernel is exercised
in tests/integration/test_vip_traffic.py)."""

from __future__ import annotations

import json

import pytest

from amphorae.drivers.network import plumbing, ports
from tests.unit.test_plumbing import FakeRunner

NS = "amphora-0a1b2c3d"
MAC = "fa:16:3e:00:00:01"


def test_host_veth_name_is_stable_and_fits():
    name = ports.host_veth_name(NS, "eth1")
    assert name.startswith(ports.PORT_VETH_PREFIX) and len(name) == plumbing.IFNAMSIZ
    assert name == ports.host_veth_name(NS, "eth1")
    assert name != ports.host_veth_name(NS, "eth2")
    assert name != ports.host_veth_name("amphora-0a1b2c3e", "eth1")


def test_plug_creates_veth_address_and_route():
    missing = (1, "", 'Device "x" does not exist.')
    runner = FakeRunner({("ip", "-json", "link", "show"): missing,
                         ("ip", "-n", NS, "-json", "link", "show"): missing})
    host = ports.plug_port(plumbing.Plumbing(runner), NS, "amph-brvip", "eth1", MAC,
                           "198.18.230.10/24", gateway="198.18.230.1")
    assert host == ports.host_veth_name(NS, "eth1")
    calls = [" ".join(c) for c in runner.calls]
    assert (f"ip link add {host} type veth peer name eth1 address {MAC} netns {NS}"
            in calls)
    assert f"ip link set dev {host} master amph-brvip up" in calls
    assert f"ip -n {NS} address replace 198.18.230.10/24 dev eth1" in calls
    assert f"ip -n {NS} route replace default via 198.18.230.1 dev eth1" in calls
    # A new address is announced (gratuitous ARP from inside the namespace) before it is
    # added, so a crash between the two announces it again on the next plug.
    garp = [i for i, c in enumerate(runner.calls) if c[:4] == ["ip", "netns", "exec", NS]]
    assert len(garp) == 1 and runner.calls[garp[0]][-2:] == ["eth1", "198.18.230.10"]
    assert garp[0] < calls.index(f"ip -n {NS} address replace 198.18.230.10/24 dev eth1")


def _held(*addresses: str) -> tuple[int, str, str]:
    """``ip -json address show`` of an interface holding ``addresses``."""
    info = [{"local": a.split("/")[0], "prefixlen": int(a.split("/")[1]), "scope": "global"}
            for a in addresses]
    return 0, json.dumps([{"ifname": "eth1", "addr_info": info}]), ""


def test_an_address_held_already_is_neither_announced_nor_added_again():
    found = (0, '[{"ifname": "x"}]', "")  # both ends of the pair exist already
    runner = FakeRunner({("ip", "-json", "link", "show"): found,
                         ("ip", "-n", NS, "-json", "link", "show"): found,
                         ("ip", "-n", NS, "-json", "address"): _held("198.18.230.10/24")})
    ports.plug_port(plumbing.Plumbing(runner), NS, "amph-brvip", "eth1", None,
                    "198.18.230.10/24")
    assert not any(c[:3] == ["ip", "netns", "exec"] for c in runner.calls)
    assert not any("replace" in c for c in runner.calls)


def test_an_address_missing_from_an_existing_port_is_announced():
    """A worker killed after creating the port and before adding an address: the next
    plug announces and adds it (neighbours may still know the address at another MAC)."""
    found = (0, '[{"ifname": "x"}]', "")
    runner = FakeRunner({("ip", "-json", "link", "show"): found,
                         ("ip", "-n", NS, "-json", "link", "show"): found,
                         ("ip", "-n", NS, "-json", "address"): _held("198.18.230.10/24")})
    ports.plug_port(plumbing.Plumbing(runner), NS, "amph-brvip", "eth1", None,
                    "198.18.230.10/24", extra_addresses=["198.18.230.11/24"])
    garp = [c for c in runner.calls if c[:3] == ["ip", "netns", "exec"]]
    assert len(garp) == 1 and garp[0][-2:] == ["eth1", "198.18.230.11"]
    assert [" ".join(c) for c in runner.calls if "replace" in c] == [
        f"ip -n {NS} address replace 198.18.230.11/24 dev eth1"]


def test_plug_without_gateway_adds_no_route():
    runner = FakeRunner({})
    ports.plug_port(plumbing.Plumbing(runner), NS, "amph-brvip", "eth1", None,
                    "198.18.230.10/24")
    assert not any("route" in c for c in runner.calls)


@pytest.mark.parametrize("address, gateway", [("198.18.230.10/33", None),
                                              ("198.18.230.10/24", "198.18.231.1"),
                                              ("not-an-ip/24", None)])
def test_plug_rejects_bad_input_before_any_command(address, gateway):
    runner = FakeRunner({})
    with pytest.raises(ValueError):
        ports.plug_port(plumbing.Plumbing(runner), NS, "amph-brvip", "eth1", MAC,
                        address, gateway)
    assert runner.calls == []


def test_unplug_deletes_the_host_end_and_tolerates_absence():
    runner = FakeRunner({("ip", "link", "delete"): (1, "", "Cannot find device")})
    ports.unplug_port(plumbing.Plumbing(runner), NS, "eth1")
    assert runner.calls == [["ip", "link", "delete", "dev", ports.host_veth_name(NS, "eth1")]]
