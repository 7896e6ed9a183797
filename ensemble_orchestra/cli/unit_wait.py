"""Waiting, bounded, for units to reach a state: ``deploy --wait``, ``add-unit --wait``, ``remove-unit``.

Polls the units' nodes (one concurrent read per unit) every second and shows where each one is; a unit that
lands in an error state ends the wait at once with its failing hook and last output lines, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.task import deferLater

from ..errors import EnsembleError
from ..state.status import unit_agent_state
from ..state.units import ERROR_STATES, UnitRecord, UnitsState
from .progress import Progress

__all__ = ["UnitError", "UnitWaitTimeout", "describe_failure", "wait_for_units"]

POLL_INTERVAL = 1.0
# The error states that end a wait: a unit stopping runs its stop hook from any other error state.
_ENDS = {"started": ERROR_STATES, "stopped": ("stop-error",)}


class UnitError(EnsembleError):
    """A unit reached an error state while we waited for it."""


class UnitWaitTimeout(EnsembleError):
    """The units did not reach the state in time (they go on; ``ensemble status`` follows them)."""

    retryable = True


def describe_failure(record: UnitRecord) -> str:
    last = " | ".join(record.hook_output[-3:]) or "no output"
    return f"unit {record.name}: {record.agent_state}: hook {record.hook} failed (last output: {last})"


async def wait_for_units(
    reactor: Any,
    units: UnitsState,
    names: Sequence[str],
    wanted: str,
    timeout: float,
    progress: Progress,
    fix: str,
) -> None:
    """Until every unit of *names* reports *wanted*; UnitError naming the first in error (then *fix*),
    UnitWaitTimeout after *timeout* seconds on the reactor's clock (the reads' own time counts too)."""
    deadline = reactor.seconds() + timeout
    while True:
        records = await units.read_many(names)
        connected = await units.connected(names)
        states = {n: unit_agent_state(records[n], connected[n]) for n in names}
        for name in names:
            record = records[name]
            if record is None:  # removed by someone else meanwhile
                if wanted == "stopped":
                    states[name] = wanted
                    continue
                raise UnitError(f"unit {name} was removed while we waited for it to be {wanted}")
            if record is not None and record.agent_state in _ENDS[wanted]:
                raise UnitError(f"{describe_failure(record)}: {fix.format(unit=name)}")
        if all(state == wanted for state in states.values()):
            return
        progress(f"waiting for {wanted}", ", ".join(f"{n} {s}" for n, s in states.items()))
        if reactor.seconds() >= deadline:
            late = ", ".join(f"{n} is {s}" for n, s in states.items() if s != wanted)
            raise UnitWaitTimeout(
                f"not {wanted} after {timeout:g} s ({late}): see `ensemble status` and `ensemble debug-log`"
            )
        await deferLater(reactor, min(POLL_INTERVAL, max(0.0, deadline - reactor.seconds())), lambda: None)
