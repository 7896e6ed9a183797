"""wait_for_units (deploy/add-unit --wait, remove-unit's wait for the stop hook) on a Clock: bounded by its timeout
in clock time even when ZooKeeper answers slowly, ended at once by a unit in error (naming its hook, its last
output lines and what to do). The units' nodes are a fake here: reading them on a real ZooKeeper is proven in
test_cli_state_input.py and tests/integration/."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater

from ensemble_orchestra.cli.progress import Progress
from ensemble_orchestra.cli.unit_wait import UnitError, UnitWaitTimeout, wait_for_units
from ensemble_orchestra.state.units import UnitRecord

HINT = "fix the charm, then `ensemble resolved --retry {unit}`"


class SlowUnits:
    """The units' nodes as *records* say, each read answering *delay* seconds later on *clock*."""

    def __init__(self, clock: Clock, records: dict[str, UnitRecord | None], delay: float = 0.0) -> None:
        self.clock = clock
        self.records = records
        self.delay = delay
        self.reads = 0

    async def read_many(self, names: Sequence[str]) -> dict[str, UnitRecord | None]:
        self.reads += 1
        await deferLater(self.clock, self.delay, lambda: None)
        return {name: self.records.get(name) for name in names}

    async def connected(self, names: Sequence[str]) -> dict[str, bool]:
        return {name: True for name in names}


def _wait(clock: Clock, units: SlowUnits, names: list[str], wanted: str, timeout: float) -> Deferred[None]:
    progress = Progress(io.StringIO(), tty=False, clock=clock.seconds)
    return Deferred.fromCoroutine(wait_for_units(clock, units, names, wanted, timeout, progress, HINT))  # type: ignore[arg-type]


def _failure_of(d: Deferred[None], clock: Clock) -> BaseException:
    clock.advance(0)  # reads answering at once still answer through the clock
    failures: list[BaseException] = []
    d.addErrback(lambda f: failures.append(f.value))
    assert failures, "still waiting"
    return failures[0]


def test_the_timeout_is_clock_time_even_when_each_read_is_slow() -> None:
    """Reads answering 4 s late: the wait ends within the timeout plus one read (it counted 1 s a round, so a
    10 s timeout lasted 50 s, and a read bounded only by the operation timeout stretched it without end)."""
    clock = Clock()
    units = SlowUnits(clock, {"web/0": UnitRecord("web/0", "installed")}, delay=4.0)
    d = _wait(clock, units, ["web/0"], "started", 10.0)
    clock.pump([0.1] * 99)
    assert not d.called  # 9.9 s: the timeout is not over
    clock.pump([0.1] * 46)  # 14.5 s: the read that began before 10 s has answered
    error = _failure_of(d, clock)
    assert isinstance(error, UnitWaitTimeout) and error.retryable
    assert str(error) == ("not started after 10 s (web/0 is installed): see `ensemble status` and `ensemble debug-log`")


def test_a_unit_in_error_ends_the_wait_at_once_with_its_hook_and_last_lines() -> None:
    clock = Clock()
    failed = UnitRecord("web/1", "install-error", hook="install", hook_output=("a", "b", "c", "E: no package"))
    units = SlowUnits(clock, {"web/0": UnitRecord("web/0", "started"), "web/1": failed})
    error = _failure_of(_wait(clock, units, ["web/0", "web/1"], "started", 600.0), clock)
    assert isinstance(error, UnitError) and units.reads == 1
    assert str(error) == (
        "unit web/1: install-error: hook install failed (last output: b | c | E: no package):"
        " fix the charm, then `ensemble resolved --retry web/1`"
    )


def test_waiting_for_stopped_ends_at_a_stop_error_and_not_at_the_state_it_waits_for() -> None:
    clock = Clock()
    units = SlowUnits(clock, {"web/0": UnitRecord("web/0", "stop-error", hook="stop")})
    assert isinstance(_failure_of(_wait(clock, units, ["web/0"], "stopped", 600.0), clock), UnitError)
    units.records["web/0"] = UnitRecord("web/0", "stopped")
    d = _wait(clock, units, ["web/0"], "stopped", 600.0)
    clock.advance(0)
    assert d.called and d.result is None


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_returns_once_every_unit_is_there(delay: float) -> None:
    clock = Clock()
    units = SlowUnits(clock, {"web/0": UnitRecord("web/0", "started"), "web/1": UnitRecord("web/1")}, delay=delay)
    d = _wait(clock, units, ["web/0", "web/1"], "started", 600.0)
    for _ in range(50):
        clock.advance(0.1)
    assert not d.called  # web/1 is pending
    units.records["web/1"] = UnitRecord("web/1", "started")
    for _ in range(20):
        clock.advance(0.1)
    assert d.called and d.result is None


def test_a_unit_removed_meanwhile_ends_a_wait_for_started_and_counts_as_stopped() -> None:
    """Unit nodes are created with their units (one transaction): a missing node is a unit someone removed."""
    clock = Clock()
    units = SlowUnits(clock, {"web/0": None})
    error = _failure_of(_wait(clock, units, ["web/0"], "started", 600.0), clock)
    assert isinstance(error, UnitError) and str(error) == "unit web/0 was removed while we waited for it to be started"
    d = _wait(clock, units, ["web/0"], "stopped", 600.0)
    clock.advance(0)
    assert d.called and d.result is None



def test_a_unit_in_another_error_state_goes_on_to_stopped_since_its_stop_hook_runs() -> None:
    """A dying unit runs its stop hook from install-error too (the lifecycle table): only stop-error ends
    a wait for stopped; install-error is a state on the way."""
    clock = Clock()
    units = SlowUnits(clock, {"web/0": UnitRecord("web/0", "install-error", hook="install")})
    d = _wait(clock, units, ["web/0"], "stopped", 600.0)
    for _ in range(20):
        clock.advance(0.1)
    assert not d.called
    units.records["web/0"] = UnitRecord("web/0", "stopped")
    for _ in range(20):
        clock.advance(0.1)
    assert d.called and d.result is None
