"""The agents' Reconciler: one run at a time, triggers during a run fold into one more, a failure is logged
and does not stop later runs — including runs that finish without ever waiting."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ensemble_orchestra.agents.reconciler import Reconciler
from ensemble_orchestra.errors import EnsembleError


def test_triggers_during_a_run_fold_into_one_more_run() -> None:
    gates: list[Deferred[None]] = []

    async def work() -> None:
        gate: Deferred[None] = Deferred()
        gates.append(gate)
        await gate

    reconciler = Reconciler(work, "test")
    first = reconciler.trigger()
    reconciler.trigger()
    reconciler.trigger()
    assert len(gates) == 1
    gates[0].callback(None)
    assert len(gates) == 2 and not first.called
    gates[1].callback(None)
    assert first.called and reconciler.runs == 2


def test_a_run_that_never_waits_does_not_block_the_next_trigger() -> None:
    """fromCoroutine of a coroutine with nothing to await fires at once: the reconciler must not keep it as
    'running' (it did, and every later trigger was swallowed)."""
    calls: list[int] = []

    async def work() -> None:
        calls.append(1)

    reconciler = Reconciler(work, "test")
    for _ in range(3):
        assert reconciler.trigger().called
    assert len(calls) == 3 and reconciler.runs == 3


def test_a_failed_run_is_logged_and_the_next_trigger_runs_again() -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise EnsembleError("ZooKeeper went away")

    reconciler = Reconciler(work, "test")
    assert reconciler.trigger().called
    assert reconciler.trigger().called
    assert len(calls) == 2 and reconciler.runs == 2
