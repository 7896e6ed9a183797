"""The edge between our coroutines and Twisted's Deferreds, typed.

House convention: code is ``async def`` inside; every public method of an interface
(IMachineProvider, IFileStorage) returns a ``Deferred``, as Ensemble's providers did,
so callers may either ``await`` it or add callbacks, and a caller can ``cancel()`` it
(Ctrl-C reaches the coroutine as CancelledError). ``deferred`` turns an ``async def``
method into such a method without losing its types.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred

__all__ = ["deferred"]

P = ParamSpec("P")
T = TypeVar("T")


def deferred(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Deferred[T]]:
    """*function* (an ``async def``), returning a Deferred of its result instead of a coroutine."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return Deferred.fromCoroutine(function(*args, **kwargs))

    return run
