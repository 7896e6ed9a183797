"""Pid records: a stop signals only the very process that was started (programs/processes.py, and the lab's
wrapper that names a missing program)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ensemble_orchestra.lab import processes as lab_processes
from ensemble_orchestra.lab.programs import processes


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def test_start_record_and_stop(tmp_path: Path) -> None:
    pid_file, log = tmp_path / "run" / "s.pid", tmp_path / "logs" / "s.log"
    pid = processes.start_process(
        [sys.executable, "-c", "print('hi', flush=True); import time; time.sleep(30)"], pid_file, log
    )
    assert processes.running_pid(pid_file) == pid
    assert processes.wait_until(lambda: b"hi" in log.read_bytes(), timeout=10)
    assert processes.stop_process(pid_file) is True
    assert processes.process_start_time(pid) is None
    assert not pid_file.exists()
    assert processes.stop_process(pid_file) is False  # twice is fine


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    """A record whose start time differs from the live process with that pid is treated as stale."""
    victim = _sleeper()
    try:
        pid_file = tmp_path / "stale.pid"
        pid_file.write_text(f"{victim.pid} 1\n")  # same pid, another start time
        assert processes.running_pid(pid_file) is None
        assert processes.stop_process(pid_file) is False
        assert victim.poll() is None  # still alive
    finally:
        victim.kill()
        victim.wait()


def test_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    try:
        lab_processes.start_process(["/nonexistent/program-xyz"], tmp_path / "p.pid", tmp_path / "p.log")
    except lab_processes.ProcessStartError as exc:
        assert "/nonexistent/program-xyz is not installed" in str(exc)
    else:
        raise AssertionError("expected ProcessStartError")


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    )
    log = tmp_path / "k.log"
    pid = processes.start_process([sys.executable, "-c", code], tmp_path / "k.pid", log)
    assert processes.wait_until(lambda: b"ready" in log.read_bytes(), timeout=10)
    assert processes.stop_process(tmp_path / "k.pid", timeout=0.3) is True
    assert processes.process_start_time(pid) is None
    assert not os.path.exists(tmp_path / "k.pid")
