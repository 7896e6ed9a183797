"""Where log events go: warnings and errors to stderr (everything with -v), everything to --log-file.

Secrets never reach log events in the first place (the Cobbler client and the storage redact them, and
configuration holds them as `Secret`); tests capture every event of the fault drills to check that.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)
from zope.interface import provider

__all__ = ["start_logging"]


def _stderr_observer(stream: TextIO, prog: str) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        level = event.get("log_level")
        name = level.name if level is not None else "info"
        stream.write(f"{prog}: {name}: {formatEvent(event)}\n")
        stream.flush()

    return observe


def start_logging(
    prog: str, *, verbose: bool, log_file: Path | None, stderr: TextIO = sys.stderr
) -> Callable[[], None]:
    """Attach the observers; returns a function that detaches them (and closes the file)."""
    observers = []
    shown = LogLevel.debug if verbose else LogLevel.warn
    observers.append(
        FilteringLogObserver(_stderr_observer(stderr, prog), [LogLevelFilterPredicate(defaultLogLevel=shown)])
    )
    handle = None
    if log_file is not None:
        handle = open(log_file, "a", encoding="utf-8")  # closed by the returned function
        observers.append(
            FilteringLogObserver(textFileLogObserver(handle), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.debug)])
        )
    for observer in observers:
        globalLogPublisher.addObserver(observer)

    def stop() -> None:
        for observer in observers:
            globalLogPublisher.removeObserver(observer)
        if handle is not None:
            handle.close()

    return stop
