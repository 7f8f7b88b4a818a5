"""The worker with Octavia's no-op drivers (conformance runs: no amphora anywhere, any
subnet id exists), and the housekeeping sweep that re-enqueues a load balancer stuck in
PENDING_* with no job. Real `amphorae api`, `worker` and `housekeeping` processes on
SQLite and PostgreSQL; no root needed."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, update

from amphorae.db import engine
from amphorae.db import models as m
from tests import servers

NOOP = """
[controller_worker]
compute_driver = compute_noop_driver
network_driver = network_noop_driver
amphora_driver = amphora_noop_driver

[house_keeping]
cleanup_interval = 1
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def noop(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Client]:
    backend = request.param
    state = tmp_path_factory.mktemp(f"noop-{backend}")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    with servers.running_api(backend, state, f"noop_{worker}", NOOP) as server:
        procs = [_start(server, "worker"), _start(server, "housekeeping")]
        try:
            yield servers.Client(server)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(15)


def _start(server: servers.Server, command: str) -> subprocess.Popen[bytes]:
    log = open(server.config_file.parent / f"{command}.log", "ab")  # noqa: SIM115
    return subprocess.Popen([str(servers.VENV_BIN / "amphorae"), command, "--config-file",
                             str(server.config_file)], stdout=log, stderr=subprocess.STDOUT)


def wait_status(api: servers.Client, lb_id: str, status: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = api.get(f"/v2/lbaas/loadbalancers/{lb_id}")
        if code == 404 and status == "DELETED":
            return {}
        lb = body["loadbalancer"]
        if lb["provisioning_status"] == status:
            return lb
        assert time.monotonic() < deadline, (lb, _logs(api))
        time.sleep(0.05)


def _logs(api: servers.Client) -> str:
    folder = pathlib.Path(api.server.config_file).parent
    return "\n".join(p.read_text()[-2000:] for p in folder.glob("*.log"))


def test_any_subnet_and_a_whole_tree_become_active_with_no_amphora(noop):
    made_up, network = str(uuid.uuid4()), str(uuid.uuid4())
    status, body = noop.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "vip_subnet_id": made_up, "vip_network_id": network, "listeners": [{
            "protocol": "HTTP", "protocol_port": 80, "default_pool": {
                "name": "p1", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "members": [
                    {"address": "203.0.113.5", "protocol_port": 8080,
                     "subnet_id": str(uuid.uuid4())}],
                "healthmonitor": {"type": "HTTP", "delay": 5, "timeout": 3,
                                  "max_retries": 2}}}]}})
    assert status == 201, body
    lb_id = body["loadbalancer"]["id"]
    assert (body["loadbalancer"]["vip_subnet_id"],
            body["loadbalancer"]["vip_network_id"]) == (made_up, network)
    lb = wait_status(noop, lb_id, "ACTIVE")
    assert lb["operating_status"] in ("ONLINE", "OFFLINE")
    _, tree = noop.get(f"/v2/lbaas/loadbalancers/{lb_id}/status")
    listener = tree["statuses"]["loadbalancer"]["listeners"][0]
    assert listener["provisioning_status"] == "ACTIVE"
    assert listener["pools"][0]["members"][0]["provisioning_status"] == "ACTIVE"
    _, amps = noop.get("/v2/octavia/amphorae", loadbalancer_id=lb_id)
    assert [(a["role"], a["status"]) for a in amps["amphorae"]] == [
        ("STANDALONE", "ALLOCATED")]
    # Filled as by Octavia's no-op driver: the VIP port and the amphora's own port.
    amp = amps["amphorae"][0]
    assert amp["ha_port_id"] == lb["vip_port_id"] and amp["ha_ip"] == lb["vip_address"]
    assert uuid.UUID(amp["vrrp_port_id"]) and amp["vrrp_ip"]

    # SCTP: nothing to carry it under the no-op drivers, so nothing refuses it.
    status, body = noop.post("/v2/lbaas/listeners", {"listener": {
        "loadbalancer_id": lb_id, "protocol": "SCTP", "protocol_port": 80}})
    assert status == 201, body
    wait_status(noop, lb_id, "ACTIVE")
    status, body = noop.post("/v2/lbaas/pools", {"pool": {
        "listener_id": body["listener"]["id"], "protocol": "SCTP",
        "lb_algorithm": "ROUND_ROBIN"}})
    assert status == 201, body
    wait_status(noop, lb_id, "ACTIVE")

    assert noop.delete(f"/v2/lbaas/loadbalancers/{lb_id}", cascade="true")[0] == 204
    wait_status(noop, lb_id, "DELETED")
    _, amps = noop.get("/v2/octavia/amphorae", loadbalancer_id=lb_id)
    assert {a["status"] for a in amps["amphorae"]} <= {"DELETED"}


def test_a_pending_load_balancer_without_a_job_is_swept_back_in(noop):
    status, body = noop.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
        "vip_subnet_id": str(uuid.uuid4())}})
    assert status == 201, body
    lb_id = body["loadbalancer"]["id"]
    wait_status(noop, lb_id, "ACTIVE")
    # Lose a change's job, as a bug or a hand-edited database would.
    with engine.transaction(url=noop.server.db_url) as session:
        session.execute(update(m.LoadBalancer).where(m.LoadBalancer.id == lb_id)
                        .values(provisioning_status="PENDING_UPDATE"))
        session.execute(delete(m.Job).where(m.Job.load_balancer_id == lb_id))
    # The housekeeping sweep (every second here) enqueues it; the worker finishes it.
    wait_status(noop, lb_id, "ACTIVE", timeout=15)
    assert "pending with no job: enqueued again" in _logs(noop)
