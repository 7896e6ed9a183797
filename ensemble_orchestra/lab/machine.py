"""A booted lab system: this process exists exactly while the system's power is on.

The BMC's power hook starts it (``python -m ensemble_orchestra.lab.machine SYSTEM_DIR``) on power on and
SIGTERMs it on power off. For now booting only leaves a record in ``boots.log``; ``boot()`` is where a
netbooted system will fetch its preseed from Cobbler and "install", or where a QEMU VM will be started.
Settings for that come from an optional ``machine.json`` in the system directory. Stdlib only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

__all__ = ["boot", "boots_log", "load_settings", "main"]


def boots_log(system_dir: Path) -> Path:
    """One line per boot: ``boot <n> <iso time> pid=<pid>``."""
    return system_dir / "boots.log"


def load_settings(system_dir: Path) -> dict[str, Any]:
    """``machine.json`` if present (how the lab tells a system how to boot), else no settings."""
    try:
        text = (system_dir / "machine.json").read_text()
    except FileNotFoundError:
        return {}
    settings = json.loads(text)
    if not isinstance(settings, dict):
        raise ValueError("machine.json must hold a JSON object")
    return settings


def boot(system_dir: Path, settings: dict[str, Any]) -> int:
    """Boot the system; returns the boot's number. Today: record the boot and nothing else."""
    log = boots_log(system_dir)
    try:
        number = len(log.read_text().splitlines()) + 1
    except FileNotFoundError:
        number = 1
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with open(log, "a") as out:
        out.write(f"boot {number} {stamp} pid={os.getpid()}\n")
    print(f"booted {system_dir.name} (boot {number})", flush=True)
    return number


def _power_off(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m ensemble_orchestra.lab.machine SYSTEM_DIR", file=sys.stderr)
        return 2
    system_dir = Path(args[0])
    try:
        settings = load_settings(system_dir)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        print(f"machine: bad {system_dir / 'machine.json'}: {exc}", file=sys.stderr)
        return 1
    # Power off can come at any moment, even while booting: exit promptly and cleanly.
    signal.signal(signal.SIGTERM, _power_off)
    boot(system_dir, settings)
    while True:  # running = powered on, until the BMC's power off
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
