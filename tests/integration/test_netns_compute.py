"""The netns compute driver and the host plumbing under it, on the real kernel (root).

Everything created here is removed even when a test fails: each test deletes what it
created, and a module-level sweep removes any amphora whose id carries the test marker plus
the test bridges. The management subnet is a /24 picked at random in 198.19.128.0/17 (inside
198.18.0.0/15) that the host does not route yet, on a bridge of this run's own: a running
controller's default 198.19.0.0/24 and concurrent test runs are not touched.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amphorae.drivers.compute import netns as compute
from amphorae.drivers.compute.base import ACTIVE, BUILDING, DELETED
from amphorae.drivers.network import ownership, plumbing, ports
from tests import leftovers, netns

# First hex digits of every amphora id this process makes: the sweep's key. Random, so that
# concurrent runs (xdist workers, other sessions) never sweep each other's amphorae.
MARK = secrets.token_hex(2)

# One ICMP echo (there is no ping binary): exit 0 when the reply comes back within 2 s.
PING = r"""
import os, socket, struct, sys, time
dst = sys.argv[1]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
ident = os.getpid() & 0xffff
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"amphorae"
pkt = body[:2] + struct.pack("!H", csum(body)) + body[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(pkt, (dst, 0))
deadline = time.monotonic() + 2
while (left := deadline - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(1024)
    except TimeoutError:
        break
    hl = (data[0] & 15) * 4
    kind, _, _, rid, _ = struct.unpack("!BBHHH", data[hl:hl + 8])
    if kind == 0 and rid == ident and addr[0] == dst:
        sys.exit(0)
sys.exit(1)
"""


def ping(address: str, ns: str | None = None) -> bool:
    return netns.run(sys.executable, "-c", PING, address, ns=ns, check=False).returncode == 0


def netns_names() -> set[str]:
    out = netns.run("ip", "-json", "netns", "list").stdout
    return {n["name"] for n in json.loads(out or "[]")}


def link_names() -> set[str]:
    return {link["ifname"] for link in json.loads(netns.run("ip", "-json", "link").stdout)}


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def free_cidr() -> str:
    """A random /24 in 198.19.128.0/17 that no host route overlaps."""
    routed = [ipaddress.ip_network(r["dst"], strict=False)
              for r in json.loads(netns.run("ip", "-json", "route", "show").stdout)
              if r["dst"] != "default"]
    while True:
        cidr = ipaddress.ip_network(f"198.19.{128 + secrets.randbelow(128)}.0/24")
        if not any(cidr.overlaps(r) for r in routed if r.version == 4):
            return str(cidr)


def sysctl(ns: str, key: str) -> str:
    return netns.run("sysctl", "-n", key, ns=ns).stdout.strip()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory):
    netns.require_root()
    bridge = f"amph-tc-{secrets.token_hex(3)}"
    state = tmp_path_factory.mktemp("amph-state")
    leftovers.register(bridge, state)
    drv = compute.NetnsComputeDriver(
        state_dir=str(state), management_bridge=bridge, management_cidr=free_cidr(),
        deployment=ownership.deployment_id(state))
    yield drv
    # The sweep: anything of ours a failed test may have left.
    for amp in drv.list_amphorae():
        if amp.short_id.startswith(MARK):
            drv.delete(amp.short_id)
    for ns in netns_names():
        if ns.startswith(compute.NAMESPACE_PREFIX + MARK):
            drv.delete(ns[len(compute.NAMESPACE_PREFIX):])
    subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)


@contextlib.contextmanager
def marked_ids(mark: str, delete: Callable[[str], object]) -> Iterator[Callable[[], str]]:
    """Hands out amphora ids starting with ``mark`` (so sweeps find them) and deletes
    every one handed out when the block ends."""
    made: list[str] = []

    def make() -> str:
        amp_id = mark + str(uuid.uuid4())[len(mark):]
        made.append(amp_id)
        return amp_id

    try:
        yield make
    finally:
        for amp_id in made:
            delete(amp_id)


@pytest.fixture
def new_id(driver: compute.NetnsComputeDriver):
    with marked_ids(MARK, driver.delete) as make:
        yield make


def assert_gone(driver: compute.NetnsComputeDriver, amp_id: str) -> None:
    assert compute.namespace_name(amp_id) not in netns_names()
    assert compute.mgmt_veth_name(amp_id) not in link_names()
    assert not (driver.state_dir / compute.short_id(amp_id)).exists()
    assert driver.status(amp_id) == DELETED


def test_create_two_amphorae(driver, new_id):
    ids = [new_id(), new_id()]
    amps = [driver.create(i) for i in ids]
    assert len({a.management_ip for a in amps}) == 2
    for amp_id, amp in zip(ids, amps, strict=True):
        ns = amp.namespace
        assert ns == f"amphora-{amp_id[:8]}"
        assert ns in netns_names()
        assert driver.status(amp_id) == ACTIVE
        for key, value in compute.SYSCTLS.items():
            assert sysctl(ns, key) == value, key
        mgmt = json.loads(netns.run("ip", "-json", "addr", "show", "dev", "mgmt0",
                                    ns=ns).stdout)[0]
        assert mgmt["address"] == plumbing.mac_address(amp_id)
        assert f"{amp.management_ip}" in {a["local"] for a in mgmt["addr_info"]}
        lo = json.loads(netns.run("ip", "-json", "link", "show", "lo", ns=ns).stdout)[0]
        assert "UP" in lo["flags"]
        host_end = json.loads(netns.run("ip", "-json", "link", "show",
                                        compute.mgmt_veth_name(amp_id)).stdout)[0]
        assert host_end["master"] == driver.bridge
        assert ping(amp.management_ip), f"host cannot reach {amp.management_ip}"
    listed = {a.amphora_id: a for a in driver.list_amphorae()}
    assert {listed[i].status for i in ids} == {ACTIVE}
    # Amphorae reach each other over the management bridge too.
    assert ping(amps[1].management_ip, ns=amps[0].namespace)


def test_create_is_idempotent(driver, new_id):
    amp_id = new_id()
    first = driver.create(amp_id)
    again = driver.create(amp_id)
    assert again == first
    assert driver.status(amp_id) == ACTIVE
    assert ping(first.management_ip)


def test_concurrent_creates_get_distinct_addresses(driver, new_id):
    """Threads and a second driver instance (another controller process) at once."""
    other = compute.NetnsComputeDriver(state_dir=str(driver.state_dir),
                                       management_bridge=driver.bridge,
                                       management_cidr=str(driver.cidr),
                                       deployment=driver.deployment)
    ids = [new_id() for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        amps = list(pool.map(lambda pair: pair[0].create(pair[1]),
                             zip([driver, other] * 3, ids, strict=True)))
    assert len({a.management_ip for a in amps}) == len(ids)
    assert all(ping(a.management_ip) for a in amps)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(driver.delete, ids))
    for amp_id in ids:
        assert_gone(driver, amp_id)


def test_restarted_controller_adopts_and_cleans(driver, new_id):
    """A new driver instance finds amphorae (and their processes) by name alone."""
    amp_id = new_id()
    amp = driver.create(amp_id)
    pid = driver.start_process(amp_id, ["sleep", "300"])
    fresh = compute.NetnsComputeDriver(state_dir=str(driver.state_dir),
                                       management_bridge=driver.bridge,
                                       management_cidr=str(driver.cidr),
                                       deployment=driver.deployment)
    adopted = {a.amphora_id: a for a in fresh.list_amphorae()}[amp_id]
    assert adopted == amp
    assert fresh.pid(amp_id, "sleep") == pid
    fresh.delete(amp_id)
    assert not pid_alive(pid)  # a zombie until reaped by its parent counts as dead
    assert_gone(driver, amp_id)


def test_start_process_and_delete(driver, new_id):
    amp_id = new_id()
    amp = driver.create(amp_id)
    pid = driver.start_process(amp_id, ["sleep", "300"])
    # A second one that ignores SIGTERM: delete must SIGKILL it.
    stubborn = driver.start_process(amp_id, ["sh", "-c", "trap '' TERM; exec sleep 300"],
                                    name="stubborn")
    deadline = time.monotonic() + 5
    while driver.pid(amp_id, "stubborn") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert driver.pid(amp_id, "sleep") == pid
    assert driver.pid(amp_id, "stubborn") == stubborn
    in_ns = netns.run("ip", "netns", "pids", amp.namespace).stdout.split()
    assert {str(pid), str(stubborn)} <= set(in_ns)
    pid_file = driver.state_dir / amp_id[:8] / "sleep.pid"
    assert int(pid_file.read_text()) == pid

    driver.delete(amp_id)
    assert not pid_alive(pid)
    assert not pid_alive(stubborn)
    assert_gone(driver, amp_id)
    driver.delete(amp_id)  # twice is fine
    assert_gone(driver, amp_id)


def test_start_process_needs_the_namespace(driver, new_id):
    with pytest.raises(RuntimeError):
        driver.start_process(new_id(), ["true"])


def test_delete_half_created_namespace_only(driver, new_id):
    amp_id = new_id()
    ns = compute.namespace_name(amp_id)
    netns.run("ip", "netns", "add", ns)
    # A process left behind in it too.
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"],
                            start_new_session=True)
    try:
        listed = {a.short_id: a for a in driver.list_amphorae()}
        assert listed[amp_id[:8]].amphora_id is None
        assert listed[amp_id[:8]].status == BUILDING
        assert driver.status(amp_id) == BUILDING
        driver.delete(amp_id[:8])  # the 8 hex digits of the namespace are enough
        assert proc.wait(timeout=5) is not None
        assert_gone(driver, amp_id)
    finally:
        proc.kill()
        proc.wait()


def test_a_namespace_name_without_its_namespace(driver, new_id):
    """`ip netns add` killed between making /run/netns/<name> and mounting the namespace
    on it leaves a plain file: `ip -n <name>` then fails. Deleting the amphora (the ports
    first, as the local network driver does) and building it again both get past it."""
    amp_id = new_id()
    ns = compute.namespace_name(amp_id)
    Path("/run/netns").mkdir(exist_ok=True)
    Path(f"/run/netns/{ns}").touch()
    assert ns in netns_names()
    assert driver.plumbing.links(ns=ns) == []
    ports.PortPlugger(driver.plumbing).unplug_all(ns, [ports.VIP_IFNAME])
    driver.delete(amp_id)
    assert_gone(driver, amp_id)
    Path(f"/run/netns/{ns}").touch()
    amp = driver.create(amp_id)
    assert driver.status(amp_id) == ACTIVE and amp.namespace == ns
    assert any(link["ifname"] == "lo" for link in driver.plumbing.links(ns=ns))
    driver.delete(amp_id)
    assert_gone(driver, amp_id)


def test_delete_half_created_without_veth(driver, new_id):
    amp_id = new_id()
    driver.create(amp_id)
    netns.run("ip", "link", "delete", compute.mgmt_veth_name(amp_id))
    assert driver.status(amp_id) == "ERROR"  # was ready, lost its interface
    driver.delete(amp_id)
    assert_gone(driver, amp_id)


def test_failed_create_leaves_nothing(driver, new_id):
    def failing(argv):
        if "sysctl" in argv:
            raise OSError("simulated failure")
        return plumbing.run(argv)

    broken = compute.NetnsComputeDriver(
        plumbing=plumbing.Plumbing(failing), state_dir=str(driver.state_dir),
        management_bridge=driver.bridge, management_cidr=str(driver.cidr),
        deployment=driver.deployment)
    amp_id = new_id()
    with pytest.raises(OSError, match="simulated"):
        broken.create(amp_id)
    assert_gone(driver, amp_id)


def test_create_delete_timing(driver, new_id):
    driver.create(new_id())  # the bridge and host address exist from here on
    amp_id = new_id()
    start = time.perf_counter()
    driver.create(amp_id)
    created = time.perf_counter() - start
    start = time.perf_counter()
    driver.delete(amp_id)
    deleted = time.perf_counter() - start
    print(f"\namphora namespace+veth: create {created * 1000:.1f} ms, "
          f"delete {deleted * 1000:.1f} ms")
    assert created < 0.5 and deleted < 0.5


# -- the plumbing alone: two namespaces on one bridge ----------------------------------


def test_plumbing_bridge_veth_and_ping():
    netns.require_root()
    pl = plumbing.Plumbing()
    bridge = f"amph-tp-{secrets.token_hex(3)}"
    leftovers.register(bridge)
    with netns.namespace("plumb") as ns_a, netns.namespace("plumb") as ns_b:
        veths = {ns: plumbing.derived_name("amph-v", ns) for ns in (ns_a, ns_b)}
        try:
            for _ in range(2):  # every step twice: idempotent
                pl.ensure_bridge(bridge)
                pl.ensure_host_address(bridge, "198.18.210.1/24")
                for i, ns in enumerate((ns_a, ns_b)):
                    pl.ensure_veth(veths[ns], bridge, ns, "eth0",
                                   mac=plumbing.mac_address(ns))
                    pl.ensure_address(ns, "eth0", f"198.18.210.{10 + i}/24")
                    pl.ensure_route(ns, "default", via="198.18.210.1", dev="eth0")
            assert pl.addresses(bridge) == ["198.18.210.1/24"]
            assert pl.addresses("eth0", ns=ns_a) == ["198.18.210.10/24"]
            assert pl.link("eth0", ns=ns_b)["address"] == plumbing.mac_address(ns_b)
            routes = json.loads(netns.run("ip", "-json", "route", "show", "default",
                                          ns=ns_a).stdout)
            assert routes[0]["gateway"] == "198.18.210.1"
            assert ping("198.18.210.11", ns=ns_a)
            assert ping("198.18.210.10", ns=ns_b)
            assert ping("198.18.210.10")  # from the host through its bridge address

            # A name held by something that is not a bridge is refused.
            with pytest.raises(plumbing.PlumbingError, match="not a bridge"):
                pl.ensure_bridge(veths[ns_a])

            for ns in (ns_a, ns_b):
                pl.delete_link(veths[ns])
                pl.delete_link(veths[ns])
                assert pl.link("eth0", ns=ns) is None
            pl.delete_bridge(bridge)
            pl.delete_bridge(bridge)
            assert not {bridge, *veths.values()} & link_names()
        finally:
            for name in (*veths.values(), bridge):
                subprocess.run(["ip", "link", "delete", name], capture_output=True,
                               check=False)


def test_plumbing_recreates_half_made_veth():
    """A host end whose peer is gone (or in the wrong place) is replaced."""
    netns.require_root()
    pl = plumbing.Plumbing()
    bridge = f"amph-tp-{secrets.token_hex(3)}"
    veth = f"amph-tv-{secrets.token_hex(3)}"
    leftovers.register(bridge, veth)
    with netns.namespace("plumb") as ns:
        try:
            pl.ensure_bridge(bridge)
            # A pair whose peer stayed in the host: the "moved" end is missing in ns.
            netns.run("ip", "link", "add", veth, "type", "veth", "peer", "name",
                      veth + "p")
            pl.ensure_veth(veth, bridge, ns, "eth0")
            assert veth + "p" not in link_names()
            assert pl.link("eth0", ns=ns) is not None
            assert pl.link(veth)["master"] == bridge
        finally:
            for name in (veth, veth + "p", bridge):
                subprocess.run(["ip", "link", "delete", name], capture_output=True,
                               check=False)


def test_netns_pids_and_missing_namespace():
    netns.require_root()
    pl = plumbing.Plumbing()
    missing = f"amph-none-{secrets.token_hex(3)}"
    assert pl.netns_pids(missing) == []
    pl.delete_netns(missing)
    pl.delete_link(f"amph-n{secrets.token_hex(4)}")
    assert pl.link(f"amph-n{secrets.token_hex(4)}") is None
    assert os.geteuid() == 0
