"""The autoscaler's database ends (health/autoscale.py) on a real SQLite database: which
load balancers it sees, with what bounds, load and last change; a decision written back
only while the count is still the one read."""

from __future__ import annotations

import datetime as dt
import json
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from amphorae.db import engine, migrate
from amphorae.db import models as m
from amphorae.health import autoscale, scaling
from amphorae.health.scaler import Target

NOW = dt.datetime(2030, 1, 1, 12, 0, 0)
CLOCK = 1000.0


@pytest.fixture
def url(tmp_path: Any) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/autoscale.sqlite"
    migrate.upgrade(url)
    yield url
    engine.get_engine(url).dispose()


def balancer(url: str, loads: list[float | None], desired: int = 2, status: str = "ACTIVE",
             topology: str = "ACTIVE_ACTIVE", bounds: tuple[int, int] = (2, 4),
             changed: dt.datetime = NOW - dt.timedelta(seconds=30)) -> str:
    lb_id = str(uuid.uuid4())
    with engine.transaction(url=url) as session:
        profile = m.FlavorProfile(id=str(uuid.uuid4()), name="aa", provider_name="amphora",
                                  flavor_data=json.dumps({
                                      "loadbalancer_topology": topology,
                                      "amphora_count_min": bounds[0],
                                      "amphora_count_max": bounds[1]}))
        flavor = m.Flavor(id=str(uuid.uuid4()), name=f"aa-{lb_id}", enabled=True,
                          flavor_profile_id=profile.id)
        session.add_all([profile, flavor])
        session.flush()
        session.add(m.LoadBalancer(id=lb_id, project_id="p", provisioning_status=status,
                                   operating_status="ONLINE", enabled=True,
                                   topology=topology, flavor_id=flavor.id))
        session.flush()
        session.add(m.LoadBalancerScale(load_balancer_id=lb_id, desired=desired,
                                        reason="created", updated_at=changed))
        for load in loads:
            amp_id = str(uuid.uuid4())
            session.add(m.Amphora(id=amp_id, load_balancer_id=lb_id, status="ALLOCATED",
                                  role="ACTIVE"))
            session.add(m.AmphoraHealth(amphora_id=amp_id, last_update=NOW, load=load))
    return lb_id


def targets(url: str) -> dict[str, Target]:
    with engine.transaction(write=False, url=url) as session:
        return {t.lb_id: t for t in autoscale.read_targets(session, NOW, CLOCK)}


def test_a_target_carries_its_count_bounds_mean_load_and_last_change(url: str) -> None:
    lb = balancer(url, [0.9, 0.5, None], desired=3, bounds=(2, 5))
    assert targets(url)[lb] == Target(lb_id=lb, count=3, minimum=2, maximum=5,
                                      last_change=CLOCK - 30, busy=pytest.approx(0.7))


def test_no_figures_yet_is_no_load_rather_than_zero(url: str) -> None:
    lb = balancer(url, [None, None])
    assert targets(url)[lb].busy is None


def test_only_settled_active_active_load_balancers_are_targets(url: str) -> None:
    wanted = balancer(url, [0.5, 0.5])
    balancer(url, [0.9], status="PENDING_UPDATE")
    balancer(url, [0.9], topology="SINGLE")
    assert set(targets(url)) == {wanted}


def test_the_config_makes_the_policy() -> None:
    from amphorae.common import config
    conf = config.CONF
    assert autoscale.policy(conf) == scaling.Policy(
        hot=conf.autoscaling.hot_load, cold=conf.autoscaling.cold_load,
        out_after=conf.autoscaling.scale_out_after, in_after=conf.autoscaling.scale_in_after,
        cooldown=conf.autoscaling.cooldown)


def scale_row(url: str, lb_id: str) -> tuple[int, str | None, str]:
    with engine.transaction(write=False, url=url) as session:
        row = session.get_one(m.LoadBalancerScale, lb_id)
        return row.desired, row.reason, session.get_one(m.LoadBalancer, lb_id
                                                        ).provisioning_status


def test_a_decision_is_written_with_its_reason_and_a_reconcile(url: str) -> None:
    lb = balancer(url, [0.9, 0.9])
    assert autoscale.write_decision(url, targets(url)[lb], scaling.Decision(3, "hot"))
    assert scale_row(url, lb) == (3, "autoscaler: hot", "PENDING_UPDATE")
    with engine.transaction(write=False, url=url) as session:
        assert session.scalars(select(m.Job.load_balancer_id)).all() == [lb]
        assert session.scalars(select(m.Event.kind)).all() == ["SCALED"]


def test_a_decision_on_a_count_that_moved_meanwhile_writes_nothing(url: str) -> None:
    lb = balancer(url, [0.9, 0.9])
    stale = targets(url)[lb]
    with engine.transaction(url=url) as session:
        session.get_one(m.LoadBalancerScale, lb).desired = 4  # the admin API, say
    assert not autoscale.write_decision(url, stale, scaling.Decision(3, "hot"))
    assert scale_row(url, lb) == (4, "created", "ACTIVE")


def test_cold_load_must_be_below_hot_load() -> None:
    from amphorae.common import config
    conf = types.SimpleNamespace(autoscaling=types.SimpleNamespace(
        hot_load=0.5, cold_load=0.5, scale_out_after=3, scale_in_after=30, cooldown=10))
    with pytest.raises(config.ConfigError, match="cold_load"):
        autoscale.policy(conf)
