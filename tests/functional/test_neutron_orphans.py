"""The orphan sweeps of housekeeping in cloud mode, against the real Neutron and Nova of
tests/cloud.py: what the Neutron driver made for a load balancer or amphora that has no
live row (a VIP port, the VIP security group, an amphora's VRRP and member ports, also
one attached to a Nova server) is removed once it is five minutes old, by Neutron's own
``created_at``; younger objects, live load balancers' and amphorae's objects, another
deployment's objects and the user's own ports stay. A Nova server of this deployment
with no amphora row is removed; another deployment's is not.

"Old" is injected: the sweep is given a clock five minutes past the orphans' creation.
Networks are the user's (tests/functional/test_neutron_driver.py's ``Nets``: subnets
198.19.160.0/24, .161.0/24, .162.0/24; Neutron objects only, no packet is sent); the
database is a SQLite file of the test. Everything is removed at the end, also on failure.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from amphorae.common import constants as c
from amphorae.db import engine, migrate
from amphorae.db import models as m
from amphorae.drivers.compute.nova import NovaComputeDriver
from amphorae.drivers.network.base import Amphora, VipPlug, VipSecurity
from amphorae.drivers.network.neutron import NeutronNetworkDriver
from amphorae.housekeeping import sweeps
from amphorae.housekeeping.service import Housekeeper
from tests import nova_env
from tests.functional.test_neutron_driver import (  # noqa: F401 (fixtures)
    Nets,
    admin,
    boot,
    driver,
    http_listener,
    nets,
    user,
)
from tests.functional.test_nova_driver import conf, env, make_driver  # noqa: F401
from tests.nova_env import Env


def _deployment() -> str:
    return f"amph-test-{secrets.token_hex(4)}"


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    database = f"sqlite:///{tmp_path}/amphorae.sqlite"
    migrate.upgrade(database)
    yield database
    engine.get_engine(database).dispose()


def _drivers(driver: NeutronNetworkDriver, count: int) -> list[NeutronNetworkDriver]:  # noqa: F811
    """Drivers of deployments of their own on the service user's connection."""
    return [NeutronNetworkDriver(driver.conn, 2, 1, 30, deployment=_deployment())
            for _ in range(count)]


def _make(drv: NeutronNetworkDriver, nets: Nets, compute_id: str = "",  # noqa: F811
          amphora: bool = True) -> tuple[str, str]:
    """What the worker makes for a SINGLE load balancer: VIP port, group, and (with
    ``amphora``) the amphora's VRRP and member ports. Returns (lb id, amphora id)."""
    lb, amp = str(uuid.uuid4()), str(uuid.uuid4())
    vip = drv.allocate_vip(lb, nets.vip, project_id=nets.project_id)
    drv.secure_vip(VipSecurity(lb, (vip.ip_address,), http_listener(), vrrp=False))
    if amphora:
        drv.plug(Amphora(amp, compute_id), VipPlug(lb, nets.vip.id, (vip.ip_address,),
                                                   vrrp=False), [nets.member])
    return lb, amp


def _objects(admin: Any, names: set[str]) -> set[str]:  # noqa: F811
    """Names of the ports and security groups among ``names`` that exist."""
    ports = {p.name for p in admin.network.ports() if p.name in names}
    return ports | {g.name for g in admin.network.security_groups() if g.name in names}


def _names(lb: str, amp: str | None = None) -> set[str]:
    names = {f"octavia-lb-{lb}", f"lb-{lb}"}
    return names | ({f"octavia-lb-vrrp-{amp}", f"octavia-lb-member-{amp}"} if amp else set())


def _live(url: str, lb: str, amp: str) -> None:
    with engine.transaction(url=url) as session:
        session.add(m.LoadBalancer(id=lb, project_id="p", provisioning_status=c.ACTIVE,
                                   operating_status=c.ONLINE))
        session.add(m.Amphora(id=amp, load_balancer_id=lb, role="STANDALONE",
                              status="ALLOCATED"))


