"""The machine's own tools, run from the reactor: systemctl, ip. Bounded; a failure names the command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from twisted.internet.utils import getProcessOutputAndValue

from ..errors import EnsembleError

__all__ = ["SystemCommandError", "global_addresses", "run"]


class SystemCommandError(EnsembleError):
    """A command of the machine's (systemctl, ip) failed or did not finish in time."""


async def run(reactor: Any, argv: Sequence[str], timeout: float = 60.0) -> str:
    """Run *argv*; its stdout. SystemCommandError with its last stderr line if it fails or overruns."""
    running = getProcessOutputAndValue(
        argv[0], list(argv[1:]), env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, reactor=reactor
    )
    running.addTimeout(timeout, reactor)
    try:
        out, err, code = await running
    except Exception as failure:
        raise SystemCommandError(f"{' '.join(argv)}: did not finish within {timeout:g} s ({failure})") from None
    if code != 0:
        last = (err.decode(errors="replace").strip().splitlines() or [f"exit code {code}"])[-1]
        raise SystemCommandError(f"{' '.join(argv)} failed: {last}")
    return str(out.decode(errors="replace"))


async def global_addresses(reactor: Any) -> list[str]:
    """The machine's IPv4 addresses of global scope (what other machines and the CLI reach it by)."""
    found = json.loads(await run(reactor, ["ip", "-j", "-4", "addr", "show", "scope", "global"]) or "[]")
    return [info["local"] for link in found for info in link.get("addr_info", []) if info.get("local")]
