"""Small helpers for tests of Twisted code driven by a task.Clock (public, like treq.testing)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["result_of", "start"]


def start(coroutine: Coroutine[Any, Any, Any]) -> Deferred[Any]:
    """Run *coroutine* as a Deferred (the edge between async def and Twisted)."""
    return Deferred.fromCoroutine(coroutine)


def result_of(d: Deferred[Any]) -> Any:
    """The Deferred's result now (it must have fired), raising its failure."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the call has not finished"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]
