"""/metrics of a real `amphorae api` (two gunicorn workers, SQLite and PostgreSQL): the
requests every worker answered add up in one exposition, and the database's figures
come with them."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import requests

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
