"""A provider type for the ``ensemble`` command's tests, loaded in the command's own process.

test_cli_reactor.py registers it as the entry point ``ensemble.providers: fake`` (a dist-info directory on
PYTHONPATH), exactly as a provider shipped by another package would plug in. It talks to no server; what
it does comes from its environment's keys in environments.yaml:

- ``calls``: a file each method call is appended to, so a test sees what ran and in which order;
- ``constraints-after``: seconds before ``get_constraint_set`` fires, through the reactor (default 0.3);
- ``bootstrap``: ``ok`` (default), ``usage-error`` (a UsageError subclass, exit 2, raised on the reactor)
  or ``hang`` (waits until cancelled, for Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ensemble_orchestra.errors import UsageError

CONSTRAINTS = ("arch", "mem", "orchestra-name")


class UncheckableConstraint(UsageError):
    """Stands for the provider refusing a constraint it cannot check (exit code 2)."""


@dataclass(frozen=True)
class FakeMachine:
    instance_id: str
    dns_name: str
    system_name: str
    machine_id: str
    state: str = "pending"


class FakeProvider:
    log = Logger()

    def __init__(self, name: str, raw: Mapping[str, Any], reactor: Any) -> None:
        self.environment_name = name
        self.provider_type = "fake"
        self._reactor = reactor
        self._calls = Path(raw["calls"])
        self._constraints_after = float(raw.get("constraints-after", 0.3))
        self._bootstrap = raw.get("bootstrap", "ok")
        self.progress: Any = lambda phase, detail: None

    def _record(self, call: str) -> None:
        with self._calls.open("a", encoding="utf-8") as out:
            out.write(call + "\n")

    def get_constraint_set(self) -> Deferred[tuple[str, ...]]:
        """Fires later, from the reactor: a caller that does not run the reactor never sees the names."""
        self._record("get_constraint_set")
        names: Deferred[tuple[str, ...]] = Deferred()
        self._reactor.callLater(self._constraints_after, names.callback, CONSTRAINTS)
        return names

    async def bootstrap(self, constraints: Mapping[str, str] | None = None) -> list[FakeMachine]:
        self._record(f"bootstrap {dict(constraints or {})}")
        self.log.info("fake bootstrap of {environment}", environment=self.environment_name)
        if self._bootstrap == "usage-error":
            raise UncheckableConstraint("constraint 'mem' cannot be checked: the fake has no hardware inventory")
        if self._bootstrap == "hang":
            self.progress("powering on", "fake0")
            await Deferred()  # until cancelled
        return [FakeMachine("fake-uid-0", "fake0.example", "fake0", "0")]

    async def close(self) -> None:
        self._record("close")


def create(name: str, raw: Mapping[str, Any], reactor: Any, source: Path | None = None) -> FakeProvider:
    return FakeProvider(name, raw, reactor)
