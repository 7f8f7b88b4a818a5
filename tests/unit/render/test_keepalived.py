"""keepalived.conf and VRRP check script: golden files, keepalived's own config test, and
the check script against a real HAProxy stats socket."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

from amphorae.render import keepalived
from amphorae.render.keepalived import VRRPConfig, VRRPVip
from tests import golden, netns

BASE = "/var/lib/amphorae/amphora"
LB = "6f1c2a1e5b3d4c8e9a0b1c2d3e4f5a6b"

MASTER = VRRPConfig(
    name=LB,
    interface="eth1",
    vrrp_ip="198.18.1.5",
    peer_ips=("198.18.1.6",),
    priority=keepalived.priority_for("MASTER"),
    vips=(VRRPVip("198.18.1.10", 24),),
    auth_pass="3fa85f6",
    check_script=f"{BASE}/vrrp/check.sh",
)

CASES = {
    "master_ipv4.conf": MASTER,
    "backup_notify.conf": dataclasses.replace(
        MASTER, vrrp_ip="198.18.1.6", peer_ips=("198.18.1.5",),
        priority=keepalived.priority_for("BACKUP"), notify=f"{BASE}/vrrp/notify.sh",
        router_id="amphora-2b4c", check_interval=2, check_timeout=2, check_fall=3,
        check_rise=1, garp_refresh=10, garp_refresh_repeat=3, virtual_router_id=7),
    "dual_stack_gateways.conf": dataclasses.replace(
        MASTER, vips=(VRRPVip("198.18.1.10", 24, gateway="198.18.1.1"),
                      VRRPVip("198.18.2.10", 24, gateway="198.18.2.1"),
                      VRRPVip("2001:db8:1::10", 64, gateway="2001:db8:1::1"))),
    "ipv6_vrrp.conf": dataclasses.replace(
        MASTER, vrrp_ip="2001:db8:1::5", peer_ips=("2001:db8:1::6",),
        vips=(VRRPVip("2001:db8:1::10", 64), VRRPVip("198.18.1.10", 32))),
    "fast_advert.conf": dataclasses.replace(MASTER, advert_int=0.2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    golden.check("keepalived", name, keepalived.render(CASES[name]))


def test_priorities_follow_octavia() -> None:
    assert keepalived.priority_for("MASTER") == 100
    assert keepalived.priority_for("BACKUP") == 90
    with pytest.raises(ValueError):
        keepalived.priority_for("STANDALONE")


def test_vrrp_version() -> None:
    assert MASTER.version == 2
    assert CASES["fast_advert.conf"].version == 3
    assert CASES["ipv6_vrrp.conf"].version == 3
    text = keepalived.render(CASES["fast_advert.conf"])
    assert "authentication" not in text and "advert_int 0.2" in text


def test_no_state_line_and_nopreempt() -> None:
    text = keepalived.render(MASTER)
    assert "nopreempt" in text
    assert "\n    state " not in text  # both start BACKUP, or nopreempt does nothing


@pytest.mark.parametrize("change", [
    {"auth_pass": "123456789"},
    {"auth_pass": ""},
    {"auth_pass": "a b"},
    {"peer_ips": ()},
    {"peer_ips": ("2001:db8::6",)},
    {"vips": ()},
    {"name": "lb 1"},
    {"name": "x}\nglobal_defs {"},
    {"interface": "averyveryverylongname0"},
    {"priority": 255},
    {"virtual_router_id": 0},
    {"check_script": "check.sh"},
    {"notify": "/tmp/x y.sh"},
    {"advert_int": 0},
    {"check_fall": 0},
])
def test_rejects_what_keepalived_conf_cannot_carry(change: dict) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(MASTER, **change)


def test_vip_validation() -> None:
    with pytest.raises(ValueError):
        VRRPVip("198.18.1.10", 33)
    with pytest.raises(ValueError):
        VRRPVip("198.18.1.10", 24, gateway="2001:db8::1")


CHECK_CASES = {
    "check_one_socket.sh": ([f"{BASE}/lb1/haproxy.sock"], ()),
    "check_sockets_and_nft.sh": ([f"{BASE}/lb1/haproxy.sock", f"{BASE}/lb2/haproxy.sock"],
                                 ("inet amphorae",)),
    "check_nothing.sh": ([], ()),
}


@pytest.mark.parametrize("name", sorted(CHECK_CASES))
def test_check_script_golden(name: str) -> None:
    sockets, tables = CHECK_CASES[name]
    text = keepalived.render_check_script(sockets, nft_tables=tables)
    golden.check("keepalived", name, text)
    subprocess.run(["sh", "-n"], input=text, text=True, check=True)


@pytest.mark.parametrize("path", ["relative.sock", "/a,b.sock", "/a b.sock", "/a!!b", "/a'b"])
def test_check_script_refuses_unsafe_socket_paths(path: str) -> None:
    with pytest.raises(ValueError):
        keepalived.render_check_script([path])


def test_check_script_refuses_bad_table() -> None:
    with pytest.raises(ValueError):
        keepalived.render_check_script([], nft_tables=["inet x; flush ruleset"])


# keepalived's config test, on every rendered configuration --------------------------------

@pytest.fixture(scope="module")
def vrrp_ns():
    """A namespace holding the interface the configurations name (keepalived checks it)."""
    netns.require_root()
    if shutil.which("keepalived") is None:
        pytest.fail("keepalived is not installed")
    with netns.namespace("katest") as ns:
        netns.run("ip", "-n", ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
        yield ns


@pytest.mark.parametrize("name", sorted(CASES))
def test_keepalived_config_test(name: str, vrrp_ns: str, tmp_path: pathlib.Path) -> None:
    # keepalived refuses scripts that do not exist, so point the paths at real files.
    script = tmp_path / "check.sh"
    script.write_text(keepalived.render_check_script([], nft_tables=("inet amphorae",)))
    script.chmod(0o755)
    vrrp = dataclasses.replace(CASES[name], check_script=str(script))
    if vrrp.notify:
        vrrp = dataclasses.replace(vrrp, notify=str(script))
    conf = tmp_path / "amphorae-keepalived.conf"
    conf.write_text(keepalived.render(vrrp))
    result = netns.run("keepalived", "-t", "-f", str(conf), ns=vrrp_ns, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr  # no warning either


# the check script against a real HAProxy --------------------------------------------------

def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_check_script_follows_haproxy(tmp_path: pathlib.Path) -> None:
    for tool in ("haproxy", "socat"):
        if shutil.which(tool) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is not installed")
            pytest.skip(f"{tool} is not installed")
    sock = tmp_path / "amphorae-haproxy.sock"
    cfg = tmp_path / "amphorae-haproxy.cfg"
    pid = tmp_path / "amphorae-haproxy.pid"
    cfg.write_text(f"global\n    stats socket {sock} mode 600 level admin\n"
                   "defaults\n    mode tcp\n    timeout connect 1s\n"
                   "    timeout client 1s\n    timeout server 1s\n")
    script = tmp_path / "check.sh"
    script.write_text(keepalived.render_check_script([str(sock)], timeout=1))

    def check() -> int:
        return subprocess.run(["sh", str(script)], timeout=10).returncode

    assert check() == 1  # no HAProxy yet
    # A session of its own, so master and worker die together by process group.
    proc = subprocess.Popen(["haproxy", "-Ws", "-f", str(cfg), "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert _wait_for(sock.exists), "HAProxy did not open its stats socket"
        assert _wait_for(lambda: check() == 0), "check fails with HAProxy running"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert sock.exists()  # a stale socket file must not pass for a live HAProxy
        assert check() == 1, "check passes with HAProxy dead"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
