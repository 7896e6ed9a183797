"""What the ``ensemble`` commands that work on an environment share: select it, build its provider, run
the command's coroutine on the reactor with progress shown, and close the provider's connections."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .environment import SelectedEnvironment, select_environment
from .progress import Progress
from .reactor_run import run_on_reactor

__all__ = ["PROG", "Work", "run_with_provider"]

PROG = "ensemble"

# A command's work: (provider, progress, reactor) -> what it awaits.
Work = Callable[[Any, Progress, Any], Awaitable[Any]]


def run_with_provider(
    args: argparse.Namespace,
    work: Work,
    *,
    prepare: Callable[[Any], Awaitable[None]] | None = None,
    selected: SelectedEnvironment | None = None,
) -> Any:
    """Build the provider of the selected environment (configuration errors: exit 2, before the reactor
    runs), then on the reactor await *prepare* (checks of the arguments against the provider, before
    anything talks to a server), then *work*."""
    from twisted.internet import reactor

    selected = selected or select_environment(args.environment)
    provider = selected.create_provider(reactor)
    progress = Progress(sys.stderr)
    provider.progress = progress

    async def body(reactor: Any) -> Any:
        try:
            if prepare is not None:
                await prepare(provider)
            for warning in selected.warnings:
                print(f"{PROG}: warning: {warning}", file=sys.stderr)
            return await work(provider, progress, reactor)
        finally:
            progress.done()
            await provider.close()

    return run_on_reactor(body, reactor, prog=PROG)
