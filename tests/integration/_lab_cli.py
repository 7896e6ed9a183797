"""The `ensemble` command line as the agents group's lab tests use it: processes against the shared
environment (conftest's ``agents_environment``), its status as JSON, and bounded waits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "agents"  # the environment of conftest's agents_environment
Environment = Any  # conftest's Environment: the bootstrapped environment, its lab, machine 0's address


def ensemble_cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TEST_CHARMS = REPO / "tests" / "charms"
UNIT_TIMEOUT = 600.0  # a new machine installs, its agents come up, the charm installs MariaDB through the proxy
PASSWORD = "lab-root-Pw-7"


def _cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return ensemble_cli(*args[:1], "-e", ENV, *args[1:], timeout=timeout)


def _status() -> dict[str, Any]:
    done = _cli("status", "--format", "json", timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _unit(name: str) -> dict[str, Any]:
    return dict(_status()["services"].get(name.partition("/")[0], {}).get("units", {}).get(name) or {})


def _until(check: Callable[[], Any], timeout: float, what: str, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s (last: {value!r})"
        time.sleep(every)


def _state_is(unit: str, *wanted: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        entry = _unit(unit)
        return entry if entry.get("agent-state") in wanted else None

    return check


