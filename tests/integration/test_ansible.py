"""Ansible's openstack.cloud collection (2.5.0, as operators run it for Octavia) against
a whole deployment (root): tests/integration/ansible/loadbalancer.yml makes a load
balancer with a listener, pool, member and health monitor through the modules
loadbalancer, lb_listener, lb_pool, lb_member and lb_health_monitor, with no Keystone
(``auth_type: none``, the API as the endpoint: the collection resolves the VIP subnet by
name and lists the VIP's floating IPs on our Neutron-shaped endpoint). A second run
changes nothing; ``state=absent`` removes it all. Ansible runs from its own cached venv
(scripts/ansible-venv). Deployment: tests/deployment.py on 198.18.132.0/24 +
198.18.133.0/24 (or the next pairs on other xdist workers).
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests import netns
from tests.deployment import Deployment, deployment, per_worker

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = pathlib.Path(__file__).parent / "ansible" / "loadbalancer.yml"
VENV = pathlib.Path(os.environ.get("ANSIBLE_VENV") or pathlib.Path(
    os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    / "amphorae" / "venv-ansible")
MARKER = secrets.token_hex(3)


@pytest.fixture(scope="module")
def up() -> Iterator[Deployment]:
    netns.require_root()
    subprocess.run([str(ROOT / "scripts" / "ansible-venv")], check=True, timeout=900)
    with deployment(MARKER, *per_worker("198.18.132.0/24", "198.18.133.0/24")) as d:
        d.start("up")
        yield d


def playbook(d: Deployment, state: str) -> dict[str, Any]:
    """Run the playbook; per task name, whether it changed anything (failures raise)."""
    home = d.state / "ansible"  # Ansible's temporary files, removed with the deployment
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_PYTHON_INTERPRETER": str(VENV / "bin" / "python"),
           "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp")}
    member = d.member_cidr.rsplit(".", 1)[0] + ".10"
    proc = subprocess.run(
        [str(VENV / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(PLAYBOOK), "-e", json.dumps({
             "endpoint": d.url, "vip_subnet": d.vip_network, "member_address": member,
             "state": state})],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from None
    results = {t["task"]["name"]: t["hosts"]["localhost"]
               for play in out["plays"] for t in play["tasks"]}
    failed = {name: r.get("msg") for name, r in results.items() if r.get("failed")}
    assert proc.returncode == 0 and not failed, (failed, d.logs())
    return {name: r["changed"] for name, r in results.items() if not r.get("skipped")}


def test_a_load_balancer_made_twice_and_removed_with_openstack_cloud(up: Deployment) -> None:
    d = up
    made = ["load balancer", "listener", "pool", "member", "health monitor"]
    assert playbook(d, "present") == dict.fromkeys(made, True)
    (lb,) = d.lb.load_balancers(name="amph-lb")
    assert lb.provisioning_status == "ACTIVE"
    (pool,) = d.lb.pools(name="amph-pool")
    assert [m.name for m in d.lb.members(pool.id)] == ["amph-member"]
    assert d.lb.get_health_monitor(pool.health_monitor_id).name == "amph-monitor"

    assert playbook(d, "present") == dict.fromkeys(made, False)  # idempotent

    removed = ["member", "health monitor", "pool removed", "listener removed",
               "load balancer removed"]
    assert playbook(d, "absent") == dict.fromkeys(removed, True)
    d.wait_gone(lb.id)
    assert d.leftovers() == {}
