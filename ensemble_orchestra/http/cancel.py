"""Telling a cancellation apart from a network failure, through Twisted's HTTP client's wrappers."""

from __future__ import annotations

from twisted.internet.defer import CancelledError

__all__ = ["is_cancellation"]


def is_cancellation(exc: BaseException) -> bool:
    """Whether *exc* is, or wraps (ResponseNeverReceived([Failure(CancelledError)]) etc.), a cancellation."""
    if isinstance(exc, CancelledError):
        return True
    return any(r.check(CancelledError) for r in getattr(exc, "reasons", None) or [])
