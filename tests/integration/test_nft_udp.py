"""Real UDP traffic through the rendered nftables rules.

Three namespaces, all removed afterwards::

    client 198.18.201.2 ── vip0: amphora 198.18.201.1 + VIP 198.18.201.100
                                 amphora mem0 198.18.200.1 ── member 198.18.200.10, .11

DNAT happens in prerouting, so packets must enter the amphora through an interface: the
client sits in a namespace of its own. The member namespace holds both members (two
addresses, one echo socket each) and has no route but its own subnet: replies reach the
client only because the amphora masquerades the flows it DNATs.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest

from amphorae.contract import model, nftables
from tests import netns

VIP = "198.18.201.100"
PORT = 53
MEMBERS = {"member-a": "198.18.200.10", "member-b": "198.18.200.11"}
MEMBER_PORT = 5300

# Echo server for both members; it answers "<its own address>|<payload>" and stops by
# itself after a minute whatever happens to the test.
SERVER = f"""
import selectors, socket, sys, time
sel = selectors.DefaultSelector()
for addr in {list(MEMBERS.values())!r}:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, {MEMBER_PORT}))
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        data, peer = key.fileobj.recvfrom(2048)
        key.fileobj.sendto(key.fileobj.getsockname()[0].encode() + b"|" + data, peer)
"""

# Client: reads commands "new N" (N flows, each from a fresh socket) or "same N" (N
# datagrams on one long-lived socket), prints one JSON line per command:
# [[reply source address, source port, member address], ...], null for no reply.
CLIENT = f"""
import json, socket, sys
sticky = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for line in sys.stdin:
    cmd, count = line.split()
    out = []
    for i in range(int(count)):
        s = sticky if cmd == "same" else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1)
        s.sendto(b"ping %d" % i, ({VIP!r}, {PORT}))
        try:
            data, addr = s.recvfrom(2048)
            out.append([addr[0], addr[1], data.decode().split("|")[0]])
        except TimeoutError:
            out.append(None)
        if s is not sticky:
            s.close()
    print(json.dumps(out), flush=True)
"""


def _require_root() -> None:
    netns.require_root()
    for tool in ("ip", "nft", "sysctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed")


def _lb(allowed_cidrs: tuple[str, ...] = ()) -> model.LoadBalancer:
    pool = model.Pool(id="pool-udp", protocol="UDP", lb_algorithm="ROUND_ROBIN", members=tuple(
        model.Member(id=mid, address=addr, protocol_port=MEMBER_PORT)
        for mid, addr in MEMBERS.items()))
    listener = model.Listener(id="listener-udp", protocol="UDP", protocol_port=PORT,
                              default_pool_id=pool.id, allowed_cidrs=allowed_cidrs)
    return model.LoadBalancer(id="lb-udp", project_id="p", vips=(VIP,),
                              listeners=(listener,), pools=(pool,))


@contextlib.contextmanager
def _process(ns: str, code: str, **kwargs):
    """A Python process inside ``ns``; killed (with its process group) on exit."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                            text=True, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def _topology():
    with contextlib.ExitStack() as stack:
        amp = stack.enter_context(netns.namespace("nftamp"))
        cli = stack.enter_context(netns.namespace("nftcli"))
        mem = stack.enter_context(netns.namespace("nftmem"))
        ip = lambda ns, *args: netns.run("ip", "-n", ns, *args)  # noqa: E731
        ip(amp, "link", "add", "vip0", "type", "veth", "peer", "name", "eth0", "netns", cli)
        ip(amp, "link", "add", "mem0", "type", "veth", "peer", "name", "eth0", "netns", mem)
        ip(amp, "addr", "add", "198.18.201.1/24", "dev", "vip0")
        ip(amp, "addr", "add", f"{VIP}/24", "dev", "vip0")
        ip(amp, "addr", "add", "198.18.200.1/24", "dev", "mem0")
        ip(cli, "addr", "add", "198.18.201.2/24", "dev", "eth0")
        for addr in MEMBERS.values():
            ip(mem, "addr", "add", f"{addr}/24", "dev", "eth0")
        for ns, dev in ((amp, "vip0"), (amp, "mem0"), (cli, "eth0"), (mem, "eth0")):
            ip(ns, "link", "set", dev, "up")
        # The agent's job in a real amphora: DNATed packets are forwarded.
        netns.run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=amp)
        yield amp, cli, mem


def _load(amp: str, path: pathlib.Path, lb: model.LoadBalancer, healthy=None) -> None:
    path.write_text(nftables.render(lb, healthy))
    netns.run("nft", "-f", str(path), ns=amp)


def test_udp_round_robin_through_vip(tmp_path: pathlib.Path) -> None:
    _require_root()
    rules = tmp_path / "amphorae-udp.nft"
    with _topology() as (amp, cli, mem), \
            _process(mem, SERVER, stdout=subprocess.PIPE) as server, \
            _process(cli, CLIENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as client:
        assert server.stdout.readline().strip() == "ready"

        def ask(command: str) -> list:
            client.stdin.write(command + "\n")
            client.stdin.flush()
            return json.loads(client.stdout.readline())

        _load(amp, rules, _lb())

        # Ten flows: every reply comes from the VIP, and round robin alternates members.
        replies = ask("new 10")
        assert all(r is not None for r in replies), replies
        assert {(r[0], r[1]) for r in replies} == {(VIP, PORT)}
        members = [r[2] for r in replies]
        assert collections.Counter(members) == {addr: 5 for addr in MEMBERS.values()}
        assert all(a != b for a, b in itertools.pairwise(members)), members

        # One flow stays on one member (conntrack), datagram after datagram.
        sticky = ask("same 4")
        assert all(r is not None for r in sticky), sticky
        held = {r[2] for r in sticky}
        assert len(held) == 1
        (held_addr,) = held
        other = next(mid for mid, addr in MEMBERS.items() if addr != held_addr)

        # The agent marks the held member down: new flows avoid it, the established flow
        # keeps its member across the reload (NAT is decided once per connection).
        _load(amp, rules, _lb(), {"pool-udp": {other}})
        assert {r[2] for r in ask("new 4")} == {MEMBERS[other]}
        assert {r[2] for r in ask("same 2")} == {held_addr}

        # allowed_cidrs that exclude the client: its new flows are dropped.
        _load(amp, rules, _lb(allowed_cidrs=("198.18.250.0/24",)))
        assert ask("new 2") == [None, None]
        _load(amp, rules, _lb(allowed_cidrs=("198.18.201.0/24",)))
        assert all(r is not None and r[0] == VIP for r in ask("new 2"))

        client.stdin.close()
