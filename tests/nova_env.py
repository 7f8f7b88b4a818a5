"""What a test needs to boot amphorae through the real Nova (tests/cloud.py): an image
tagged ``amph-image-<hex>``, a flavor ``amph-flavor-<hex>`` (as admin) and a management
network ``amph-mgmt-<hex>`` with a subnet in the test's block (as the service user), all
deleted again at the end; and the netns virt driver's names (tests/nova_virt) of a
server, for the tests that look at what it booted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import openstack

from tests import cloud as osdev
from tests import leftovers

NETNS_PREFIX = "amph-nv"


@dataclasses.dataclass(frozen=True)
class Env:
    admin: openstack.connection.Connection
    service: openstack.connection.Connection
    image_id: str
    tag: str
    flavor_id: str
    network_id: str
    subnet_id: str


def wait(what: str, done: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = done()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def nova_env(cloud: osdev.Cloud, mgmt_cidr: str) -> Iterator[Env]:
    admin, service = cloud.admin(), cloud.service()
    hexid = secrets.token_hex(4)
    made: list[Callable[[], object]] = []
    try:
        tag = f"amph-image-{hexid}"
        image = admin.image.create_image(name=tag, data=b"not a disk", disk_format="raw",
                                         container_format="bare", tags=[tag])
        made.append(lambda: admin.image.delete_image(image, ignore_missing=True))
        flavor = admin.compute.create_flavor(name=f"amph-flavor-{hexid}", ram=64, vcpus=1,
                                             disk=1)
        made.append(lambda: admin.compute.delete_flavor(flavor, ignore_missing=True))
        net = service.network.create_network(name=f"amph-mgmt-{hexid}")
        leftovers.register(bridge(net.id))
        made.append(lambda: delete_network_when_free(service, net.id))
        subnet = service.network.create_subnet(name=f"amph-mgmt-{hexid}", network_id=net.id,
                                               ip_version=4, cidr=mgmt_cidr)
        wait("the image to be active", lambda: admin.image.get_image(image).status == "active",
             30)
        yield Env(admin, service, image.id, tag, flavor.id, net.id, subnet.id)
    finally:
        for undo in reversed(made):
            undo()


def delete_network_when_free(conn: openstack.connection.Connection, network_id: str,
                             timeout: float = 90.0) -> None:
    """Delete the network once Nova has deleted the servers' ports on it (a server being
    deleted still holds its port for a few seconds)."""
    wait(f"the ports on network {network_id} gone",
         lambda: not [p for p in conn.network.ports(network_id=network_id)
                      if p.device_owner.startswith("compute:")], timeout, 1.0)
    for port in conn.network.ports(network_id=network_id):
        conn.network.delete_port(port, ignore_missing=True)
    conn.network.delete_network(network_id, ignore_missing=True)


# -- the netns virt driver's names (tests/nova_virt/amphorae_nova_virt/host.py) -----------

def namespace(server_id: str) -> str:
    return f"{NETNS_PREFIX}-{server_id.replace('-', '')[:8]}"


def veth_prefix(server_id: str) -> str:
    return NETNS_PREFIX + server_id.replace("-", "")[:6]


def bridge(network_id: str) -> str:
    return f"{NETNS_PREFIX}b{network_id.replace('-', '')[:7]}"


def register_server(server_id: str) -> None:
    """A killed run's instance namespaces and veths are swept by the next run."""
    leftovers.register(namespace(server_id), veth_prefix(server_id))


def ns_links(ns: str) -> dict[str, dict[str, Any]]:
    """Interfaces in the namespace by name (``ip -json addr``); {} when it is gone."""
    done = subprocess.run(["ip", "-n", ns, "-json", "addr", "show"], capture_output=True,
                          text=True, timeout=30, check=False)
    if done.returncode:
        return {}
    return {link["ifname"]: link for link in json.loads(done.stdout or "[]")}


def host_links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-json", "link", "show"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return [link["ifname"] for link in json.loads(out or "[]")
            if link["ifname"].startswith(prefix)]


def netns_exists(ns: str) -> bool:
    out = subprocess.run(["ip", "-json", "netns", "list"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return any(n["name"] == ns for n in json.loads(out or "[]"))
