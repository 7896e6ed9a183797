"""Run one command's coroutine on the Twisted reactor, with Ctrl-C turned into cancellation.

The reactor's own SIGINT handler would stop the reactor under a half-done launch. Instead the first
Ctrl-C cancels the command's Deferred, so the provider's rollback runs (a claimed system is released)
and the command ends with KeyboardInterrupt; a second Ctrl-C abandons the rollback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

__all__ = ["run_on_reactor"]


def run_on_reactor(body: Callable[[Any], Coroutine[Any, Any, Any]], reactor: Any = None, *, prog: str) -> Any:
    """The result of ``body(reactor)``; its exception is raised; Ctrl-C → KeyboardInterrupt after rollback.

    *prog* is the running command's name, which the Ctrl-C messages start with.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    outcome: dict[str, Any] = {}

    def start() -> None:
        work = Deferred.fromCoroutine(body(reactor))

        def interrupted(signum: int, frame: Any) -> None:
            if outcome.get("interrupted"):
                print(f"{prog}: interrupted again: rollback abandoned", file=sys.stderr, flush=True)
                outcome["abandoned"] = True
                reactor.callFromThread(reactor.stop)
                return
            outcome["interrupted"] = True
            print(f"\n{prog}: interrupted: rolling back (Ctrl-C again to abandon)", file=sys.stderr, flush=True)
            reactor.callFromThread(work.cancel)

        signal.signal(signal.SIGINT, interrupted)

        def finished(result: Any) -> None:
            outcome["result"] = result
            if reactor.running:
                reactor.stop()

        work.addBoth(finished)

    reactor.callWhenRunning(start)
    reactor.run()
    if outcome.get("abandoned"):
        raise KeyboardInterrupt
    result = outcome.get("result")
    if isinstance(result, Failure):
        if outcome.get("interrupted") and result.check(CancelledError):
            raise KeyboardInterrupt
        result.raiseException()
    return result
