"""The reconciler's decisions, with recording drivers (tests/fake_drivers.py) and a real
database: which amphorae are booted, kept or replaced for each topology, what is plugged
and pushed, what a refused configuration leaves in ERROR, what a teardown removes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from amphorae.common import config
from amphorae.common import constants as c
from amphorae.db import engine
from amphorae.db import models as m
from amphorae.drivers.network import base as net
from amphorae.worker import drift
from amphorae.worker import reconciler as reconciler_mod
from amphorae.worker.queue import Claim
from amphorae.worker.reconciler import Reconciler
from tests import fake_drivers as fake

VIP = "198.18.200.5"


@pytest.fixture
def cloud() -> fake.FakeCloud:
    return fake.FakeCloud()


@pytest.fixture
def reconcile(cloud: fake.FakeCloud, database_url: str, tmp_path: Path
              ) -> Iterator[object]:
    reconciler = Reconciler(cloud.drivers(str(tmp_path)), database_url)

    def run(lb_id: str, *jobs: tuple[str, str | None]) -> None:
        actions = frozenset(jobs or [(c.JOB_RECONCILE, None)])
        reconciler.run(Claim(target=lb_id, load_balancer_id=lb_id, job_ids=(),
                             actions=actions, attempts=1))

    yield run


def new_lb(url: str, topology: str = c.TOPOLOGY_SINGLE, members: int = 1) -> dict[str, str]:
    """A load balancer in PENDING_CREATE with a listener, a pool and members; the ids."""
    ids = {"lb": m.new_id(), "listener": m.new_id(), "pool": m.new_id()}
    status = {"provisioning_status": c.PENDING_CREATE, "operating_status": c.OFFLINE,
              "project_id": "p"}
    with engine.transaction(url=url) as session:
        lb = m.LoadBalancer(id=ids["lb"], enabled=True, topology=topology, **status)
        lb.vip = m.Vip(ip_address=VIP, subnet_id=fake.VIP_SUBNET.id, port_id="vip-port")
        pool = m.Pool(id=ids["pool"], load_balancer=lb, protocol="HTTP",
                      lb_algorithm="ROUND_ROBIN", **status)
        m.Listener(id=ids["listener"], load_balancer=lb, protocol="HTTP", protocol_port=80,
                   default_pool=pool, **status)
        for n in range(members):
            ids[f"member{n}"] = m.new_id()
            m.Member(id=ids[f"member{n}"], pool=pool, ip_address=f"198.18.201.{20 + n}",
                     protocol_port=80, subnet_id=fake.MEMBER_SUBNET.id, **status)
        session.add(lb)
    return ids


def statuses(url: str, ids: dict[str, str]) -> dict[str, str]:
    with engine.transaction(write=False, url=url) as session:
        out = {}
        for key, obj_id in ids.items():
            model = {"lb": m.LoadBalancer, "listener": m.Listener, "pool": m.Pool}.get(
                key, m.Member)
            row = session.get(model, obj_id)
            out[key] = row.provisioning_status if row is not None else "GONE"
        return out


def amphorae(url: str, lb_id: str) -> list[m.Amphora]:
    with engine.transaction(write=False, url=url) as session:
        return list(session.scalars(select(m.Amphora).where(
            m.Amphora.load_balancer_id == lb_id, m.Amphora.status != c.DELETED)
            .order_by(m.Amphora.role)))


def test_single_boots_one_amphora_plugs_the_vip_and_pushes_the_tree(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url)
    reconcile(ids["lb"])
    (amp,) = amphorae(database_url, ids["lb"])
    assert (amp.role, amp.status, amp.vrrp_ip) == (c.ROLE_STANDALONE, c.ALLOCATED, None)
    assert cloud.compute.built == [amp.id]
    vip, member_subnets = cloud.network.plugged[amp.id]
    assert (vip.addresses, vip.vrrp, member_subnets) == ((VIP,), False,
                                                         (fake.MEMBER_SUBNET.id,))
    (applied,) = cloud.amphora.applied
    assert applied.object_ids == {ids["listener"], ids["pool"], ids["member0"]}
    assert not applied.vrrp
    assert set(statuses(database_url, ids).values()) == {c.ACTIVE}


def test_a_second_run_keeps_the_amphora(database_url: str, cloud: fake.FakeCloud,
                                        reconcile) -> None:
    ids = new_lb(database_url)
    reconcile(ids["lb"])
    reconcile(ids["lb"])
    assert len(cloud.compute.built) == 1 and not cloud.compute.deleted
    assert len(cloud.amphora.applied) == 2


def test_active_standby_is_a_pair_with_vrrp_addresses(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_STANDBY)
    reconcile(ids["lb"])
    backup, master = amphorae(database_url, ids["lb"])
    assert (master.role, backup.role) == (c.ROLE_MASTER, c.ROLE_BACKUP)
    for amp in (master, backup):
        assert amp.vrrp_ip == cloud.network.vrrp_ips[amp.id]
        assert (amp.ha_ip, amp.vrrp_port_id) == (VIP, fake.vrrp_port_id(amp.id))
        assert cloud.network.plugged[amp.id][0].vrrp
    applied = {a.role: a for a in cloud.amphora.applied}
    assert set(applied) == {c.ROLE_MASTER, c.ROLE_BACKUP}
    assert all(a.vrrp and a.vrrp_ip for a in applied.values())
    assert statuses(database_url, ids)["lb"] == c.ACTIVE


def test_a_pair_is_active_once_its_master_holds_the_vip(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    cloud.amphora.election = 5  # keepalived elects the MASTER at the sixth question
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_STANDBY)
    reconcile(ids["lb"])
    masters = [amp for amp, address in cloud.amphora.asked
               if address == VIP and amp == amphorae(database_url, ids["lb"])[1].id]
    assert len(masters) == 6
    assert statuses(database_url, ids)["lb"] == c.ACTIVE


def test_a_pair_that_elects_nobody_is_logged_and_still_goes_active(
        database_url: str, cloud: fake.FakeCloud, reconcile,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(reconciler_mod, "VIP_HOLDER_WAIT", 0.3)
    cloud.amphora.election = 10 ** 6
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_STANDBY)
    reconcile(ids["lb"])
    assert statuses(database_url, ids)["lb"] == c.ACTIVE
    assert "no amphora of the pair holds the VIP" in caplog.text


def test_a_single_amphora_is_not_asked_for_the_vip(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    reconcile(new_lb(database_url)["lb"])  # its VIP is plugged, not elected
    assert cloud.amphora.asked == []


def test_a_dead_amphora_of_a_pair_is_replaced_and_its_partner_kept(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_STANDBY)
    reconcile(ids["lb"])
    backup, master = amphorae(database_url, ids["lb"])
    cloud.compute.kill(backup.id)
    reconcile(ids["lb"])
    new_backup, same_master = amphorae(database_url, ids["lb"])
    assert same_master.id == master.id and new_backup.id != backup.id
    assert new_backup.role == c.ROLE_BACKUP
    assert cloud.compute.deleted == [backup.id] and cloud.network.unplugged == [backup.id]
    # The pair's peers are the two that serve, not the one being replaced.
    for applied in cloud.amphora.applied[-2:]:
        assert sorted(applied.peers) == sorted([master.vrrp_ip, new_backup.vrrp_ip])


def test_a_boot_left_by_a_crash_is_no_peer_and_goes(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_STANDBY)
    reconcile(ids["lb"])
    leftover = m.new_id()
    with engine.transaction(url=database_url) as session:  # row written, boot never done
        session.add(m.Amphora(id=leftover, load_balancer_id=ids["lb"], role=c.ROLE_BACKUP,
                              status=c.AMPHORA_BOOTING))
    reconcile(ids["lb"])
    live = amphorae(database_url, ids["lb"])
    assert leftover not in {a.id for a in live} and leftover in cloud.compute.deleted
    for applied in cloud.amphora.applied[-2:]:
        assert sorted(applied.peers) == sorted(a.vrrp_ip for a in live)


def test_a_failover_job_replaces_the_named_amphora(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url)
    reconcile(ids["lb"])
    (old,) = amphorae(database_url, ids["lb"])
    reconcile(ids["lb"], (c.JOB_FAILOVER_AMPHORA, old.id))
    (new,) = amphorae(database_url, ids["lb"])
    assert new.id != old.id and cloud.compute.deleted == [old.id]
    # SINGLE: the old one goes before the new one is plugged (same VIP, same MAC).
    assert cloud.network.unplugged == [old.id]


def test_a_refused_new_member_goes_to_error_and_the_rest_serves(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url)
    reconcile(ids["lb"])
    ids["member1"] = m.new_id()
    with engine.transaction(url=database_url) as session:  # as the API adds a member
        session.get_one(m.LoadBalancer, ids["lb"]).provisioning_status = c.PENDING_UPDATE
        session.add(m.Member(id=ids["member1"], pool_id=ids["pool"], project_id="p",
                             ip_address="198.18.201.30", protocol_port=80,
                             provisioning_status=c.PENDING_CREATE,
                             operating_status=c.OFFLINE))
    cloud.amphora.refused = {ids["member1"]}
    reconcile(ids["lb"])
    assert statuses(database_url, ids) == {
        "lb": c.ACTIVE, "listener": c.ACTIVE, "pool": c.ACTIVE, "member0": c.ACTIVE,
        "member1": c.ERROR}
    assert cloud.amphora.applied[-1].object_ids == {ids["listener"], ids["pool"],
                                                    ids["member0"]}


def test_an_amphora_that_does_not_boot_leaves_nothing_and_the_lb_in_error(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url)
    cloud.compute.fail_builds = True
    reconcile(ids["lb"])
    assert statuses(database_url, ids)["lb"] == c.ERROR
    assert amphorae(database_url, ids["lb"]) == []
    assert len(cloud.compute.deleted) == 1 and cloud.network.unplugged == cloud.compute.deleted


def test_a_booting_amphora_requeues_the_run_and_a_later_run_finishes_it(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    """A VM boots for a while: each run asks once, stops with NotYet (no thread held)
    and the run after it follows the same amphora instead of booting another."""
    ids = new_lb(database_url)
    cloud.compute.building_calls = 2
    for _ in range(2):
        with pytest.raises(reconciler_mod.NotYet) as waiting:
            reconcile(ids["lb"])
        assert waiting.value.delay == config.CONF.controller_worker.amp_active_wait_sec
        (amp,) = amphorae(database_url, ids["lb"])
        assert (amp.status, amp.lb_network_ip) == (c.AMPHORA_BOOTING, None)
        assert amp.compute_id  # written while it boots: a crash leaves it findable
        assert statuses(database_url, ids)["lb"] == c.PENDING_CREATE
        assert not cloud.amphora.applied
    reconcile(ids["lb"])
    (done,) = amphorae(database_url, ids["lb"])
    assert done.id == amp.id and (done.status, done.lb_network_ip) == (c.ALLOCATED,
                                                                       "198.18.99.1")
    assert cloud.compute.built == [amp.id] * 3 and not cloud.compute.deleted
    assert set(statuses(database_url, ids).values()) == {c.ACTIVE}


def test_a_boot_that_outlasts_the_active_wait_puts_the_lb_in_error(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url)
    cloud.compute.building_calls = 100
    with pytest.raises(reconciler_mod.NotYet):
        reconcile(ids["lb"])
    (amp,) = amphorae(database_url, ids["lb"])
    cw = config.CONF.controller_worker
    with engine.transaction(url=database_url) as session:  # as if booting since then
        session.get_one(m.Amphora, amp.id).created_at -= dt.timedelta(
            seconds=cw.amp_active_retries * cw.amp_active_wait_sec + 1)
    reconcile(ids["lb"])
    assert statuses(database_url, ids)["lb"] == c.ERROR
    assert amphorae(database_url, ids["lb"]) == [] and cloud.compute.deleted == [amp.id]


def test_a_pair_boots_in_its_server_group_and_teardown_removes_it(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_STANDBY)
    cloud.compute.anti_affinity = True
    reconcile(ids["lb"])
    pair = amphorae(database_url, ids["lb"])
    assert {cloud.compute.group_of[a.id] for a in pair} == {f"group-{ids['lb']}"}
    with engine.transaction(url=database_url) as session:
        session.get_one(m.LoadBalancer, ids["lb"]).provisioning_status = c.PENDING_DELETE
    reconcile(ids["lb"])
    assert cloud.compute.deleted_groups == [ids["lb"]] and not cloud.compute.groups


def test_a_single_amphora_gets_no_server_group(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url)
    cloud.compute.anti_affinity = True
    reconcile(ids["lb"])
    (amp,) = amphorae(database_url, ids["lb"])
    assert cloud.compute.group_of[amp.id] is None and not cloud.compute.groups


def test_teardown_removes_amphorae_ports_and_the_vip(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url, c.TOPOLOGY_ACTIVE_STANDBY)
    reconcile(ids["lb"])
    amp_ids = sorted(a.id for a in amphorae(database_url, ids["lb"]))
    with engine.transaction(url=database_url) as session:
        session.get_one(m.LoadBalancer, ids["lb"]).provisioning_status = c.PENDING_DELETE
    reconcile(ids["lb"])
    assert sorted(cloud.compute.deleted) == amp_ids == sorted(cloud.network.unplugged)
    assert cloud.network.deallocated == [ids["lb"]]
    assert amphorae(database_url, ids["lb"]) == []
    assert statuses(database_url, ids)["lb"] == c.DELETED


def test_an_unknown_member_subnet_puts_only_that_member_in_error(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url, members=2)
    with engine.transaction(url=database_url) as session:
        session.get_one(m.Member, ids["member1"]).subnet_id = str(uuid.uuid4())
    reconcile(ids["lb"])
    result = statuses(database_url, ids)
    assert (result["member0"], result["member1"], result["lb"]) == (c.ACTIVE, c.ERROR,
                                                                    c.ACTIVE)


def pending_jobs(url: str, lb_id: str) -> int:
    with engine.transaction(write=False, url=url) as session:
        return len(list(session.scalars(select(m.Job.id).where(
            m.Job.load_balancer_id == lb_id))))


def drifted(cloud: fake.FakeCloud, url: str, tmp_path: Path, *lbs: dict[str, str]
            ) -> list[str]:
    """The drift check's finds among ``lbs`` (the module's database holds others)."""
    found = drift.drifted_load_balancers(cloud.drivers(str(tmp_path)), url)
    return [lb["lb"] for lb in lbs if lb["lb"] in found]


def test_drift_check_reconciles_only_what_runs_something_else(
        database_url: str, cloud: fake.FakeCloud, reconcile, tmp_path: Path) -> None:
    ids = new_lb(database_url, members=2)
    calm = new_lb(database_url)
    reconcile(ids["lb"])
    reconcile(calm["lb"])
    assert drifted(cloud, database_url, tmp_path, ids, calm) == []
    (amp,) = amphorae(database_url, ids["lb"])
    cloud.amphora.running[amp.id] = frozenset({ids["listener"]})  # an old file, reloaded
    assert drifted(cloud, database_url, tmp_path, ids, calm) == [ids["lb"]]
    assert (pending_jobs(database_url, ids["lb"]), pending_jobs(database_url, calm["lb"])) \
        == (1, 0)
    # With its job pending it is not checked (nor enqueued) again.
    assert drifted(cloud, database_url, tmp_path, ids) == []
    with engine.transaction(url=database_url) as session:
        session.execute(delete(m.Job))
    reconcile(ids["lb"])
    assert drifted(cloud, database_url, tmp_path, ids) == []


def test_objects_in_error_are_not_drift(database_url: str, cloud: fake.FakeCloud,
                                        reconcile, tmp_path: Path) -> None:
    ids = new_lb(database_url)
    reconcile(ids["lb"])
    with engine.transaction(url=database_url) as session:  # a refused change, as left
        session.add(m.Member(id=m.new_id(), pool_id=ids["pool"], project_id="p",
                             ip_address="198.18.201.40", protocol_port=80,
                             provisioning_status=c.ERROR, operating_status=c.OFFLINE))
    assert drifted(cloud, database_url, tmp_path, ids) == []


# --- what each run tells (worker/changes.py, db/events.py) ------------------------------


def told(url: str, lb_id: str) -> list[tuple[str, str, str]]:
    with engine.transaction(write=False, url=url) as session:
        return [(e.kind, e.level, e.message) for e in session.scalars(
            select(m.Event).where(m.Event.load_balancer_id == lb_id).order_by(m.Event.id))]


def test_each_run_is_one_change_applied_event_with_what_changed(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url)
    with engine.transaction(url=database_url) as session:
        session.get_one(m.LoadBalancer, ids["lb"]).name = "web"
    reconcile(ids["lb"])
    (amp,) = amphorae(database_url, ids["lb"])
    lb = f"load balancer web ({ids['lb']})"
    (booted, applied) = told(database_url, ids["lb"])
    assert booted[:2] == ("AMPHORA_BOOTED", "INFO")
    assert booted[2].startswith(f"amphora {amp.id} (STANDALONE) of {lb} booted in ")
    assert applied[:2] == ("CHANGE_APPLIED", "INFO")
    assert applied[2].startswith(
        f"{lb}: created the load balancer, listener HTTP:80, pool {ids['pool']}, "
        f"member 198.18.201.20:80 of pool {ids['pool']}; applied in ")
    assert applied[2].endswith(" s, ACTIVE")
    # A failover: the new amphora booted, the old one removed, the run told.
    reconcile(ids["lb"], (c.JOB_FAILOVER_AMPHORA, amp.id))
    kinds = [(kind, level) for kind, level, _ in told(database_url, ids["lb"])[2:]]
    assert kinds == [("AMPHORA_BOOTED", "INFO"), ("AMPHORA_REMOVED", "INFO"),
                     ("CHANGE_APPLIED", "INFO")]
    assert f"replaced amphora {amp.id}; applied in" in told(database_url, ids["lb"])[-1][2]


def test_a_refused_object_and_a_failed_build_are_told(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url)
    reconcile(ids["lb"])
    with engine.transaction(url=database_url) as session:  # as the API adds a member
        session.get_one(m.LoadBalancer, ids["lb"]).provisioning_status = c.PENDING_UPDATE
        session.add(m.Member(id="bad-member", pool_id=ids["pool"], project_id="p",
                             ip_address="198.18.201.30", protocol_port=80,
                             provisioning_status=c.PENDING_CREATE,
                             operating_status=c.OFFLINE))
    cloud.amphora.refused = {"bad-member"}
    reconcile(ids["lb"])
    kind, level, message = told(database_url, ids["lb"])[-1]
    bad = f"member 198.18.201.30:80 of pool {ids['pool']}"
    assert (kind, level) == ("CHANGE_APPLIED", "WARNING")
    assert message.startswith(f"load balancer {ids['lb']}: created {bad}; applied in ")
    assert message.endswith(f", ACTIVE, but left out of the configuration and now ERROR: {bad}")
    other = new_lb(database_url)
    cloud.compute.fail_builds = True
    reconcile(other["lb"])
    kind, level, message = told(database_url, other["lb"])[-1]
    assert (kind, level) == ("ERROR", "ERROR")
    assert message.startswith(f"load balancer {other['lb']} cannot be built (")
    assert "now ERROR: amphora " in message and " did not boot" in message


def test_the_vip_is_secured_for_the_listeners_before_plugging_and_follows_them(
        database_url: str, cloud: fake.FakeCloud, reconcile) -> None:
    ids = new_lb(database_url, topology=c.TOPOLOGY_ACTIVE_STANDBY)
    reconcile(ids["lb"])
    first = cloud.network.secured[-1]
    assert first == net.VipSecurity(
        load_balancer_id=ids["lb"], vips=(VIP,), openings=(net.Opening("tcp", 80),),
        vrrp=True, peer_ports=(), security_groups=())
    assert len(cloud.network.secured) == 1 and cloud.network.plugged
    with engine.transaction(url=database_url) as session:
        listener = session.get_one(m.Listener, ids["listener"])
        listener.peer_port = 1025
        session.add(m.ListenerCidr(listener_id=listener.id, cidr="198.19.0.0/16"))
        session.add(m.Listener(id=m.new_id(), load_balancer_id=ids["lb"], protocol="UDP",
                               protocol_port=53, provisioning_status=c.PENDING_CREATE,
                               operating_status=c.OFFLINE, peer_port=1026))
        session.add(m.Listener(id=m.new_id(), load_balancer_id=ids["lb"], protocol="TCP",
                               protocol_port=22, provisioning_status=c.PENDING_DELETE,
                               operating_status=c.OFFLINE))
    reconcile(ids["lb"])
    assert cloud.network.secured[-1] == net.VipSecurity(
        load_balancer_id=ids["lb"], vips=(VIP,),
        openings=(net.Opening("udp", 53), net.Opening("tcp", 80, "198.19.0.0/16")),
        vrrp=True, peer_ports=(1025, 1026), security_groups=())
    with engine.transaction(url=database_url) as session:  # the user's groups instead
        session.add(m.VipSecurityGroup(load_balancer_id=ids["lb"], sg_id="sg-1"))
    reconcile(ids["lb"])
    assert cloud.network.secured[-1].openings == ()
    assert cloud.network.secured[-1].security_groups == ("sg-1",)
    assert all(plug.security_groups == ("sg-1",)
               for plug, _members in cloud.network.plugged.values())
