"""A booted lab system of the process kind: this process exists exactly while the system's power is on.

The BMC's power hook starts it (``python -m ensemble_orchestra.lab.programs.process_system SYSTEM_DIR``) on
power on and SIGTERMs it on power off. It boots the way a PXE-booting server does: it reads the PXE config
Cobbler wrote for its MAC (``<tftpboot>/pxelinux.cfg/01-<mac>``). With netboot on, that config hands the
installer a ``url=`` of the system's rendered autoinstall (Cobbler's svc); the "installer" fetches it and
carries out the preseed's late command with ``/target`` being this system's disk directory (the NoCloud seed
lands there, and the command's ``nopxe`` turns netboot off), then reboots from disk. With netboot off
(``localboot``), it boots the installed system from disk and reports the NoCloud seed it finds. Booted into
the commissioning profile, it reports its configured hardware and powers off (``commissioning_system``).

Every boot appends one line to ``boots.log``: ``boot <n> <iso time> pid=<pid> from=<install|disk>``, plus
``installed ...`` / ``disk ...`` lines to ``install.log``. Settings (name, MAC, tftpboot) come from
``system.json`` in the system directory (``system_files``), written by the lab; without it the system boots
"from disk". Stdlib only.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from .commissioning_system import commissioning_options, report_configured_hardware
from .system_files import boots_log, disk_dir, install_log, load_settings, nocloud_seed, settings_file

__all__ = ["boot", "describe_disk", "install", "main", "pxe_config"]

LATE_COMMAND = re.compile(r"^d-i\s+preseed/late_command\s+string\s+(?P<command>.+)$", re.MULTILINE)
INSTALLER_URL = re.compile(r"\burl=(?P<url>\S+)")
INSTALL_TIMEOUT = 120.0  # seconds for fetching the autoinstall and running its late command
# A system that powered itself off before the fence agent confirmed its power-on would fail that power-on.
COMMISSIONING_SHUTDOWN = 2.0


def pxe_config(settings: dict[str, Any]) -> str | None:
    """The PXE config Cobbler wrote for this MAC, as a PXE ROM would fetch it over TFTP; None if none."""
    if not settings.get("tftpboot") or not settings.get("mac"):
        return None
    name = "01-" + str(settings["mac"]).lower().replace(":", "-")
    try:
        return (Path(settings["tftpboot"]) / "pxelinux.cfg" / name).read_text()
    except FileNotFoundError:
        return None


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _append(path: Path, line: str) -> None:
    with open(path, "a") as out:
        out.write(line + "\n")


def install(system_dir: Path, url: str) -> str:
    """Fetch the rendered autoinstall and run its late command against the disk; returns a summary line."""
    with urllib.request.urlopen(url, timeout=INSTALL_TIMEOUT) as answer:
        preseed = answer.read().decode()
    found = LATE_COMMAND.search(preseed)
    if not found:
        return f"installed {_stamp()} no late_command in {url}"
    disk = disk_dir(system_dir)
    disk.mkdir(parents=True, exist_ok=True)
    command = found.group("command").replace("/target", str(disk))
    done = subprocess.run(["sh", "-c", command], timeout=INSTALL_TIMEOUT, check=False)
    return f"installed {_stamp()} late_command rc={done.returncode}"


def describe_disk(system_dir: Path) -> str:
    """What the installed system's cloud-init would read: instance id and a hash of the user data."""
    seed = nocloud_seed(system_dir)
    try:
        user_data = (seed / "user-data").read_bytes()
        meta = (seed / "meta-data").read_text()
    except FileNotFoundError:
        return f"disk {_stamp()} no NoCloud seed"
    instance = re.search(r"^instance-id:\s*(\S+)", meta, re.MULTILINE)
    return (
        f"disk {_stamp()} instance-id={instance.group(1) if instance else '-'}"
        f" user-data-sha256={hashlib.sha256(user_data).hexdigest()}"
    )


def boot(system_dir: Path, settings: dict[str, Any]) -> int:
    """Boot the system as its PXE config says; returns the boot's number."""
    log = boots_log(system_dir)
    try:
        number = len(log.read_text().splitlines()) + 1
    except FileNotFoundError:
        number = 1
    config = pxe_config(settings)
    commissioning = commissioning_options(config)
    if commissioning is not None:  # the commissioning profile: report the configured hardware, power off
        _append(log, f"boot {number} {_stamp()} pid={os.getpid()} from=commissioning")
        summary = report_configured_hardware(settings, commissioning)
        print(summary, flush=True)
        _append(install_log(system_dir), f"{summary} {_stamp()}")
        time.sleep(COMMISSIONING_SHUTDOWN)  # as long as the image takes to power off, at least
        raise SystemExit(0)
    url = INSTALLER_URL.search(config) if config else None
    _append(log, f"boot {number} {_stamp()} pid={os.getpid()} from={'install' if url else 'disk'}")
    print(f"booted {system_dir.name} (boot {number}, {'network install' if url else 'disk'})", flush=True)
    if url:
        try:
            summary = install(system_dir, url.group("url"))
        except (OSError, subprocess.SubprocessError) as exc:
            summary = f"installed {_stamp()} failed: {exc}"
        print(summary, flush=True)
        _append(install_log(system_dir), summary)
        # The installer reboots into the installed system; netboot is off now, so the disk boots.
    summary = describe_disk(system_dir)
    print(summary, flush=True)
    _append(install_log(system_dir), summary)
    return number


def _power_off(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m ensemble_orchestra.lab.programs.process_system SYSTEM_DIR", file=sys.stderr)
        return 2
    system_dir = Path(args[0])
    try:
        settings = load_settings(system_dir)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        print(f"process_system: bad {settings_file(system_dir)}: {exc}", file=sys.stderr)
        return 1
    # Power off can come at any moment, even while booting: exit promptly and cleanly.
    signal.signal(signal.SIGTERM, _power_off)
    boot(system_dir, settings)
    while True:  # running = powered on, until the BMC's power off
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
