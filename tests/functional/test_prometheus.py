"""A real Prometheus server scrapes a real `amphorae up` (no-op drivers, SQLite; no root
needed) every second, and the figures are read back through Prometheus's query API:
what an operator's dashboard would see. The API's gunicorn workers and the worker and
health manager threads of `up` are separate processes; their figures reach one /metrics
only through the shared multiprocess directory."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from amphorae.db import engine
from amphorae.db import models as m
from tests import leftovers, servers

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DEADLINE = 40.0  # seconds for the figures to show up in Prometheus, all of them


@pytest.fixture(scope="module")
def deployment() -> Iterator[tuple[servers.Server, str, int]]:
    """`amphorae up` and a Prometheus scraping it: (the API, Prometheus's URL, the health
    manager's UDP port)."""
    state = Path(tempfile.mkdtemp(prefix="amph-prom-"))
    leftovers.register(state)
    api_port, prom_port = servers.free_port(), servers.free_port()
    hb_port = free_udp_port()
    db_url = f"sqlite:///{state}/amphorae.sqlite"
    conf = servers.write_config(state, api_port, db_url, f"""
[health_manager]
bind_ip = 127.0.0.1
bind_port = {hb_port}

[controller_worker]
compute_driver = compute_noop_driver
network_driver = network_noop_driver
amphora_driver = amphora_noop_driver
""")
    (state / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: amphorae
    static_configs:
      - targets: ["127.0.0.1:{api_port}"]
""")
    procs = []
    try:
        with open(state / "up.log", "wb") as up_log, open(state / "prom.log", "wb") as p_log:
            procs.append(subprocess.Popen(
                [str(servers.VENV_BIN / "amphorae"), "up", "--config-file", str(conf)],
                stdout=up_log, stderr=subprocess.STDOUT, start_new_session=True))
            procs.append(subprocess.Popen(
                [PROMETHEUS, f"--config.file={state}/prometheus.yml",
                 f"--storage.tsdb.path={state}/tsdb",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=p_log, stderr=subprocess.STDOUT, start_new_session=True))
        api = servers.Server(f"http://127.0.0.1:{api_port}", "sqlite", db_url, conf, procs[0])
        servers._wait_up(api.url, procs[0], state / "up.log")
        yield api, f"http://127.0.0.1:{prom_port}", hb_port
    finally:
        for proc in procs:
            servers.stop_group(proc, 10)
        engine.get_engine(db_url).dispose()
        shutil.rmtree(state, ignore_errors=True)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(prom: str, promql: str) -> float | None:
    """The one value of an instant query, None while it has none."""
    answer = requests.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def test_prometheus_sees_requests_load_balancers_and_the_queue(deployment):
    api, prom, hb_port = deployment
    client = servers.Client(api)
    for i in range(3):  # the worker takes them to ACTIVE
        status, body = client.post("/v2/lbaas/loadbalancers", {"loadbalancer": {
            "name": f"prom-{i}", "vip_subnet_id": servers.PUBLIC_SUBNET}})
        assert status == 201, body
    missing = "00000000-0000-0000-0000-00000000dead"
    for _ in range(4):
        assert client.get(f"/v2/lbaas/loadbalancers/{missing}")[0] == 404
    # A retry waiting for its time: a job that sits in the queue, delayed.
    with engine.transaction(url=api.db_url) as session:
        session.add(m.Job(load_balancer_id=None, amphora_id="prom-test", action="reconcile",
                          created_at=dt.datetime(2000, 1, 1),
                          not_before=dt.datetime(2100, 1, 1)))

    # Heartbeats signed with another key: dropped, and counted by the health manager.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(2):
            sock.sendto(zlib.compress(b'{"id": "x"}') + b"0" * 64, ("127.0.0.1", hb_port))

    wanted = {
        'up{job="amphorae"}': 1,
        'sum(amphorae_api_requests_total{method="POST",route="/v2/lbaas/loadbalancers",'
        'status="201"})': 3,
        'sum(amphorae_api_requests_total{route="/v2/lbaas/loadbalancers/{lb_id}",'
        'status="404"})': 4,
        'sum(amphorae_load_balancers{provisioning_status="ACTIVE"})': 3,
        'sum(amphorae_amphorae{status="ALLOCATED"})': 3,
        'sum(amphorae_reconciles_total{action="reconcile",outcome="success"}) >= bool 3': 1,
        'amphorae_jobs{state="delayed"}': 1,
        'amphorae_jobs{state="ready"}': 0,
        'amphorae_jobs_oldest_age_seconds{state="delayed"} > bool 86400 * 365 * 20': 1,
        'amphorae_database_up': 1,
        'amphorae_heartbeats_rejected_total{reason="forged"}': 2,
        'amphorae_heartbeats_received_total': 2,
    }
    seen: dict[str, float | None] = {}
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        seen = {q: query(prom, q) for q in wanted}
        if seen == wanted:
            break
        time.sleep(0.5)
    assert seen == wanted
    # No object id became a label value: the labels stay few whatever clients ask.
    series = requests.get(f"{prom}/api/v1/series",
                          params={"match[]": '{__name__=~"amphorae_.*"}'}, timeout=5).json()
    assert series["status"] == "success" and series["data"]
    assert not [s for s in series["data"] if missing in str(s.values())]
