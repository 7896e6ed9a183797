"""One schedule type for every wait: retries, task polling, power confirmation and ``bootstrap --wait``.

A schedule is data: the delays between tries and the bound on the whole wait. Either the last delay
repeats until the bound (polling: "check every 2 s for at most 120 s"), or the tries end with the
delays (retries: "again after 0.5, 1, 2 and 4 s, then give up"). A repeating schedule without a bound
is refused, so no wait in the project can be endless. Time comes from an injected clock
(``IReactorTime``; ``task.Clock`` in tests), never from ``time.monotonic``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

__all__ = ["Schedule", "ScheduleRun"]


@dataclass(frozen=True)
class Schedule:
    """Delays (seconds) between tries, whether the last repeats, and the overall bound (seconds)."""

    delays: tuple[float, ...]
    timeout: float | None = None
    repeat: bool = True

    def __post_init__(self) -> None:
        if self.repeat and self.timeout is None:
            raise ValueError("a schedule whose last delay repeats needs a timeout")
        if self.repeat and not self.delays:
            raise ValueError("a repeating schedule needs at least one delay")
        bounds = (*self.delays, *(() if self.timeout is None else (self.timeout,)))
        if not all(0 <= b < math.inf for b in bounds):  # NaN fails this too: a NaN bound never ends a wait
            raise ValueError(f"delays and timeout must be finite and not negative: {self}")

    @classmethod
    def exponential(
        cls, *, initial: float = 0.5, factor: float = 2.0, maximum: float = 8.0, retries: int = 4
    ) -> Schedule:
        """Bounded exponential backoff for *retries* retries: initial, initial*factor, ... each capped at *maximum*."""
        return cls(tuple(min(initial * factor**n, maximum) for n in range(retries)), repeat=False)

    def start(self, clock: IReactorTime) -> ScheduleRun:
        """A run of this schedule starting now on *clock*."""
        return ScheduleRun(self, clock)


class ScheduleRun:
    """One wait in progress: hands out the delays and keeps the bound, on *clock*."""

    def __init__(self, schedule: Schedule, clock: IReactorTime) -> None:
        self.schedule = schedule
        self._clock = clock
        self.started = clock.seconds()
        self.waits = 0  # delays handed out so far

    def elapsed(self) -> float:
        return self._clock.seconds() - self.started

    def next_delay(self) -> float | None:
        """The wait before the next try (cut short at the bound); None once the schedule is over."""
        delays, timeout = self.schedule.delays, self.schedule.timeout
        if timeout is not None and self.elapsed() >= timeout:
            return None
        if self.waits < len(delays):
            delay = delays[self.waits]
        elif self.schedule.repeat:
            delay = delays[-1]
        else:
            return None
        self.waits += 1
        return delay if timeout is None else min(delay, timeout - self.elapsed())

    async def wait(self) -> bool:
        """Sleep the next delay on the clock and return True; False (at once) once the schedule is over."""
        delay = self.next_delay()
        if delay is None:
            return False
        await deferLater(self._clock, delay)
        return True
