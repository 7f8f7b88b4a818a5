"""POST → ACTIVE in cloud mode: `amphorae up` with Octavia's cloud drivers against the real
Keystone, Neutron, Barbican and Nova of scripts/openstack-dev, whose compute hosts run the
netns virt driver (each amphora a Nova server booted as a namespace running our agent),
set up as tests/integration/test_cloud_e2e.py does (tests/cloud_plane.py).

    sudo .venv/bin/python -m bench.cloud_e2e [--rounds 3]

For each topology, ``--rounds`` load balancers one after another as project-a-member
through openstacksdk: the time from the POST to ``provisioning_status = ACTIVE`` (Nova
boot, port binding, the agent answering, the Neutron VRRP and member ports attached
through Nova, the first configuration pushed), then a cascade delete (not timed).
Addresses: management 198.19.202.0/24, VIP 198.19.203.0/24, members 198.19.207.0/24.

Target: Octavia's own budget for an amphora boot with Nova is
``amp_active_retries x amp_active_wait_sec`` (300 s by default); a VM boots in tens of
seconds. Here the hypervisor is a namespace, so what is left is the control plane and
the OpenStack APIs: the target is ACTIVE within 20 s (SINGLE) and 30 s (ACTIVE_STANDBY,
whose two boots share the rig's single-worker Nova API).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests import cloud as osdev
from tests import cloud_plane

BLOCKS = cloud_plane.Blocks(mgmt="198.19.202.0/24", vip="198.19.203.0/24",
                            member="198.19.207.0/24")
TARGETS = {"SINGLE": 20.0, "ACTIVE_STANDBY": 30.0}  # seconds, median POST -> ACTIVE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cloud = osdev.ensure_running()
    with tempfile.TemporaryDirectory(prefix="amph-bench-cloud-") as tmp, \
            cloud_plane.running_plane(cloud, BLOCKS, Path(tmp)) as plane:
        lbs = plane.member.load_balancer
        pair = cloud_plane.pair_flavor(plane)
        for topology, target in TARGETS.items():
            flavor = {"flavor_id": pair} if topology == "ACTIVE_STANDBY" else {}
            figures = []
            for round_ in range(args.rounds):
                started = time.monotonic()
                lb = lbs.create_load_balancer(name=f"amph-bench-{topology.lower()}-{round_}",
                                              vip_subnet_id=plane.vip_subnet.id, **flavor)
                try:
                    cloud_plane.wait_lb(plane, lb.id)
                    figures.append(time.monotonic() - started)
                finally:
                    lbs.delete_load_balancer(lb.id, cascade=True, ignore_missing=True)
                    cloud_plane.wait_gone(plane, lb.id)
            median = statistics.median(figures)
            print(f"{topology}: POST -> ACTIVE median {median:.1f} s, max {max(figures):.1f} s"
                  f" ({args.rounds} rounds)   target < {target:.0f} s: "
                  f"{'met' if median < target else 'NOT met'}")


if __name__ == "__main__":
    main()
