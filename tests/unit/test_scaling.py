"""The ACTIVE_ACTIVE scaling decision (health/scaling.py)."""

from __future__ import annotations

import pytest

from amphorae.health.scaling import Decision, Policy, Sample, decide

POLICY = Policy(hot=0.7, cold=0.3, out_after=3, in_after=10, cooldown=5)


def series(busy: float, start: float, end: float, step: float = 1.0) -> list[Sample]:
    out, at = [], start
    while at <= end:
        out.append(Sample(at, busy))
        at += step
    return out


def test_a_set_hot_long_enough_grows_by_one_and_says_why() -> None:
    got = decide(POLICY, series(0.9, 100, 104), count=2, minimum=2, maximum=4,
                 last_change=0, now=104)
    assert got is not None and got.count == 3
    assert "90%" in got.reason and "70%" in got.reason and "4.0 s" in got.reason


def test_hot_for_less_than_out_after_waits() -> None:
    assert decide(POLICY, series(0.9, 102, 104), 2, 2, 4, 0, 104) is None


def test_one_cool_sample_restarts_the_hot_streak() -> None:
    samples = series(0.9, 100, 104)
    samples[3] = Sample(103, 0.5)
    assert decide(POLICY, samples, 2, 2, 4, 0, 104) is None


def test_never_beyond_the_maximum() -> None:
    assert decide(POLICY, series(1.0, 100, 120), 4, 2, 4, 0, 120) is None


def test_cooldown_after_a_change() -> None:
    samples = series(0.95, 100, 110)
    assert decide(POLICY, samples, 3, 2, 4, last_change=107, now=110) is None


def test_samples_before_the_last_change_do_not_count() -> None:
    # Hot for 10 s, but only 1 s of it (109, 110) since the change: later silence
    # proves nothing.
    samples = series(0.95, 100, 110)
    assert decide(POLICY, samples, 3, 2, 4, last_change=108, now=113.5) is None
    got = decide(POLICY, samples + series(0.95, 111, 113), 3, 2, 4, last_change=108,
                 now=113)
    assert got == Decision(4, got.reason) and "4.0 s" in got.reason  # 109..113


def test_a_set_cold_long_enough_shrinks_by_one() -> None:
    got = decide(POLICY, series(0.1, 100, 110), 3, 2, 4, 0, 110)
    assert got is not None and got.count == 2 and "10%" in got.reason and "15%" in got.reason


def test_never_below_the_minimum() -> None:
    assert decide(POLICY, series(0.0, 100, 200), 2, 2, 4, 0, 200) is None


def test_shrinks_only_when_the_rest_would_not_run_hot() -> None:
    # 0.3 on 2 amphorae is 0.6 on one: allowed; with hot at 0.55 it would flap, so not.
    samples = series(0.3, 100, 110)
    got = decide(POLICY, samples, 2, 1, 4, 0, 110)
    assert got is not None and got.count == 1 and "60% on one fewer" in got.reason
    tight = Policy(hot=0.55, cold=0.3, out_after=3, in_after=10, cooldown=5)
    assert decide(tight, samples, 2, 1, 4, 0, 110) is None


def test_out_of_bounds_counts_are_brought_back_at_once() -> None:
    assert decide(POLICY, [], 1, 2, 4, last_change=99, now=100) == Decision(
        2, "1 amphorae, below the minimum 2")
    assert decide(POLICY, [], 6, 2, 4, 99, 100) == Decision(
        4, "6 amphorae, above the maximum 4")


def test_no_samples_no_change() -> None:
    assert decide(POLICY, [], 3, 2, 4, 0, 100) is None


@pytest.mark.parametrize("kwargs", [dict(hot=0.3, cold=0.3), dict(hot=1.2), dict(cold=-0.1),
                                    dict(cooldown=-1)])
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)
