"""The autoscaler's loop (health/scaler.py) with its sources given as plain functions."""

from __future__ import annotations

from amphorae.health import scaling
from amphorae.health.scaler import Scaler, Target

POLICY = scaling.Policy(hot=0.7, cold=0.3, out_after=2, in_after=4, cooldown=3)


class World:
    """Load balancers whose count the applied decisions change."""

    def __init__(self) -> None:
        self.lbs = {"lb-1": Target("lb-1", 2, 2, 4, 0.0, None)}
        self.refuse = False
        self.applied: list[tuple[str, int]] = []
        self.times: list[float] = []

    def targets(self) -> list[Target]:
        return list(self.lbs.values())

    def apply(self, target: Target, decision: scaling.Decision) -> bool:
        if self.refuse:
            return False
        self.applied.append((target.lb_id, decision.count))
        self.times.append(self.now)
        self.lbs[target.lb_id] = Target(target.lb_id, decision.count, target.minimum,
                                        target.maximum, self.now, target.busy)
        return True

    def load(self, busy: float | None) -> None:
        for lb_id, t in self.lbs.items():
            self.lbs[lb_id] = Target(lb_id, t.count, t.minimum, t.maximum, t.last_change,
                                     busy)

    def run(self, scaler: Scaler, start: float, end: float) -> None:
        for second in range(int(start), int(end) + 1):
            self.now = float(second)
            scaler.tick(self.now)


def test_load_up_grows_to_the_maximum_then_shrinks_back_after_it_stops() -> None:
    world = World()
    scaler = Scaler(POLICY, world.targets, world.apply)
    world.load(0.95)
    world.run(scaler, 10, 30)
    assert world.applied == [("lb-1", 3), ("lb-1", 4)]  # never a 5th
    # Hot over 10..12; then the new set must itself run hot for 2 s past the cool-down.
    assert world.times == [12.0, 15.0]
    world.load(0.05)
    world.run(scaler, 31, 60)
    assert world.applied[2:] == [("lb-1", 3), ("lb-1", 2)]  # never below 2
    assert world.times[2:] == [35.0, 40.0]  # cold over 31..35, then over 36..40


def test_no_figures_no_decision_and_old_samples_are_dropped() -> None:
    world = World()
    scaler = Scaler(POLICY, world.targets, world.apply)
    world.run(scaler, 0, 20)
    assert world.applied == [] and list(scaler.samples["lb-1"]) == []
    world.load(0.5)
    world.run(scaler, 21, 60)
    assert world.applied == []
    assert min(s.at for s in scaler.samples["lb-1"]) >= 60 - scaler.keep


def test_a_refused_change_is_not_reported_and_a_deleted_lb_is_forgotten() -> None:
    world = World()
    world.refuse = True
    scaler = Scaler(POLICY, world.targets, world.apply)
    world.load(0.95)
    world.now = 0.0
    assert all(scaler.tick(float(t)) == [] for t in range(10, 20))
    world.lbs.clear()
    scaler.tick(21.0)
    assert scaler.samples == {}
