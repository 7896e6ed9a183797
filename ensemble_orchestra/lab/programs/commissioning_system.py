"""Commissioning, for the lab's process and container systems: report the configured hardware, as the image would.

A QEMU system boots the real commissioning image. A process or container system has no hardware of its own
to report, so when the PXE config Cobbler wrote for its MAC boots the commissioning profile (its kernel
command line carries ``ensemble.report`` and ``ensemble.token``), it reports what ``system.json`` says the
lab gave it (``memory_mb``, ``cpus``, its MAC) through the same path: the image's own shell functions
(``commissioning/image.py``'s ``FUNCTIONS``, run by busybox) PUT the report with the commissioning
credential from the same kernel command line. Then the system powers off, as the image does.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["commissioning_options", "report_configured_hardware"]

BUSYBOX = "/bin/busybox"
_OPTION = re.compile(r"\bensemble\.(report|report_user|report_pass|token)=(\S+)")
DISK_BYTES = 32 * 1024 * 1024  # what a QEMU lab system's disk.img is


def commissioning_options(pxe_config: str | None) -> dict[str, str] | None:
    """The commissioning options of a PXE config (report, report_user, report_pass, token); None if it does not
    boot the commissioning image."""
    if not pxe_config:
        return None
    options = {m.group(1): m.group(2) for m in _OPTION.finditer(pxe_config)}
    return options if {"report", "token"} <= set(options) else None


def configured_report(settings: dict[str, Any], token: str) -> bytes:
    """The report (format 1) of a lab system's configured hardware."""
    document = {
        "format": 1,
        "token": token,
        "arch": "x86_64",
        "cpus": int(settings.get("cpus") or 1),
        "cpu_model": f"ensemble lab {settings.get('system_kind', 'process')} system",
        "memory_mb": int(settings.get("memory_mb") or 256),
        "disks": [{"name": "vda", "size_bytes": DISK_BYTES}],
        "interfaces": [{"name": "eth0", "mac": str(settings["mac"]).lower()}],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def report_configured_hardware(settings: dict[str, Any], options: dict[str, str]) -> str:
    """PUT the configured report with the image's http_put; returns a summary line (never the password)."""
    from ...commissioning.image import FUNCTIONS  # a string: stdlib only, like every program here

    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "report.json"
        report.write_bytes(configured_report(settings, options["token"]))
        script = FUNCTIONS + '\nhttp_put "$1" "$2" "$RUSER" "$RPASS"\n'
        argv = [BUSYBOX, "sh", "-c", script, "sh", options["report"] + options["token"] + ".json", str(report)]
        # The credential goes in the environment, not the arguments (which every user sees in ps).
        env = {
            "PATH": "/usr/bin:/bin",
            "RUSER": options.get("report_user", ""),
            "RPASS": options.get("report_pass", ""),
        }
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
        except (OSError, subprocess.SubprocessError) as error:
            return f"commissioning: report failed ({type(error).__name__})"
    status = done.stdout.strip() or "000"
    return (
        f"commissioning: reported (HTTP {status})"
        if status in ("201", "204")
        else (f"commissioning: report failed (HTTP {status})")
    )