def test_old_orphans_go_young_live_and_others_objects_stay(
        driver: NeutronNetworkDriver, nets: Nets, admin: Any, url: str,  # noqa: F811
        boot: Callable[[], Any]) -> None:  # noqa: F811
    mine, theirs = _drivers(driver, 2)
    made: list[tuple[NeutronNetworkDriver, str, str]] = []
    try:
        server = boot()  # the orphaned amphora's instance, its ports attached to it
        orphan = _make(mine, nets, compute_id=server.id)
        bare = _make(mine, nets, amphora=False)  # the API died before committing
        live = _make(mine, nets)
        other = _make(theirs, nets)
        made += [(mine, *orphan), (mine, *bare), (mine, *live), (theirs, *other)]
        _live(url, *live)
        # Named as the driver names a VIP port, but not marked: the user's, never swept.
        user_port = admin.network.create_port(
            network_id=nets.vip_net.id, name=f"octavia-lb-{uuid.uuid4()}")
        owned = mine.owned_resources()
        assert {r.name for r in owned} == _names(*orphan) | _names(bare[0]) | _names(*live)
        assert all(r.load_balancer_id or r.amphora_id for r in owned)
        oldest_young = max(r.created_at for r in owned)
        time.sleep(1.1)  # Neutron's created_at counts seconds: the next one is younger
        young = _make(mine, nets)
        made.append((mine, *young))

        keeper = Housekeeper(network=mine, url=url)
        assert keeper.remove_network_orphans() == []  # all younger than five minutes
        later = oldest_young + sweeps.ORPHAN_MIN_AGE
        removed = keeper.remove_network_orphans(now=later)
        gone = _names(*orphan) | _names(bare[0])
        assert len(removed) == len(gone)
        everything = gone | _names(*live) | _names(*young) | _names(*other)
        assert _objects(admin, everything) == everything - gone
        assert admin.network.get_port(user_port.id).name == user_port.name
        # The attached ones were detached through Nova first.
        assert not list(admin.network.ports(device_id=server.id))
        # An hour later the young one is old too; the live and the others' still stay.
        keeper.remove_network_orphans(now=later + dt.timedelta(hours=1))
        assert _objects(admin, everything) == _names(*live) | _names(*other)
    finally:
        for drv, lb, amp in made:
            drv.unplug(amp, None)
            drv.deallocate_vip(lb)
        for port in admin.network.ports(network_id=nets.vip_net.id):
            if not port.description:  # the user's (ours were removed above)
                admin.network.delete_port(port, ignore_missing=True)


def test_a_server_of_this_deployment_without_a_row_goes_anothers_stays(
        env: Env, make_driver: Callable[..., NovaComputeDriver],  # noqa: F811
        driver: NeutronNetworkDriver, url: str) -> None:  # noqa: F811
    ours, theirs = make_driver(), make_driver(_deployment())
    kept, orphan, other = (str(uuid.uuid4()) for _ in range(3))
    lb = str(uuid.uuid4())
    with engine.transaction(url=url) as session:
        session.add(m.LoadBalancer(id=lb, project_id="p", provisioning_status=c.ACTIVE,
                                   operating_status=c.ONLINE))
        session.add(m.Amphora(id=kept, load_balancer_id=lb, role="STANDALONE",
                              status="BOOTING"))
    network = NeutronNetworkDriver(driver.conn, 2, 1, 30, deployment=ours.deployment)
    for drv, amp in ((ours, kept), (ours, orphan), (theirs, other)):
        drv.build(amp)
    try:
        keeper = Housekeeper(ours, network, url=url)
        assert keeper.remove_orphans() == [orphan]
        nova_env.wait("the orphan's server gone",
                      lambda: {i.amphora_id for i in ours.list_instances()} == {kept}, 60)
        assert {i.amphora_id for i in theirs.list_instances()} == {other}
    finally:
        ours.delete(kept)
        theirs.delete(other)
