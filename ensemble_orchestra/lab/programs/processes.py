"""Start and stop processes, each recorded by a pid file: the lab's servers and its booted systems.

A pid file holds the pid *and* the process's start time (from /proc), so a
stop never signals an unrelated process that happens to reuse a recorded pid.
Only processes this module started (and recorded) are ever signalled.

The power hook uses it too, so: standard library only. A missing program is Popen's FileNotFoundError
here; the lab side (``lab/processes.py``) turns it into an error that says what to install.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "process_start_time",
    "read_pid",
    "running_pid",
    "start_process",
    "stop_pid",
    "stop_process",
    "wait_until",
    "write_pid",
]


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of *pid* (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return fields[19]


def write_pid(pid_path: Path, pid: int) -> None:
    """Record *pid* with its start time, atomically."""
    started = process_start_time(pid) or ""
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_path.with_suffix(".tmp")
    tmp.write_text(f"{pid} {started}\n")
    tmp.replace(pid_path)


def read_pid(pid_path: Path) -> tuple[int, str] | None:
    try:
        pid_text, _, started = pid_path.read_text().strip().partition(" ")
        return int(pid_text), started
    except (OSError, ValueError):
        return None


def running_pid(pid_path: Path) -> int | None:
    """The recorded pid if that very process still runs, else None."""
    recorded = read_pid(pid_path)
    if recorded is None:
        return None
    pid, started = recorded
    current = process_start_time(pid)
    if current is None or (started and current != started):
        return None
    return pid


def start_process(
    argv: Sequence[str],
    pid_path: Path,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start *argv* in its own session, output appended to *log_path*, and record its pid.

    Raises FileNotFoundError if the program (or *cwd*) does not exist.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    write_pid(pid_path, proc.pid)
    # Popen keeps a handle that would reap the child; we track it by pid file instead.
    proc.returncode = 0
    return proc.pid


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pid(pid: int, started: str | None, timeout: float = 5.0) -> bool:
    """SIGTERM *pid* (if it is still the process started at *started*), SIGKILL after *timeout*.

    Returns True if a process was stopped.
    """
    current = process_start_time(pid)
    if current is None or (started and current != started):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if process_start_time(pid) != current:
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        _reap(pid)
        if process_start_time(pid) != current:
            break
        time.sleep(0.02)
    return True


def stop_process(pid_path: Path, timeout: float = 5.0) -> bool:
    """Stop the process recorded in *pid_path* and remove the record; safe to call twice."""
    recorded = read_pid(pid_path)
    stopped = False
    if recorded is not None:
        stopped = stop_pid(recorded[0], recorded[1], timeout)
    pid_path.unlink(missing_ok=True)
    return stopped


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.05,
) -> bool:
    """Poll *ready* until it is true, *alive* turns false, or *timeout* passes."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        if not alive() or time.monotonic() >= deadline:
            return False
        time.sleep(interval)
