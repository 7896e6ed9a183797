"""Sharing one in-flight operation (a login, a version lookup) among every caller that needs it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["OnceInFlight"]

T = TypeVar("T")


class OnceInFlight:
    """Runs an operation at most once at a time; callers arriving meanwhile share its outcome."""

    def __init__(self) -> None:
        self._waiters: list[Deferred[Any]] | None = None

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        if self._waiters is not None:
            waiter: Deferred[T] = Deferred()
            self._waiters.append(waiter)
            return await waiter
        waiters: list[Deferred[Any]] = []
        self._waiters = waiters
        try:
            result = await operation()
        except Exception:
            failure = Failure()
            self._waiters = None
            for w in waiters:
                w.errback(failure)
            raise
        self._waiters = None
        for w in waiters:
            w.callback(result)
        return result
