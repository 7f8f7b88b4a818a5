"""Memory of one amphora, process by process, from /proc/<pid>/smaps_rollup (root).

    .venv/bin/python -m bench.memory

Builds a SINGLE amphora (tests/dataplane.py: agent and HAProxy with an HTTP listener and
one member) and an ACTIVE_STANDBY pair (tests/vrrp_pair.py: agent, HAProxy, keepalived),
then prints for every process of the SINGLE, the pair's MASTER and its BACKUP:

- RSS: every page the process maps that is in memory, shared or not (what ``ps`` shows);
- PSS: each page divided by the number of processes mapping it, so pages of a library
  that a hundred processes map count a hundredth each (the fair per-amphora cost);
- private (clean + dirty): pages only this process maps (what killing it frees);
- anonymous: heap, stacks, the interpreter's objects (never shared with the page cache).

and each amphora's totals against issue 14's target (bench/targets.py).

Addresses: SINGLE 198.18.192.0/24 (VIP) and 198.18.193.0/24 (members), its management
subnet a free /24 of 198.19.128.0/17 (tests/dataplane.py); pair 198.18.194.0/24 -
198.18.196.0/24. Everything made is removed when the run ends, also when it fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import sys
import uuid
from pathlib import Path

from tests import dataplane as dp
from tests import vrrp_pair as pairs

from amphorae.contract import model
from amphorae.drivers.network import plumbing as plumbing_mod
from bench import targets

SINGLE_VIP, SINGLE_MEMBERS = "198.18.192.0/24", "198.18.193.0/24"
PAIR_NET = pairs.Subnets("198.18.194.0/24", "198.18.195.0/24", "198.18.196.0/24")
FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Anonymous")


@dataclasses.dataclass(frozen=True)
class Usage:
    """KiB of one process (or a sum of them)."""

    rss: int = 0
    pss: int = 0
    private: int = 0
    anonymous: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.rss + other.rss, self.pss + other.pss,
                     self.private + other.private, self.anonymous + other.anonymous)


def usage(pid: int) -> Usage:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        fields[key] = int(value.split()[0])
    return Usage(fields["Rss"], fields["Pss"],
                 fields["Private_Clean"] + fields["Private_Dirty"], fields["Anonymous"])


def _status(pid: int) -> tuple[str, int]:
    """(command name, parent pid)."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return fields["Name"].strip(), int(fields["PPid"])


def role(pid: int) -> str:
    """What a process of an amphora is: keepalived's VRRP child runs the same binary as
    its parent, so the parent tells them apart (HAProxy is one process)."""
    name, ppid = _status(pid)
    if name == "keepalived":
        with contextlib.suppress(OSError):
            if _status(ppid)[0] == name:
                return "keepalived child"
        return "keepalived parent"
    if name == "haproxy":
        return name
    return "agent" if name.startswith("python") or name == "amphorae" else name


def amphora_usage(ns: str) -> dict[str, Usage]:
    """Usage by role of every process in namespace ``ns``."""
    found: dict[str, Usage] = {}
    for pid in plumbing_mod.Plumbing().netns_pids(ns):
        with contextlib.suppress(OSError):  # a check script that just ended
            name = role(pid)
            found[name] = found.get(name, Usage()) + usage(pid)
    return found


def table(title: str, by_role: dict[str, Usage]) -> Usage:
    """Print one amphora's processes (MiB) and return its total."""
    print(f"\n{title}\n  {'process':17} {'RSS':>6} {'PSS':>6} {'private':>8} {'anon':>6}")
    total = Usage()
    for name, u in sorted(by_role.items()):
        total += u
        print(f"  {name:17} {_mib(u.rss)} {_mib(u.pss)} {_mib(u.private):>8} "
              f"{_mib(u.anonymous)}")
    print(f"  {'total':17} {_mib(total.rss)} {_mib(total.pss)} {_mib(total.private):>8} "
          f"{_mib(total.anonymous)}")
    return total


def _mib(kib: int) -> str:
    return f"{kib / 1024:6.1f}"


def verdict(what: str, total: Usage) -> None:
    print(f"  {targets.line('rss', total.rss / 1024, f'{what}; PSS {total.pss / 1024:.1f}')}")


def single() -> dict[str, Usage]:
    """A SINGLE amphora serving an HTTP listener."""
    with dp.single_amphora_topology(secrets.token_hex(3), SINGLE_VIP, SINGLE_MEMBERS,
                                    members=1) as topo:
        topo.plug_vip()
        pool = topo.pool("HTTP")
        listener = model.Listener(id=str(uuid.uuid4()), protocol="HTTP", protocol_port=80,
                                  default_pool_id=pool.id)
        with topo.serving(topo.load_balancer([listener], [pool])):
            topo.answer()  # serving, as measured
            return amphora_usage(topo.namespace)


def main() -> int:
    if os.geteuid() != 0:
        print("bench.memory needs root (network namespaces)", file=sys.stderr)
        return 1
    print("memory of an amphora, MiB, from /proc/<pid>/smaps_rollup")
    verdict("SINGLE", table("SINGLE (agent, HAProxy; no keepalived)", single()))
    with pairs.vrrp_pair(PAIR_NET) as pair:
        for amp in (pair.master, pair.backup):
            verdict(amp.role, table(f"{amp.role} of an ACTIVE_STANDBY pair "
                                    "(agent, HAProxy, keepalived)", amphora_usage(amp.ns)))
    print(f"\n{targets.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
