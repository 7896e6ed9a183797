"""Run an agent's reconcile one at a time: a trigger during a run asks for one more run right after it.

Watches deliver states, not changes (``state.watch``): whoever reacts to them compares what is with what should
be. Triggers that come while a run is under way fold into ONE more run, so nothing is missed and nothing runs
twice at once. A run that fails is logged; the next trigger (or the agent's periodic tick) tries again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..errors import EnsembleError

__all__ = ["Reconciler"]

log = Logger()


class Reconciler:
    def __init__(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        self.work = work
        self.what = what
        self.runs = 0  # completed runs, failed or not (tests and benchmarks wait on it)
        self._running: Deferred[None] | None = None
        self._again = False

    def trigger(self) -> Deferred[None]:
        """Run now, or once more right after the run under way; fires when the runs have settled."""
        if self._running is not None:
            self._again = True
            return self._running
        running = Deferred.fromCoroutine(self._until_settled())
        # A run with nothing to await has finished already (its `finally` ran before this assignment).
        self._running = None if running.called else running
        return running

    async def _until_settled(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    await self.work()
                except Exception as error:
                    if isinstance(error, EnsembleError):
                        log.error("{what} failed: {error}", what=self.what, error=str(error))
                    else:
                        log.failure("{what} failed", what=self.what)
                self.runs += 1
                if not self._again:
                    return
        finally:
            self._running = None
