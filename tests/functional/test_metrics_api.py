"""/metrics of a real `amphorae api` (two gunicorn workers, SQLite and PostgreSQL): the
requests every worker answered add up in one exposition, and the database's figures
come with them."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from amphorae.db import engine, jobs
from tests import servers

ROUTE = 'route="/v2/lbaas/loadbalancers/{lb_id}",status="404"'


def counted(api: servers.Client) -> float:
    text = requests.get(api.server.url + "/metrics", timeout=5).text
    found = re.search(r'^amphorae_api_requests_total\{method="GET",' + re.escape(ROUTE)
                      + r"\} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def missing(api: servers.Client, i: int) -> None:
    answer = requests.get(f"{api.server.url}/v2/lbaas/loadbalancers/missing-{i}",
                          headers={"Connection": "close"}, timeout=5)
    assert answer.status_code == 404


def test_every_workers_requests_add_up(api: servers.Client) -> None:
    before = counted(api)
    state = api.server.config_file.parent / "metrics"
    sent = 0
    # Concurrent connections until both workers have answered some (an idle worker may
    # take a whole sequence of them), within a bound.
    with ThreadPoolExecutor(8) as pool:
        while sent < 600 and len(list(state.glob("*/counter_*.db"))) < 2:
            list(pool.map(lambda i: missing(api, i), range(sent, sent + 40)))
            sent += 40
    files = [p.name for p in state.glob("*/counter_*.db")]
    assert len(files) >= 2, files  # two processes counted: the sum below is across them
    assert counted(api) - before == sent
    text = requests.get(api.server.url + "/metrics", timeout=5).text
    assert "amphorae_database_up 1.0" in text
    assert "missing-" not in text


def test_a_worker_run_on_its_own_serves_its_figures_on_its_port(tmp_path) -> None:
    """``amphorae worker`` alone (no-op drivers): its reconciles on ``[metrics]
    bind_port``, with its process's figures; the database's gauges only come with the API."""
    port = servers.free_port()
    db_url = f"sqlite:///{tmp_path}/amphorae.sqlite"
    conf = tmp_path / "worker.conf"
    conf.write_text(f"""[DEFAULT]
state_path = {tmp_path}
[database]
connection = {db_url}
[controller_worker]
compute_driver = compute_noop_driver
network_driver = network_noop_driver
amphora_driver = amphora_noop_driver
[metrics]
bind_port = {port}
""")
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(servers.VENV_BIN / "amphorae"), "worker", "--config-file",
                             str(conf)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        text, enqueued = "", False
        deadline = time.monotonic() + 20
        while 'amphorae_reconciles_total{action="reconcile",outcome="success"} 1.0' \
                not in text:
            assert time.monotonic() < deadline and proc.poll() is None, \
                (text, (tmp_path / "worker.log").read_text())
            time.sleep(0.1)
            with contextlib.suppress(requests.ConnectionError):
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if not enqueued:  # the database is there once the port answers
                    _enqueue(db_url)
                    enqueued = True
        assert "process_cpu_seconds_total" in text
        assert "amphorae_database_up" not in text
    finally:
        servers.stop_group(proc, 10)
        log.close()
        engine.get_engine(db_url).dispose()


def _enqueue(db_url: str) -> None:
    """A reconcile of a load balancer that is gone (nothing to do: it succeeds)."""
    with engine.transaction(url=db_url) as session:
        jobs.enqueue(session, "00000000-0000-0000-0000-00000000beef")

