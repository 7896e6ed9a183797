"""An agent's log: ``/var/log/ensemble/<agent>.log``, one line per event, read by ``ensemble debug-log``.

Line format (what debug-log filters on): ``<UTC time> <LEVEL> <agent>: <message>``; a failure's traceback
follows on indented lines.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)

__all__ = ["format_line", "start_logging"]


def format_line(agent: str, event: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.get("log_time", time.time())))
    level = event.get("log_level", LogLevel.info).name.upper()
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n" + "\n".join("    " + line for line in failure.getTraceback().splitlines())
    return f"{stamp} {level} {agent}: {text}\n"


def start_logging(
    agent: str, log_dir: Path | None, verbose: bool = False, stream: IO[str] | None = None
) -> Path | None:
    """Send twisted.logger's events to the agent's log file (if *log_dir*) and to *stream* (stderr: journald)."""
    level = LogLevel.debug if verbose else LogLevel.info
    observers: list[ILogObserver] = []
    path = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        path = log_dir / f"{agent}.log"
        handle = path.open("a", buffering=1)
        observers.append(FileLogObserver(handle, lambda event: format_line(agent, event)))
    observers.append(FileLogObserver(stream or sys.stderr, lambda event: format_line(agent, event)))
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(o, [predicate]) for o in observers], redirectStandardIO=False
    )
    return path
