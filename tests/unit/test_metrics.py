"""The metrics: the database collector on real databases, the counters the worker and the
health manager feed, the API's request figures and /metrics, and the multiprocess
directory (real forked processes). The whole chain, scraped by a real Prometheus, is
tests/functional/test_prometheus.py."""

from __future__ import annotations

import collections
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from amphorae.api import app as app_mod
from amphorae.api import metrics as api_metrics
from amphorae.common import config, metrics
from amphorae.common import constants as c
from amphorae.common.timeutil import utcnow
from amphorae.db import engine, migrate
from amphorae.db import models as m
from amphorae.db.metrics import DatabaseCollector
from amphorae.health import metrics as health_metrics
from amphorae.worker import metrics as worker_metrics
from amphorae.worker.queue import Claim, LeaseLost
from tests.functional.test_health_manager import tree
from tests.unit.test_health_grace import TIMEOUT, beats, clock, manager, path  # noqa: F401 (fixtures)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(collector: Any) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in collector.collect() for s in family.samples}


def value(name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` that carry ``labels`` (among others)."""
    return sum(v for (n, got), v in samples(metrics.instruments().registry).items()
               if n == name and set(labels.items()) <= set(got))


# -- the database collector ----------------------------------------------------------------

def test_database_collector_counts_by_status_and_ages_jobs(database_url: str) -> None:
    empty = samples(DatabaseCollector(database_url))
    assert empty[("amphorae_database_up", ())] == 1
    assert {k: v for k, v in empty.items() if k[0].startswith("amphorae_jobs")} == {
        (name, (("state", state),)): 0.0 for name in ("amphorae_jobs",
                                                       "amphorae_jobs_oldest_age_seconds")
        for state in ("ready", "leased", "delayed")}
    assert not [k for k in empty if k[0] in ("amphorae_load_balancers", "amphorae_amphorae")]
    assert empty[("amphorae_heartbeat_oldest_age_seconds", ())] == 0

    now = utcnow()
    ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
    with engine.transaction(url=database_url) as session:
        for prov, oper in (("ACTIVE", "ONLINE"), ("ACTIVE", "ONLINE"), ("ERROR", "OFFLINE"),
                           ("PENDING_CREATE", "OFFLINE")):
            session.add(m.LoadBalancer(provisioning_status=prov, operating_status=oper))
        for status, role, heard in (("ALLOCATED", "MASTER", 3), ("ALLOCATED", "BACKUP", 8),
                                    ("ALLOCATED", "STANDALONE", None),
                                    ("ALLOCATED", "STANDALONE", 1), ("BOOTING", None, None),
                                    ("DELETED", "MASTER", 900)):
            amp = m.Amphora(id=m.new_id(), status=status, role=role)
            session.add(amp)
            if heard is not None:  # only serving amphorae count: not the DELETED one
                session.add(m.AmphoraHealth(amphora_id=amp.id, last_update=ago(heard)))
        for created, lease, not_before in ((100, None, None), (50, ago(5), None),
                                           (30, ago(-60), None), (10, None, ago(-60))):
            session.add(m.Job(action=c.JOB_RECONCILE, load_balancer_id=None,
                              amphora_id="x", created_at=ago(created),
                              lease_expires_at=lease, not_before=not_before))

    got = samples(DatabaseCollector(database_url))
    assert got[("amphorae_database_up", ())] == 1
    lbs = {k[1]: v for k, v in got.items() if k[0] == "amphorae_load_balancers"}
    assert lbs == {
        (("operating_status", "ONLINE"), ("provisioning_status", "ACTIVE")): 2,
        (("operating_status", "OFFLINE"), ("provisioning_status", "ERROR")): 1,
        (("operating_status", "OFFLINE"), ("provisioning_status", "PENDING_CREATE")): 1}
    amps = {k[1]: v for k, v in got.items() if k[0] == "amphorae_amphorae"}
    assert amps == {(("role", "MASTER"), ("status", "ALLOCATED")): 1,
                    (("role", "BACKUP"), ("status", "ALLOCATED")): 1,
                    (("role", "STANDALONE"), ("status", "ALLOCATED")): 2,
                    (("role", "none"), ("status", "BOOTING")): 1,
                    (("role", "MASTER"), ("status", "DELETED")): 1}
    assert got[("amphorae_heartbeat_oldest_age_seconds", ())] == pytest.approx(8, abs=2)
    jobs = {k[1][0][1]: v for k, v in got.items() if k[0] == "amphorae_jobs"}
    assert jobs == {"ready": 2, "leased": 1, "delayed": 1}  # an expired lease is ready
    ages = {k[1][0][1]: v for k, v in got.items()
            if k[0] == "amphorae_jobs_oldest_age_seconds"}
    assert ages == {"ready": pytest.approx(100, abs=5), "leased": pytest.approx(30, abs=5),
                    "delayed": pytest.approx(10, abs=5)}


def test_database_collector_answers_while_the_database_is_away(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/dir/amphorae.sqlite"
    try:
        assert samples(DatabaseCollector(url)) == {("amphorae_database_up", ()): 0.0}
    finally:
        engine.get_engine(url).dispose()


# -- the worker and the health manager -----------------------------------------------------

def claim(*actions: str) -> Claim:
    return Claim("lb", "lb", (1,), frozenset((a, None) for a in actions), 1)


def test_reconciles_are_named_after_their_most_telling_job_and_outcome() -> None:
    assert worker_metrics.action(claim(c.JOB_RECONCILE)) == "reconcile"
    assert worker_metrics.action(claim(c.JOB_RECONCILE, c.JOB_FAILOVER_AMPHORA)) == \
        "failover_amphora"
    assert worker_metrics.action(claim(c.JOB_FAILOVER_AMPHORA, c.JOB_FAILOVER_LB)) == \
        "failover_loadbalancer"
    before = {o: value("amphorae_reconciles_total", action="failover_amphora", outcome=o)
              for o in ("success", "lease_lost", "error", "gave_up")}
    one = claim(c.JOB_FAILOVER_AMPHORA)
    worker_metrics.finished(one, None, 0.3)
    worker_metrics.finished(one, LeaseLost("lb"), 0.1)
    worker_metrics.finished(one, RuntimeError("boom"), 0.1)
    worker_metrics.finished(one, None, 7.0)
    worker_metrics.gave_up(one)
    after = {o: value("amphorae_reconciles_total", action="failover_amphora", outcome=o)
             for o in before}
    assert {o: after[o] - before[o] for o in before} == {
        "success": 2, "lease_lost": 1, "error": 1, "gave_up": 1}
    assert value("amphorae_reconcile_duration_seconds_bucket", action="failover_amphora",
                 outcome="success", le="5.0") >= 1
    assert value("amphorae_reconcile_duration_seconds_bucket", action="failover_amphora",
                 outcome="success", le="+Inf") >= 2


def test_heartbeat_counters_reach_prometheus_by_what_they_grew() -> None:
    names = [("amphorae_heartbeats_received_total", {})] + [
        ("amphorae_heartbeats_rejected_total", {"reason": r})
        for r in ("forged", "replayed", "overflow")] + [
        ("amphorae_heartbeats_written_total", {"outcome": o})
        for o in ("applied", "ignored", "withheld", "failed")]
    before = [value(n, **labels) for n, labels in names]
    counters: collections.Counter[str] = collections.Counter()
    mirror = health_metrics.HeartbeatMirror()
    counters.update(received=10, accepted=7, forged=2, replayed=1, written=7, ignored=1)
    mirror.update(counters)
    mirror.update(counters)  # nothing grew: nothing counted twice
    counters.update(received=5, accepted=4, overflow=1, written=2, withheld=1,
                    write_failed=2)
    mirror.update(counters)
    grew = [value(n, **labels) - b for (n, labels), b in zip(names, before, strict=True)]
    assert grew == [15, 2, 1, 1, 7, 1, 1, 2]


def test_the_stale_check_counts_the_failovers_it_starts(manager, clock) -> None:  # noqa: F811
    """The health manager's real stale check (SQLite, faked clocks): a silent amphora."""
    before = value("amphorae_failovers_total", reason="heartbeat_timeout")
    silent = tree(manager.url)
    beats(manager, [silent], seq=1)
    clock.advance(2 * TIMEOUT)
    result = manager.check_stale()
    assert result is not None and result.failed_over == [silent["amphorae"][0]]
    assert value("amphorae_failovers_total", reason="heartbeat_timeout") - before == 1


def test_failovers_by_reason() -> None:
    before = [value("amphorae_failovers_total", reason=r)
              for r in ("heartbeat_timeout", "instance_gone")]
    health_metrics.failovers(["a", "b", "c"], gone=["b"])
    after = [value("amphorae_failovers_total", reason=r)
             for r in ("heartbeat_timeout", "instance_gone")]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1]


# -- the API -------------------------------------------------------------------------------

@pytest.fixture
def client(tmp_path: Path) -> Iterator[falcon.testing.TestClient]:
    url = f"sqlite:///{tmp_path}/api.sqlite"
    migrate.upgrade(url)
    config.CONF.set_override("connection", url, "database")
    try:
        yield falcon.testing.TestClient(app_mod.create_app())
    finally:
        config.CONF.clear_override("connection", "database")
        engine.get_engine(url).dispose()


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")
def test_requests_are_counted_by_route_template_never_by_path(client) -> None:
    route = "/v2/lbaas/loadbalancers/{lb_id}"
    before = value("amphorae_api_requests_total", method="GET", route=route, status="404")
    for lb_id in ("one", "two", "three"):
        assert client.simulate_get(f"/v2/lbaas/loadbalancers/{lb_id}").status_code == 404
    assert value("amphorae_api_requests_total", method="GET", route=route,
                 status="404") - before == 3
    before = value("amphorae_api_requests_total", method="GET", route="unmatched",
                   status="404")
    client.simulate_get("/no/such/thing")
    assert value("amphorae_api_requests_total", method="GET", route="unmatched",
                 status="404") - before == 1
    # Refused by another middleware before routing: counted all the same.
    before = value("amphorae_api_requests_total", method="GET", route="unmatched",
                   status="406")
    assert client.simulate_get("/", headers={"Accept": "text/html"}).status_code == 406
    assert value("amphorae_api_requests_total", method="GET", route="unmatched",
                 status="406") - before == 1
    before = value("amphorae_api_requests_total", method="OTHER")
    assert client.simulate_request("BREW", "/").status_code == 400
    assert value("amphorae_api_requests_total", method="OTHER", status="400") - before == 1
    assert not value("amphorae_api_requests_total", method="BREW")

    body = client.simulate_get("/metrics")
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/plain")
    assert 'amphorae_api_requests_total{method="GET",route="/v2/lbaas/loadbalancers/' \
        '{lb_id}",status="404"}' in body.text
    assert "amphorae_database_up 1.0" in body.text
    assert "three" not in body.text


def test_a_failure_to_record_breaks_nothing(client, monkeypatch, caplog) -> None:
    """Say the multiprocess directory was removed under a running service: requests are
    still answered, the worker's and the health manager's bookkeeping goes on."""
    def broken() -> None:
        raise FileNotFoundError("metrics directory gone")

    monkeypatch.setattr(metrics, "instruments", broken)
    assert client.simulate_get("/").status_code == 200
    assert client.simulate_get("/").status_code == 200
    worker_metrics.finished(claim(c.JOB_RECONCILE), None, 1.0)
    health_metrics.HeartbeatMirror().update({"received": 1})
    health_metrics.failovers(["a"], gone=[])
    failures = [r for r in caplog.records if "recording" in r.getMessage()]
    assert len(failures) == 4  # once per recording function, not once per call


def test_metrics_can_be_turned_off_and_put_behind_keystone(client) -> None:
    assert api_metrics.public_paths() == {"/metrics"}
    config.CONF.set_override("auth_required", True, "metrics")
    try:
        assert api_metrics.public_paths() == {"/metrics"}  # noauth: nothing to require
        config.CONF.set_override("auth_strategy", "keystone", "api_settings")
        assert api_metrics.public_paths() == set()
        config.CONF.set_override("enabled", False, "metrics")
        assert api_metrics.public_paths() == set()
        assert falcon.testing.TestClient(app_mod.create_app()).simulate_get(
            "/metrics").status_code == 404
    finally:
        for name, group in (("auth_required", "metrics"), ("enabled", "metrics"),
                            ("auth_strategy", "api_settings")):
            config.CONF.clear_override(name, group)


# -- the multiprocess directory -------------------------------------------------------------

SHARED = """
import os, subprocess, sys
from amphorae.common import config, metrics
config.CONF.set_override("state_path", sys.argv[1])
gone = subprocess.Popen(["true"]); gone.wait()
os.makedirs(os.path.join(sys.argv[1], "metrics", str(gone.pid)))  # a killed run's
directory = metrics.share_directory()
child = os.fork()
if child == 0:  # as a gunicorn worker: its own file, and its exit keeps the directory
    metrics.instruments().failovers.labels("x").inc(2)
    sys.exit(0)
os.waitpid(child, 0)
metrics.instruments().failovers.labels("x").inc()
print(directory, sorted(os.listdir(os.path.dirname(directory))))
print(metrics.exposition()[0].decode())
"""


def test_forked_processes_add_up_in_the_shared_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != metrics.ENV}
    out = subprocess.run([sys.executable, "-c", SHARED, str(tmp_path)], env=env, text=True,
                         capture_output=True, timeout=30, check=True).stdout
    first, exposition = out.split("\n", 1)
    directory, listed = first.split(" ", 1)
    assert Path(directory).parent == tmp_path / "metrics"
    assert listed == repr([Path(directory).name])  # the dead run's directory went
    assert 'amphorae_failovers_total{reason="x"} 3.0' in exposition
    assert not Path(directory).exists()  # removed when its owner exited


def test_an_unwritable_state_path_falls_back_to_a_temporary_directory(tmp_path: Path) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state directory should be")
    env = {k: v for k, v in os.environ.items() if k != metrics.ENV}
    out = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom amphorae.common import config, metrics\n"
        "config.CONF.set_override('state_path', sys.argv[1])\n"
        "print(metrics.share_directory())\n"), str(blocked)],
        env=env, text=True, capture_output=True, timeout=30, check=True).stdout.strip()
    assert Path(out).name.startswith("amphorae-metrics-")
    assert not Path(out).exists()  # removed at exit all the same


def test_threads_starting_together_share_one_set_of_instruments(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sets would keep two counts of one series, each overwriting the other's in
    the multiprocess file (an API worker's threads answering its first requests)."""
    class Slow(metrics.Instruments):  # widens the window the threads race for
        def __init__(self) -> None:
            time.sleep(0.05)
            super().__init__()

    monkeypatch.setattr(metrics, "Instruments", Slow)
    metrics._instruments.cache_clear()
    barrier = threading.Barrier(8)

    def first_use() -> int:
        barrier.wait()
        return id(metrics.instruments())

    try:
        with ThreadPoolExecutor(8) as pool:
            made = set(pool.map(lambda _: first_use(), range(8)))
    finally:
        metrics._instruments.cache_clear()  # the next tests get the real class's
    assert len(made) == 1
