"""What our control plane adds to a cloud's own boot time: POST → ACTIVE in cloud mode
next to Nova booting the same servers itself (root).

    sudo .venv/bin/python -m bench.provision --cloud [--rounds 5]

`amphorae up` with Octavia's cloud drivers against the real Keystone, Neutron, Nova and
Barbican of scripts/openstack-dev, set up as tests/integration/test_cloud_e2e.py does
(tests/cloud_plane.py); the compute hosts run the netns virt driver, so the hypervisor's
part is a namespace and our agent starting. Each round, per topology:

- Nova alone: as the service user, one port on the VIP network per server, then one
  server per port (a pair: two at once, in a soft-anti-affinity server group) from the
  amphora image and flavor, until Nova says ACTIVE for all (polled every POLL s);
- ours: a bare load balancer POSTed as project-a-member, until ``ACTIVE`` (polled every
  POLL s); then a cascade delete (not timed).

The control plane's share is the difference of the medians. Targets: under 3 s (SINGLE)
and 4 s (ACTIVE_STANDBY); BASELINE is the measurement before issue 11's crash-safety work.
Addresses: those of bench/cloud_e2e.py (management 198.19.202.0/24, VIP 198.19.203.0/24,
members 198.19.207.0/24); everything is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import cloud as osdev
from tests import cloud_plane
from tests.cloud_plane import Plane

from bench.cloud_e2e import BLOCKS

POLL = 0.1
TARGETS = {"SINGLE": 3.0, "ACTIVE_STANDBY": 4.0}  # s, the control plane's share
# (POST -> ACTIVE, Nova boot, share) in s, measured before (docs/cloud-e2e.md).
BASELINE = {"SINGLE": (11.10, 4.5, 6.45), "ACTIVE_STANDBY": (9.79, 4.0, 6.64)}


def _until(done: Callable[[], bool], what: str, timeout: float = 300.0) -> float:
    """Seconds until ``done()``, polled every POLL s."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout:
            raise TimeoutError(what)
        time.sleep(POLL)
    return time.monotonic() - started


def nova_boot(plane: Plane, count: int) -> float:
    """Nova alone: ``count`` servers on Neutron ports of the VIP network, POST to ACTIVE
    (the ports are made first, not timed)."""
    service, env = plane.env.service, plane.env
    tag = secrets.token_hex(3)
    ports = [service.network.create_port(network_id=plane.vip_net.id,
                                         name=f"amph-bench-nova-{tag}-{i}")
             for i in range(count)]
    group = (service.compute.create_server_group(name=f"amph-bench-{tag}",
                                                 policy="soft-anti-affinity")
             if count > 1 else None)
    servers: list[Any] = []
    try:
        started = time.monotonic()
        hints = {"group": group.id} if group else {}
        servers = [service.compute.create_server(
            name=f"amph-bench-nova-{tag}-{i}", image_id=env.image_id, flavor_id=env.flavor_id,
            networks=[{"port": port.id}], scheduler_hints=hints)
            for i, port in enumerate(ports)]

        def active() -> bool:
            states = [service.compute.get_server(s.id).status for s in servers]
            if "ERROR" in states:
                raise RuntimeError(f"Nova: a bench server went ERROR ({states})")
            return all(s == "ACTIVE" for s in states)

        _until(active, "the bench's servers ACTIVE")
        return time.monotonic() - started
    finally:
        for server in servers:
            service.compute.delete_server(server, ignore_missing=True)
        for server in servers:
            with contextlib.suppress(Exception):
                service.compute.wait_for_delete(server, wait=120)
        for port in ports:
            service.network.delete_port(port, ignore_missing=True)
        if group is not None:
            service.compute.delete_server_group(group, ignore_missing=True)


def post_to_active(plane: Plane, name: str, flavor: dict[str, str]) -> float:
    lbs = plane.member.load_balancer
    started = time.monotonic()
    lb = lbs.create_load_balancer(name=name, vip_subnet_id=plane.vip_subnet.id, **flavor)
    try:
        def active() -> bool:
            status = lbs.get_load_balancer(lb.id).provisioning_status
            if status == "ERROR":
                raise RuntimeError(f"load balancer {lb.id} ERROR:\n{plane.logs()}")
            return bool(status == "ACTIVE")

        _until(active, f"load balancer {lb.id} ACTIVE")
        return time.monotonic() - started
    finally:
        lbs.delete_load_balancer(lb.id, cascade=True, ignore_missing=True)
        cloud_plane.wait_gone(plane, lb.id)


def main(rounds: int, log: Path | None = None) -> int:
    cloud = osdev.ensure_running()
    print(f"amphorae in cloud mode: POST -> ACTIVE next to Nova's own boot, {rounds} "
          f"rounds per topology, polled every {POLL} s")
    with tempfile.TemporaryDirectory(prefix="amph-bench-prov-") as tmp, \
            cloud_plane.running_plane(cloud, BLOCKS, Path(tmp)) as plane:
        pair = cloud_plane.pair_flavor(plane)
        for topology, target in TARGETS.items():
            flavor = {"flavor_id": pair} if topology == "ACTIVE_STANDBY" else {}
            count = 2 if flavor else 1
            ours, nova = [], []
            for i in range(rounds):
                nova.append(nova_boot(plane, count))
                ours.append(post_to_active(plane, f"amph-bench-{topology.lower()}-{i}",
                                           flavor))
            o, n = statistics.median(ours), statistics.median(nova)
            share = o - n
            before = BASELINE[topology]
            print(f"{topology}: POST -> ACTIVE median {o:.2f} s (max {max(ours):.2f}); "
                  f"Nova's own boot of {count} server{'s' * (count > 1)} median {n:.2f} s "
                  f"(max {max(nova):.2f}); control plane's share {share:.2f} s   "
                  f"target < {target:g} s: {'met' if share < target else 'NOT met'}   "
                  f"before: {before[0]:.2f} / {before[1]:.1f} / {before[2]:.2f} s")
        if log:  # the state directory goes with the plane
            shutil.copy(plane.log, log)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--log", type=Path, help="copy the control plane's log here")
    parsed = parser.parse_args()
    raise SystemExit(main(parsed.rounds, parsed.log))
