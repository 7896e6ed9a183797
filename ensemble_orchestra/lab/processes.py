"""The lab's server processes: started and stopped by pid file, a missing program reported as an EnsembleError.

The pid-file mechanics are ``programs/processes.py``, shared with the power hook (which must not import this
project's errors); this module adds the error that names what to install, and is what the lab calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import EnsembleError
from .programs import processes as _pidfile
from .programs.processes import process_start_time, read_pid, running_pid, stop_pid, stop_process, wait_until

__all__ = [
    "last_log_line",
    "ProcessStartError",
    "process_start_time",
    "read_pid",
    "running_pid",
    "start_process",
    "stop_pid",
    "stop_process",
    "wait_until",
]


class ProcessStartError(EnsembleError):
    """A lab server did not start; the message says which and where its log is."""


def start_process(
    argv: Sequence[str],
    pid_path: Path,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start *argv* in its own session, output appended to *log_path*, and record its pid.

    A program that is not installed is a ProcessStartError saying to run scripts/install.
    """
    try:
        return _pidfile.start_process(argv, pid_path, log_path, env=env, cwd=cwd)
    except FileNotFoundError as exc:
        raise ProcessStartError(f"{argv[0]} is not installed ({exc.strerror}); run scripts/install") from None


def last_log_line(log: Path, start: int) -> str:
    """``": <the last line written to *log* after offset *start*>"``, or "" if none: a server that would not
    start usually says why on its last line, and the lab's one-line errors quote it."""
    try:
        with open(log, "rb") as out:
            out.seek(start)
            text = out.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f": {lines[-1][:200]}" if lines else ""
