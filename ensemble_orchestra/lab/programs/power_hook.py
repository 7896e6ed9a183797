"""ipmi_sim's chassis control program for one lab system: power is on while the booted system runs.

lan.conf says ``chassis_control "PYTHON -m ensemble_orchestra.lab.programs.power_hook SYSTEM_DIR"``; ipmi_sim
runs that through the shell with ``get NAME...`` (answer ``NAME:VALUE`` lines) or ``set NAME VALUE`` appended,
on every chassis command, and waits for it reading stdout to EOF. So this returns at once, and the booted
system it starts holds neither that pipe nor the BMC's socket. Measured calls: ``get power``,
``set power 1|0``, ``set reset 1``, ``set shutdown 1`` (soft off), ``get boot``, ``set boot pxe``.

Stdlib only: it runs on every IPMI power query.
"""

from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import qemu_system
from .processes import running_pid, start_process, stop_process
from .system_files import (
    CONTAINER_STOP_TIMEOUT,
    console_log,
    load_settings,
    power_on_ignored_flag,
    system_pid_file,
)

__all__ = ["PROCESS_SYSTEM", "is_on", "main", "power_off", "power_on"]

# Started with ``python -m`` on power on of a process system (not imported here: every IPMI query would pay).
PROCESS_SYSTEM = "ensemble_orchestra.lab.programs.process_system"
CONTAINER_SYSTEM = "ensemble_orchestra.lab.programs.container_system"
BOOT_DEVICES = ("none", "pxe", "default", "cdrom", "bios")  # ipmi_sim's names for boot flags
STOP_TIMEOUT = 5.0  # the booted system exits on SIGTERM at once; SIGKILL after this


class UsageError(Exception):
    """The hook was called with arguments ipmi_sim never sends."""


def is_on(system_dir: Path) -> bool:
    return running_pid(system_pid_file(system_dir)) is not None


def power_on(system_dir: Path, python: str = sys.executable) -> bool:
    """Start the booted system unless it runs already; True if it was started.

    What starts is the system's kind in ``system.json``; either way ``system.pid`` records it.
    """
    with _power_lock(system_dir):
        if is_on(system_dir):
            return False
        argv, output = _boot_command(system_dir, load_settings(system_dir), python)
        # start_process: own session, fds other than 0-2 closed (the BMC's UDP socket), stdout not our pipe.
        start_process(argv, system_pid_file(system_dir), output, cwd=system_dir)
        return True


def _boot_command(system_dir: Path, settings: dict[str, Any], python: str) -> tuple[list[str], Path]:
    """The argv that boots the system, by its kind, and the file its output goes to."""
    if settings.get("system_kind") == "qemu":
        qemu_system.mark_power_on(system_dir, time.strftime("%Y-%m-%dT%H:%M:%S"))
        return qemu_system.qemu_argv(system_dir, settings), qemu_system.qemu_log(system_dir)
    if settings.get("system_kind") == "container":
        return [python, "-m", CONTAINER_SYSTEM, str(system_dir)], console_log(system_dir)
    return [python, "-m", PROCESS_SYSTEM, str(system_dir)], console_log(system_dir)


def power_off(system_dir: Path, timeout: float | None = None) -> bool:
    """Stop the booted system if it runs; True if one was stopped. Safe to call when off.

    A container system powers its Debian off cleanly first, so it gets longer before anything is killed.
    """
    if timeout is None:
        try:
            container = load_settings(system_dir).get("system_kind") == "container"
        except (OSError, ValueError):
            container = False
        timeout = CONTAINER_STOP_TIMEOUT if container else STOP_TIMEOUT
    with _power_lock(system_dir):
        return stop_process(system_pid_file(system_dir), timeout)


@contextmanager
def _power_lock(system_dir: Path) -> Iterator[None]:
    """Serialise power changes: ipmi_sim's hook and the lab's reset may act on one system at once."""
    with open(system_dir / "power.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _get(system_dir: Path, name: str) -> str:
    if name == "power":
        return f"power:{int(is_on(system_dir))}"
    if name == "boot":
        return f"boot:{_boot_device(system_dir)}"
    raise UsageError(f"cannot get {name!r}")


def _set(system_dir: Path, name: str, value: str) -> None:
    if name == "power" and value in ("0", "1"):
        if value == "1":
            if power_on_ignored_flag(system_dir).exists():  # a fault drill: accepted, and nothing happens
                return
            power_on(system_dir)
        else:
            power_off(system_dir)
    elif name == "reset" and value == "1":
        # A hard reset reboots a running system; an off system stays off.
        if is_on(system_dir):
            power_off(system_dir)
            power_on(system_dir)
    elif name == "shutdown" and value == "1":
        power_off(system_dir)  # the booted system shuts down cleanly on SIGTERM
    elif name == "boot" and value in BOOT_DEVICES:
        (system_dir / "bootdev").write_text(value + "\n")
    else:
        raise UsageError(f"cannot set {name!r} to {value!r}")


def _boot_device(system_dir: Path) -> str:
    try:
        device = (system_dir / "bootdev").read_text().strip()
    except OSError:
        return "default"
    return device if device in BOOT_DEVICES else "default"


def run(argv: Sequence[str]) -> list[str]:
    """Carry out ``SYSTEM_DIR get NAME...`` or ``SYSTEM_DIR set NAME VALUE...``; returns the output lines."""
    if len(argv) < 3:
        raise UsageError("usage: power_hook SYSTEM_DIR get NAME... | set NAME VALUE...")
    system_dir, verb, args = Path(argv[0]), argv[1], list(argv[2:])
    if not system_dir.is_dir():
        raise UsageError(f"no system directory {system_dir}")
    if verb == "get":
        return [_get(system_dir, name) for name in args]
    if verb == "set":
        if len(args) % 2:
            raise UsageError("set takes NAME VALUE pairs")
        for name, value in zip(args[::2], args[1::2], strict=True):
            _set(system_dir, name, value)
        return []
    raise UsageError(f"unknown verb {verb!r} (get or set)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        lines = run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"power_hook: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # a bad system.json, a program not installed: ipmi_sim reports a failure
        print(f"power_hook: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
