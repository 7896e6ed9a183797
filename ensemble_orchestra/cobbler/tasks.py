"""Waiting for Cobbler background tasks, and reading what really happened from their event logs.

Cobbler 3.3's ``background_power_system`` catches each system's failure, logs
``failed to execute power task on NAME, exception: ...`` and still ends the task as "complete"
(measured on the lab); 2.x ends it "failed" instead. So a task's state alone never proves success:
its event log is always read, and parsed, before a power task is reported done. That log copies the
fence agent's stdin (``password=...``), so it is redacted before anyone sees it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ..schedule import Schedule
from .errors import CobblerTaskTimeout

__all__ = ["DEFAULT_TASK_POLLING", "TERMINAL_STATES", "failed_systems", "wait_for_task"]

TERMINAL_STATES = frozenset({"complete", "failed"})
_FAILED_SYSTEM = re.compile(r"failed to execute power task on (?P<system>\S+?), exception: (?P<error>.*)$", re.M)


# Delays between status polls (the last one repeats) and the bound on the whole wait.
DEFAULT_TASK_POLLING = Schedule((0.25, 0.25, 0.5, 1.0, 2.0), timeout=300.0)


async def wait_for_task(
    get_status: Callable[[str], Awaitable[Any]],
    task_id: str,
    clock: IReactorTime,
    polling: Schedule,
) -> str:
    """Poll *task_id* until it is complete or failed; returns that state or raises CobblerTaskTimeout.

    The first poll waits one delay: a task that was just started is never already finished.
    """
    run = polling.start(clock)
    while await run.wait():
        status = await get_status(task_id)
        state = str(status[2]) if isinstance(status, list | tuple) and len(status) > 2 else "?"
        if state in TERMINAL_STATES:
            return state
    raise CobblerTaskTimeout(f"Cobbler task {task_id!r} not finished after {run.elapsed():g}s", task_id=task_id)


def failed_systems(event_log: str) -> dict[str, str]:
    """System name -> Cobbler's error, for each system a power task's log says failed."""
    return {m.group("system"): m.group("error").strip() for m in _FAILED_SYSTEM.finditer(event_log)}
