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
