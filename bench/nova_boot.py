"""How long compute_nova_driver takes against the real Nova of scripts/openstack-dev
(fake virt): the build call that asks Nova (it returns BUILDING), and the time until a
repeated build answers ACTIVE with its management address; N amphorae at once.

    .venv/bin/python -m bench.nova_boot [--amphorae 4]

Makes (and removes) an image tag `amph-image-<hex>`, a flavor `amph-flavor-<hex>` and a
network `amph-mgmt-<hex>` with a subnet in 198.19.97.0/24, as tests/functional/
test_nova_driver.py does. Targets: the build call well under Octavia's API budget (it
is made inside a reconcile), and ACTIVE within fake virt's own 4-6 s boot plus one
polling interval.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests import cloud as osdev

from amphorae.common import config
from amphorae.drivers.compute import base
from amphorae.drivers.compute import nova as nova_mod

TARGET_BUILD_CALL = 1.0  # seconds
TARGET_ACTIVE = 10.0  # seconds: 4-6 s of fake virt boot + polling every 0.5 s
POLL = 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--amphorae", type=int, default=4)
    args = parser.parse_args()
    cloud = osdev.ensure_running(("nova",))
    admin, service = cloud.admin(), cloud.service()
    hexid = secrets.token_hex(4)
    tag = f"amph-image-{hexid}"
    image = admin.image.create_image(name=tag, data=b"bench", disk_format="raw",
                                     container_format="bare", tags=[tag])
    flavor = admin.compute.create_flavor(name=f"amph-flavor-{hexid}", ram=64, vcpus=1,
                                         disk=1)
    net = service.network.create_network(name=f"amph-mgmt-{hexid}")
    deployment = f"amph-bench-{hexid}"
    state = tempfile.mkdtemp(prefix="amph-bench-")
    try:
        service.network.create_subnet(network_id=net.id, ip_version=4,
                                      cidr="198.19.97.0/24")
        for name, group, value in [("state_path", None, state),
                                   ("amp_image_tag", "controller_worker", tag),
                                   ("amp_flavor_id", "controller_worker", flavor.id),
                                   ("amp_boot_network_list", "controller_worker", [net.id])]:
            config.CONF.set_override(name, value, group=group)
        driver = nova_mod.NovaComputeDriver(config.CONF, service, deployment=deployment)
        driver.controller_ca.ca  # noqa: B018 - the CA is made once, not in the figures

        def boot(_: int) -> tuple[float, float]:
            amp_id = str(uuid.uuid4())
            started = time.perf_counter()
            first = driver.build(amp_id)  # BUILDING, or ACTIVE when Nova was quicker
            assert first.status in (base.BUILDING, base.ACTIVE), first
            call = time.perf_counter() - started
            while (instance := driver.build(amp_id)).status != base.ACTIVE:
                assert instance.status == base.BUILDING, instance
                assert time.perf_counter() - started < 120, "no ACTIVE in 120 s"
                time.sleep(POLL)
            assert instance.lb_network_ip
            return call, time.perf_counter() - started

        with ThreadPoolExecutor(args.amphorae) as pool:
            results = list(pool.map(boot, range(args.amphorae)))
        calls, actives = [r[0] for r in results], [r[1] for r in results]
        print(f"{args.amphorae} amphorae at once, fake virt")
        print(f"  build call (asks Nova): median {statistics.median(calls):.2f} s, "
              f"max {max(calls):.2f} s   target < {TARGET_BUILD_CALL:.1f} s")
        print(f"  until ACTIVE with lb_network_ip: median {statistics.median(actives):.2f} s, "
              f"max {max(actives):.2f} s   target < {TARGET_ACTIVE:.1f} s")
    finally:
        for server in admin.compute.servers(details=True, all_projects=True):
            if (server.metadata or {}).get(nova_mod.META_DEPLOYMENT) == deployment:
                admin.compute.delete_server(server)
                admin.compute.wait_for_delete(server, wait=120)
        service.network.delete_network(net, ignore_missing=True)
        admin.compute.delete_flavor(flavor, ignore_missing=True)
        admin.image.delete_image(image, ignore_missing=True)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
