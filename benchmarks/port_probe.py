"""Timing a TCP port's change from outside: a new connect every 10 ms, several in flight (benchmarks/relations.py).

A firewall that drops packets makes a connect wait out its timeout, and a dropped SYN is not sent again within
0.2 s: one connect at a time would see a change only every 0.2 s. Starting a new non-blocking connect every
PROBE_INTERVAL, each given CONNECT_TIMEOUT, keeps the resolution at 10 ms whether the port answers or not.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

PROBE_INTERVAL = 0.01
CONNECT_TIMEOUT = 0.2
PROBE_LIMIT = 30.0
CLOSED_STREAK = 5


@dataclass
class Attempt:
    """One connect: when it started and ended, and how (``connected``, ``timeout`` or the errno's name)."""

    started: float  # epoch seconds, as the journals and the commands' returns
    ended: float | None = None
    outcome: str = "pending"  # connected | timeout | ECONNREFUSED (errno names) ...


def probe(address: str, port: int, decide: Callable[[list[Attempt]], Attempt | None]) -> tuple[Attempt, list[Attempt]]:
    """A new TCP connect to *address*:*port* every PROBE_INTERVAL, each given CONNECT_TIMEOUT, several in flight,
    until *decide* (given the attempts in start order, each time one ends) picks one; and all the attempts."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    selector = selectors.DefaultSelector()
    attempts: list[Attempt] = []
    pending: dict[socket.socket, tuple[Attempt, float]] = {}

    def finish(sock: socket.socket, outcome: str) -> None:
        attempt, _ = pending.pop(sock)
        attempt.ended, attempt.outcome = time.time(), outcome
        selector.unregister(sock)
        sock.close()

    start = time.monotonic()
    next_at = start
    try:
        while True:
            now = time.monotonic()
            ended = False
            if now >= next_at:
                if now - start > PROBE_LIMIT:
                    raise RuntimeError(f"{address}:{port}: no decision after {PROBE_LIMIT:.0f} s of connects")
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                attempt = Attempt(time.time())
                attempts.append(attempt)
                pending[sock] = (attempt, now + CONNECT_TIMEOUT)
                selector.register(sock, selectors.EVENT_WRITE)
                code = sock.connect_ex((address, port))
                if code not in (0, errno.EINPROGRESS):
                    finish(sock, errno.errorcode.get(code, str(code)))
                    ended = True
                next_at = max(next_at + PROBE_INTERVAL, now)
            wait = min([next_at, *(deadline for _, deadline in pending.values())]) - time.monotonic()
            for key, _ in selector.select(max(wait, 0.0)):
                sock = cast(socket.socket, key.fileobj)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                finish(sock, "connected" if code == 0 else errno.errorcode.get(code, str(code)))
                ended = True
            now = time.monotonic()
            for sock in [s for s, (_, deadline) in pending.items() if deadline <= now]:
                finish(sock, "timeout")
                ended = True
            if ended:
                chosen = decide(attempts)
                if chosen is not None:
                    return chosen, attempts
    finally:
        for sock in list(pending):
            finish(sock, "abandoned")
        selector.close()


def first_connected(attempts: list[Attempt]) -> Attempt | None:
    done = [a for a in attempts if a.outcome == "connected" and a.ended is not None]
    return min(done, key=lambda a: a.ended or 0.0) if done else None


def first_closed(attempts: list[Attempt]) -> Attempt | None:
    """The first failed attempt of CLOSED_STREAK failures in a row, among those ended in start order."""
    streak: list[Attempt] = []
    for attempt in attempts:
        if attempt.ended is None:
            return None
        streak = [] if attempt.outcome == "connected" else [*streak, attempt]
        if len(streak) == CLOSED_STREAK:
            return streak[0]
    return None
