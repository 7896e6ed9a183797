"""A bounded wait for an exclusive flock: the lab's locks (network plans, image builds) never wait forever."""

from __future__ import annotations

import fcntl
import time

__all__ = ["flock_within"]


def flock_within(fd: int, timeout: float, poll: float = 0.05) -> bool:
    """Take an exclusive flock on *fd*, waiting at most *timeout* seconds; False if another holder kept it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
