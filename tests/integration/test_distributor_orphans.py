"""Housekeeping removes a distributor that outlived its load balancer (root): the local
network driver lists this deployment's distributor namespaces as resources it owns, and
the orphan sweep removes those older than sweeps.ORPHAN_MIN_AGE whose load balancer has
no live row (a worker stopped between deleting the rows and the namespace). Another
deployment's distributors are not listed at all."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

from amphorae.common import constants as c
from amphorae.common.timeutil import utcnow
from amphorae.db import engine, migrate
from amphorae.db import models as m
from amphorae.drivers.network import local, plumbing, ports
from amphorae.housekeeping import sweeps
from amphorae.housekeeping.service import Housekeeper
from tests import leftovers, netns


def test_a_distributor_without_its_load_balancer_is_swept(tmp_path: Path) -> None:
    netns.require_root()
    ours, theirs = (secrets.token_hex(6) for _ in range(2))
    gone, live = (str(m.new_id()) for _ in range(2))
    p = plumbing.Plumbing()
    names = [local.distributor_namespace(d, lb)
             for d, lb in ((ours, gone), (ours, live), (theirs, gone))]
    url = f"sqlite:///{tmp_path}/amphorae.sqlite"
    migrate.upgrade(url)
    leftovers.register(local.DISTRIBUTOR_NS_PREFIX + ours)
    leftovers.register(local.DISTRIBUTOR_NS_PREFIX + theirs)
    try:
        with engine.transaction(url=url) as session:
            session.add(m.LoadBalancer(id=live, project_id="p", topology="ACTIVE_ACTIVE",
                                       provisioning_status=c.ACTIVE,
                                       operating_status=c.ONLINE))
        for name in names:
            p.ensure_netns(name)
        network = local.LocalNetworkDriver(url, ports.PortPlugger(p, ours))
        keeper = Housekeeper(None, network, url=url)
        assert sorted(r.id for r in network.owned_resources()) == sorted(names[:2])

        assert keeper.remove_network_orphans() == []  # too young to judge
        later = utcnow() + sweeps.ORPHAN_MIN_AGE + dt.timedelta(seconds=1)
        assert keeper.remove_network_orphans(now=later) == [names[0]]
        assert [n for n in names if p.netns_exists(n)] == names[1:]
    finally:
        for name in names:
            p.delete_netns(name)
        engine.get_engine(url).dispose()
