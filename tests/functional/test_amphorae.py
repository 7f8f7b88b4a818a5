"""Amphorae under /v2/octavia. No worker creates amphorae yet, so the rows are written
into the server's database here, as the worker will write them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from amphorae.db import models as m
from tests import servers
from tests.settle import _engine

AMP_KEYS = {"id", "loadbalancer_id", "compute_id", "lb_network_ip", "vrrp_ip", "ha_ip",
            "vrrp_port_id", "ha_port_id", "cert_expiration", "cert_busy", "role", "status",
            "vrrp_interface", "vrrp_id", "vrrp_priority", "cached_zone", "created_at",
            "updated_at", "image_id", "compute_flavor"}
STATS_KEYS = {"id", "loadbalancer_id", "listener_id", "active_connections", "bytes_in",
              "bytes_out", "request_errors", "total_connections"}
AMPS = "/v2/octavia/amphorae"
CREATED = dt.datetime(2026, 11, 23, 19, 29, 1)


def db(server: servers.Server) -> Session:
    return Session(_engine(server.db_url))


def add_amphora(server: servers.Server, lb_id: str | None, **fields: Any) -> str:
    amp_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "status": "ALLOCATED", "role": "STANDALONE", "compute_id": str(uuid.uuid4()),
        "lb_network_ip": "192.0.2.1", "vrrp_ip": "198.51.100.1", "ha_ip": "198.51.100.1",
        "vrrp_port_id": str(uuid.uuid4()), "ha_port_id": str(uuid.uuid4()),
        "cert_expiration": CREATED + dt.timedelta(days=30), "cert_busy": False,
        "vrrp_id": 1, "created_at": CREATED, **fields}
    with db(server) as session, session.begin():
        session.add(m.Amphora(id=amp_id, load_balancer_id=lb_id, **values))
    return amp_id


def jobs(server: servers.Server, amp_id: str) -> list[tuple[str | None, str]]:
    with db(server) as session:
        return [(j.load_balancer_id, j.action) for j in session.scalars(
            select(m.Job).where(m.Job.amphora_id == amp_id).order_by(m.Job.id))]


def set_lb_status(server: servers.Server, lb_id: str, status: str) -> None:
    with db(server) as session, session.begin():
        session.execute(update(m.LoadBalancer).where(m.LoadBalancer.id == lb_id)
                        .values(provisioning_status=status))


def amp_status(server: servers.Server, amp_id: str) -> str:
    with db(server) as session:
        return str(session.scalar(select(m.Amphora.status).where(m.Amphora.id == amp_id)))


def test_list_and_show_match_octavia_sample(api, server):
    lb = api.create_lb()
    amp_id = add_amphora(server, lb["id"])
    add_amphora(server, lb["id"], status="DELETED")
    status, body = api.get(AMPS, loadbalancer_id=lb["id"])
    assert status == 200 and set(body) == {"amphorae", "amphorae_links"}
    [amp] = body["amphorae"]
    assert set(amp) == AMP_KEYS and body["amphorae_links"] == []
    assert amp["id"] == amp_id and amp["loadbalancer_id"] == lb["id"]
    assert amp["created_at"] == "2026-11-23T19:29:01"
    assert amp["cert_expiration"] == "2026-12-23T19:29:01"
    assert amp["cert_busy"] is False and amp["vrrp_id"] == 1 and amp["updated_at"] is None
    assert amp["role"] == "STANDALONE" and amp["status"] == "ALLOCATED"
    assert amp["image_id"] is None and amp["vrrp_priority"] is None
    status, body = api.get(f"{AMPS}/{amp_id}")
    assert status == 200 and body == {"amphora": amp}
    status, body = api.get(f"/v2.0/octavia/amphorae/{amp_id}", fields="status")
    assert body == {"amphora": {"status": "ALLOCATED"}}


def test_missing_and_deleted_are_404(api, server):
    gone = add_amphora(server, None, status="DELETED")
    for amp_id in (gone, str(uuid.uuid4())):
        for method, suffix in (("GET", ""), ("DELETE", ""), ("PUT", "/failover"),
                               ("PUT", "/config")):
            status, body = api.call(method, f"{AMPS}/{amp_id}{suffix}")
            assert status == 404, (method, suffix)
            assert body["faultstring"] == f"Amphora {amp_id} not found."
    status, body = api.get(f"{AMPS}/{gone}/stats")
    assert status == 404 and body["faultstring"] == f"Amphora stats for {gone} not found."


def test_filters_sorting_pagination(api, server):
    pid = uuid.uuid4().hex
    client = servers.Client(server, project=pid)
    lb = client.create_lb()
    master = add_amphora(server, lb["id"], role="MASTER", cert_busy=True, vrrp_priority=100)
    backup = add_amphora(server, lb["id"], role="BACKUP", vrrp_priority=90)
    failed = add_amphora(server, lb["id"], role="BACKUP", status="ERROR",
                         created_at=CREATED + dt.timedelta(hours=1))

    def ids(**params: Any) -> list[str]:
        status, body = api.get(AMPS, **params)
        assert status == 200, body
        return [a["id"] for a in body["amphorae"]]

    assert set(ids(project_id=pid)) == {master, backup, failed}
    assert ids(project_id=uuid.uuid4().hex) == []
    assert ids(loadbalancer_id=lb["id"], role="MASTER") == [master]
    assert ids(loadbalancer_id=lb["id"], cert_busy="true") == [master]
    assert ids(loadbalancer_id=lb["id"], status="ERROR") == [failed]
    assert set(ids(loadbalancer_id=lb["id"], created_at="2026-11-23T19:29:01")) == {
        master, backup}
    assert ids(loadbalancer_id=lb["id"], sort="vrrp_priority:desc,role")[:2] == [
        master, backup]
    assert ids(project_id=pid, sort="role:asc", fields="id")[-1] == master
    # One at a time, following the next links, which keep the filter.
    seen: list[str] = []
    status, body = api.get(AMPS, loadbalancer_id=lb["id"], limit=1)
    while True:
        assert status == 200
        seen += [a["id"] for a in body["amphorae"]]
        nxt = [link["href"] for link in body["amphorae_links"] if link["rel"] == "next"]
        if not nxt:
            break
        assert "loadbalancer_id=" in nxt[0]
        status, body = api.call("GET", nxt[0].removeprefix(api.url))
    assert sorted(seen) == sorted([master, backup, failed]) and len(seen) == 3
    for bad in ({"bogus": "1"}, {"load_balancer_id": lb["id"]}, {"created_at": "yesterday"},
                {"cert_busy": "maybe"}, {"vrrp_id": "one"}, {"tags": "x"}):
        status, body = api.get(AMPS, **bad)
        assert status == 400, bad
        assert body["faultstring"] == "One or more arguments are either duplicate or invalid"
    assert api.get(AMPS, sort="bogus")[0] == 400


def test_delete_only_in_error(api, server):
    lb = api.create_lb()
    live = add_amphora(server, lb["id"])
    status, body = api.delete(f"{AMPS}/{live}")
    assert status == 409
    assert body["faultstring"] == f"amphora {live} is immutable and cannot be updated."
    failed = add_amphora(server, None, status="ERROR")
    status, body = api.delete(f"{AMPS}/{failed}")
    assert status == 204 and body is None
    assert amp_status(server, failed) == "PENDING_DELETE"
    assert jobs(server, failed) == [(None, "delete_amphora")]
    assert api.get(f"{AMPS}/{failed}")[1]["amphora"]["status"] == "PENDING_DELETE"
    assert api.delete(f"{AMPS}/{failed}")[0] == 409
    attached = add_amphora(server, lb["id"], status="ERROR")
    assert api.delete(f"{AMPS}/{attached}")[0] == 204
    assert jobs(server, attached) == [(lb["id"], "delete_amphora")]


def test_failover_needs_an_active_load_balancer(api, server):
    lb = api.create_lb()
    amp_id = add_amphora(server, lb["id"])
    status, body = api.put(f"{AMPS}/{amp_id}/failover")
    assert status == 202 and body is None
    assert jobs(server, amp_id) == [(lb["id"], "failover_amphora")]
    status, body = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert body["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
    status, body = api.put(f"{AMPS}/{amp_id}/failover")
    assert status == 409
    assert body["faultstring"] == (f"Load Balancer {lb['id']} is immutable and cannot be "
                                   "updated.")
    api.settle(lb["id"])
    # Unlike the load balancer failover, an ERROR load balancer is refused too.
    set_lb_status(server, lb["id"], "ERROR")
    assert api.put(f"{AMPS}/{amp_id}/failover")[0] == 409
    assert jobs(server, amp_id) == []  # settle consumed the first job; none added
    # The accepted failover is one event (the refused ones none).
    with db(server) as session:
        told = [(e.kind, e.resource_id, e.load_balancer_id, e.message) for e in
                session.scalars(select(m.Event).where(m.Event.resource_id == amp_id))]
    assert len(told) == 1 and told[0][:3] == ("FAILOVER", amp_id, lb["id"])
    assert told[0][3].startswith(f"amphora {amp_id} of load balancer {lb['id']} is failed "
                                 "over: requested through the API (req-")


def test_configure_and_stats(api, server):
    lb = api.create_lb()
    amp_id = add_amphora(server, lb["id"])
    status, body = api.put(f"{AMPS}/{amp_id}/config")
    assert status == 202 and body is None
    assert jobs(server, amp_id) == [(lb["id"], "update_amphora_config")]
    status, body = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}")
    assert body["loadbalancer"]["provisioning_status"] == "ACTIVE"
    status, body = api.get(f"{AMPS}/{amp_id}/stats")
    assert status == 404
    listeners = sorted(str(uuid.uuid4()) for _ in range(2))
    with db(server) as session, session.begin():
        for i, listener_id in enumerate(listeners):
            session.add(m.ListenerStatistics(
                listener_id=listener_id, amphora_id=amp_id, bytes_in=100 * (i + 1),
                bytes_out=200, active_connections=i, total_connections=10,
                request_errors=1))
    status, body = api.get(f"{AMPS}/{amp_id}/stats")
    assert status == 200
    stats = body["amphora_stats"]
    assert [set(s) for s in stats] == [STATS_KEYS, STATS_KEYS]
    assert [s["listener_id"] for s in stats] == listeners
    assert stats[1] == {"id": amp_id, "loadbalancer_id": lb["id"],
                        "listener_id": listeners[1], "active_connections": 1,
                        "bytes_in": 200, "bytes_out": 200, "request_errors": 1,
                        "total_connections": 10}


@pytest.mark.parametrize("suffix", ["/failover", "/config"])
def test_lb_less_amphora_actions(api, server, suffix):
    amp_id = add_amphora(server, None, status="READY", role=None)
    assert api.put(f"{AMPS}/{amp_id}{suffix}")[0] == 202
    assert len(jobs(server, amp_id)) == 1


def test_sdk_amphorae(sdk, api, server):
    lb = api.create_lb()
    amp_id = add_amphora(server, lb["id"], role="MASTER")
    amps = list(sdk.amphorae(loadbalancer_id=lb["id"]))
    assert [a.id for a in amps] == [amp_id]
    amp = sdk.get_amphora(amp_id)
    assert amp.loadbalancer_id == lb["id"] and amp.role == "MASTER"
    assert amp.status == "ALLOCATED" and amp.cert_busy is False
    sdk.configure_amphora(amp_id)
    sdk.failover_amphora(amp_id)
    assert [action for _, action in jobs(server, amp_id)] == [
        "update_amphora_config", "failover_amphora"]


def test_cli_amphora_flow(cli, api, server):
    lb = api.create_lb()
    amp_id = add_amphora(server, lb["id"])
    listed = cli("loadbalancer", "amphora", "list", "--loadbalancer", lb["id"])
    assert [(a["id"], a["status"]) for a in listed] == [(amp_id, "ALLOCATED")]
    shown = cli("loadbalancer", "amphora", "show", amp_id)
    assert shown["loadbalancer_id"] == lb["id"] and shown["lb_network_ip"] == "192.0.2.1"
    cli.run("loadbalancer", "amphora", "configure", amp_id)
    cli.run("loadbalancer", "amphora", "failover", amp_id)
    assert [action for _, action in jobs(server, amp_id)] == [
        "update_amphora_config", "failover_amphora"]
    with db(server) as session, session.begin():
        session.add(m.ListenerStatistics(listener_id=str(uuid.uuid4()), amphora_id=amp_id,
                                         bytes_in=5, bytes_out=6, active_connections=1,
                                         total_connections=2, request_errors=0))
    stats = cli("loadbalancer", "amphora", "stats", "show", amp_id)
    assert stats["bytes_in"] == 5 and stats["total_connections"] == 2
    proc = cli.run("loadbalancer", "amphora", "delete", amp_id, check=False)
    assert proc.returncode != 0 and "immutable" in proc.stderr
