"""worker/active_active.py: which amphorae of an ACTIVE_ACTIVE set stay, boot, drain or
go, and when a draining one may go."""

from __future__ import annotations

import datetime as dt

from amphorae.common import constants as c
from amphorae.worker import active_active as aa
from amphorae.worker.active_active import Plan, Seat

T0 = dt.datetime(2026, 1, 1)


def seat(name: str, minute: int, status: str = c.AMPHORA_ALLOCATED,
         alive: bool = True) -> Seat:
    return Seat(name, status, T0 + dt.timedelta(minutes=minute), alive)


SET = [seat("a", 1), seat("b", 2), seat("c", 3)]


def test_a_set_at_its_count_is_kept() -> None:
    assert aa.plan(SET, 3) == Plan(keep=("a", "b", "c"))


def test_short_of_the_count_new_ones_boot() -> None:
    assert aa.plan(SET, 5) == Plan(keep=("a", "b", "c"), boot=2)
    assert aa.plan([], 2) == Plan(boot=2)


def test_beyond_the_count_the_newest_drain_first() -> None:
    assert aa.plan(SET, 1) == Plan(keep=("a",), drain=("c", "b"))


def test_draining_ones_go_on_draining_and_serve_again_before_anything_boots() -> None:
    draining = [*SET[:2], seat("c", 3, aa.DRAINING), seat("d", 4, aa.DRAINING)]
    assert aa.plan(draining, 2) == Plan(keep=("a", "b"), draining=("c", "d"))
    assert aa.plan(draining, 3) == Plan(keep=("a", "b"), revive=("d",), draining=("c",))
    assert aa.plan(draining, 5) == Plan(keep=("a", "b"), revive=("d", "c"), boot=1)


def test_dead_and_replaced_ones_go_and_are_replaced() -> None:
    rows = [seat("a", 1), seat("b", 2, alive=False), seat("c", 3),
            seat("d", 4, aa.DRAINING, alive=False)]
    assert aa.plan(rows, 3, replace={"c"}) == Plan(keep=("a",), boot=2,
                                                   doomed=("b", "c", "d"))


def test_a_boot_left_from_before_is_followed_when_needed_and_goes_otherwise() -> None:
    rows = [*SET[:2], seat("x", 5, c.AMPHORA_BOOTING, alive=False)]
    assert aa.plan(rows, 3) == Plan(keep=("a", "b"), resume=("x",))
    assert aa.plan(rows, 4) == Plan(keep=("a", "b"), resume=("x",), boot=1)
    assert aa.plan(rows, 2) == Plan(keep=("a", "b"), doomed=("x",))


def test_a_row_in_any_other_state_goes() -> None:
    assert aa.plan([*SET, seat("e", 9, c.ERROR)], 3) == Plan(keep=("a", "b", "c"),
                                                            doomed=("e",))


def test_drained_once_idle_with_no_connection_or_at_the_timeout() -> None:
    start = T0
    soon = T0 + dt.timedelta(seconds=5)
    assert aa.drained(2.5, 0, start, soon, 60)
    assert not aa.drained(1.0, 0, start, soon, 60)  # the distributor still sends to it
    assert not aa.drained(9.0, 3, start, soon, 60)  # flows still open
    assert not aa.drained(9.0, None, start, soon, 60)  # no heartbeat since the start
    assert aa.drained(0.0, 3, start, T0 + dt.timedelta(seconds=60), 60)
