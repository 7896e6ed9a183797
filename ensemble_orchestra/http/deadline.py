"""One deadline helper for every request, on the injected clock.

A deadline cancels the work when it passes; Twisted then reports the cancellation wrapped in whatever
its HTTP client was doing (``ResponseNeverReceived([CancelledError])`` ...). ``within`` tells the two
cancellations apart — our deadline becomes ``TimeoutError``, a caller's cancel (Ctrl-C) stays
``CancelledError`` — so a boundary maps the first to its "timed out" error and lets the second run the
caller's cleanup instead of a retry.
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime

from .cancel import is_cancellation

__all__ = ["within"]

T = TypeVar("T")


async def within(clock: IReactorTime, seconds: float, work: Deferred[T]) -> T:
    """*work*'s result; TimeoutError once *seconds* pass on *clock* (the work is cancelled then)."""
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        work.cancel()

    timer = clock.callLater(seconds, expire)
    try:
        return await work
    except Exception as exc:
        if expired:
            raise TimeoutError(f"no answer within {seconds:g}s") from exc
        if is_cancellation(exc):
            raise CancelledError() from exc
        raise
    finally:
        if timer.active():
            timer.cancel()
