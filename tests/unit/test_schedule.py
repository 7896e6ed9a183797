"""The one schedule type: delays as data, the last repeating up to a bound, or retries that run out."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from ensemble_orchestra.schedule import Schedule


def _delays(schedule: Schedule, clock: Clock, limit: int = 50) -> list[float]:
    """The delays a run hands out, advancing the clock by each (as a waiter would)."""
    run = schedule.start(clock)
    out: list[float] = []
    while (delay := run.next_delay()) is not None and len(out) < limit:
        out.append(delay)
        clock.advance(delay)
    return out


def test_the_last_delay_repeats_until_the_bound_and_the_last_wait_is_cut_short() -> None:
    assert _delays(Schedule((1.0, 2.0), timeout=8.0), Clock()) == [1.0, 2.0, 2.0, 2.0, 1.0]


def test_retries_end_with_their_delays() -> None:
    assert _delays(Schedule((0.5, 1.0), repeat=False), Clock()) == [0.5, 1.0]
    assert _delays(Schedule((), repeat=False), Clock()) == []


def test_exponential_backoff_is_capped() -> None:
    assert Schedule.exponential(initial=0.5, factor=2, maximum=4, retries=6).delays == (0.5, 1, 2, 4, 4, 4)
    assert Schedule.exponential(retries=0).delays == ()


def test_the_bound_counts_time_spent_outside_the_waits() -> None:
    """Work between the waits (a slow status call) uses up the bound too."""
    clock = Clock()
    run = Schedule((1.0,), timeout=5.0).start(clock)
    clock.advance(4.5)
    assert run.next_delay() == 0.5
    clock.advance(0.5)
    assert run.next_delay() is None


def test_wait_sleeps_on_the_injected_clock() -> None:
    clock = Clock()
    run = Schedule((3.0,), timeout=3.0).start(clock)
    done: list[bool] = []
    from twisted.internet.defer import Deferred

    Deferred.fromCoroutine(run.wait()).addCallback(done.append)
    clock.advance(2.9)
    assert done == []
    clock.advance(0.1)
    assert done == [True]
    Deferred.fromCoroutine(run.wait()).addCallback(done.append)
    assert done == [True, False]  # over: answers at once


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delays": (1.0,)},  # repeats, no bound: could wait forever
        {"delays": (), "timeout": 5.0},  # repeats nothing
        {"delays": (-1.0,), "timeout": 5.0},
        {"delays": (1.0,), "timeout": float("nan")},  # comparisons with NaN are all False: it would never end
        {"delays": (1.0,), "timeout": float("inf")},
        {"delays": (float("nan"),), "repeat": False},
    ],
)
def test_unbounded_or_malformed_schedules_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Schedule(**kwargs)
