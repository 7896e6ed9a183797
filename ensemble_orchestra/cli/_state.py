"""What the commands that change or read the environment's state share: an admin session opened before the
command's work (through the tunnel, bounded) and closed after it, whatever happens."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from ._provider import run_with_provider
from .connection import StateConnection, connect_environment
from .progress import Progress

__all__ = ["CONNECT_TIMEOUT", "StateWork", "run_on_state"]

CONNECT_TIMEOUT = 60.0

# A command's work on the state: (connection, provider, progress, reactor) -> what it awaits.
StateWork = Callable[[StateConnection, Any, Progress, Any], Awaitable[Any]]


def run_on_state(
    args: argparse.Namespace,
    work: StateWork,
    *,
    prepare: Callable[[Any], Awaitable[None]] | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> Any:
    """``run_with_provider`` with the environment's state connected for *work* (*prepare* runs before that)."""

    async def connected(provider: Any, progress: Progress, reactor: Any) -> Any:
        connection = await connect_environment(provider, reactor, progress, timeout)
        try:
            return await work(connection, provider, progress, reactor)
        finally:
            await connection.close()

    return run_with_provider(args, connected, prepare=prepare)
