"""Telling a cancellation apart from a network failure, through Twisted's HTTP client's wrappers."""

from __future__ import annotations

from twisted.internet.defer import CancelledError

from .failures import reasons

__all__ = ["is_cancellation"]


def is_cancellation(exc: BaseException) -> bool:
    """Whether *exc* is, or wraps (ResponseNeverReceived([Failure(CancelledError)]) etc.), a cancellation."""
    return any(isinstance(cause, CancelledError) for cause in reasons(exc))
