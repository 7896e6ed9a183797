"""The edge between our coroutines and Twisted's Deferreds, typed.

House convention: code is ``async def`` inside; every public method of an interface
(IMachineProvider, IFileStorage) returns a ``Deferred``, as Ensemble's providers did,
so callers may either ``await`` it or add callbacks, and a caller can ``cancel()`` it
(Ctrl-C reaches the coroutine as CancelledError). ``deferred`` turns an ``async def``
method into such a method without losing its types.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, DeferredLock, DeferredSemaphore, FirstError, gatherResults

__all__ = ["deferred", "gather", "run_holding"]

P = ParamSpec("P")
T = TypeVar("T")


def deferred(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Deferred[T]]:
    """*function* (an ``async def``), returning a Deferred of its result instead of a coroutine."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return Deferred.fromCoroutine(function(*args, **kwargs))

    return run


async def gather(coroutines: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run *coroutines* concurrently; their results in order, or the first one's error as it was raised.

    (``gatherResults`` alone wraps it in FirstError, which no caller wants to catch.) The others are
    cancelled when one fails.
    """
    running = [Deferred.fromCoroutine(c) for c in coroutines]
    try:
        return await gatherResults(running, consumeErrors=True)
    except FirstError as first:
        for other in running:
            other.cancel()
        raise first.subFailure.value from None


def run_holding(
    primitive: DeferredLock | DeferredSemaphore,
    function: Callable[P, Coroutine[Any, Any, T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> Deferred[T]:
    """``primitive.run`` for a coroutine function, on every Twisted we run on.

    Debian 12's Twisted (22.4, what the agents run with) hands ``run``'s function to ``maybeDeferred``,
    which there does not await coroutines: the work would never run.
    """
    return primitive.run(lambda: Deferred.fromCoroutine(function(*args, **kwargs)))
