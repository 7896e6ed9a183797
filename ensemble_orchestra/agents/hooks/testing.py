"""Public helpers for tests of hooks, tools and the unit agent (like treq.testing): ``FakeHookContext``, an
in-memory ``IHookContext``; ``write_hook``, a charm's hook file; ``run_tool``, one hook tool run as a real
process (as a hook runs it)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.utils import getProcessOutputAndValue
from zope.interface import implementer

from .context import IHookContext
from .protocol import HookToolError

__all__ = ["FakeHookContext", "ToolRun", "run_tool", "write_hook"]

TOOLS_MODULE = "ensemble_orchestra.agents.hooks.tools"


def write_hook(charm_dir: Path, name: str, body: str, *, executable: bool = True) -> Path:
    """``charm_dir/hooks/<name>`` with *body* (a ``#!/bin/sh`` script when it has no ``#!`` line)."""
    path = charm_dir / "hooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if body.startswith("#!") else "#!/bin/sh\n" + body)
    path.chmod(0o755 if executable else 0o644)
    return path


@dataclass(frozen=True)
class ToolRun:
    out: str
    err: str
    code: int


async def run_tool(reactor: Any, tool: str, *args: str, env: Mapping[str, str]) -> ToolRun:
    """Run hook tool *tool* with *args* in a child ``python -m ...tools`` (this interpreter) and environment *env*
    (plus the PYTHONPATH that finds this package)."""
    package_root = str(Path(__file__).resolve().parents[3])
    full_env = {**env, "PYTHONPATH": package_root}
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-s", "-m", TOOLS_MODULE, tool, *args], env=full_env, path=os.getcwd(), reactor=reactor
    )
    return ToolRun(out.decode(), err.decode(), code)


@implementer(IHookContext)
class FakeHookContext:
    """A unit with *config* (the settings config-get sees) and *addresses*; it records what the tools did.

    ``ports`` holds the open (port, protocol) pairs, ``logs`` the (level, message) pairs, ``calls`` every call
    by method name in order. ``relations`` maps a relation id to its units' settings (this unit's included);
    ``relation`` and ``remote_unit`` are the running hook's.
    ``failures`` maps a method name to the exception that method raises (error paths).
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        addresses: Mapping[str, str] | None = None,
        failures: Mapping[str, Exception] | None = None,
        relations: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
        relation: str | None = None,
        remote_unit: str | None = None,
        unit: str = "unit/0",
    ) -> None:
        self.config = dict(config or {})
        default_addresses = {"private-address": "10.0.0.2", "public-address": "unit-0.example"}
        self.addresses = dict(default_addresses if addresses is None else addresses)
        self.failures = dict(failures or {})
        self.ports: set[tuple[int, str]] = set()
        self.logs: list[tuple[str, str]] = []
        self.calls: list[str] = []
        # relation id ("db:3") -> unit name -> settings; the hook's own relation and remote unit
        self.relations = {rid: {u: dict(v) for u, v in units.items()} for rid, units in (relations or {}).items()}
        self.relation = relation
        self.remote_unit = remote_unit
        self.unit = unit

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        failure = self.failures.get(method)
        if failure is not None:
            raise failure

    async def config_get(self, key: str | None) -> Any:
        self._enter("config_get")
        return dict(self.config) if key is None else self.config.get(key)

    async def unit_get(self, name: str) -> str:
        self._enter("unit_get")
        if name not in self.addresses:
            raise HookToolError(f"the unit has no {name} yet: try again when its machine is up")
        return self.addresses[name]

    async def open_port(self, port: int, protocol: str) -> None:
        self._enter("open_port")
        self.ports.add((port, protocol))

    async def close_port(self, port: int, protocol: str) -> None:
        self._enter("close_port")
        self.ports.discard((port, protocol))

    async def log(self, level: str, message: str) -> None:
        self._enter("log")
        self.logs.append((level, message))

    def _relation(self, relation_id: str | None) -> dict[str, dict[str, str]]:
        rid = relation_id or self.relation
        if rid is None:
            raise HookToolError("not a relation hook: name the relation with -r ID")
        if rid not in self.relations:
            raise HookToolError(f"unknown relation {rid!r}: see relation-ids")
        return self.relations[rid]

    async def relation_get(self, relation_id: str | None, key: str | None, unit: str | None) -> Any:
        self._enter("relation_get")
        units = self._relation(relation_id)
        name = unit or self.remote_unit
        if name is None or name not in units:
            raise HookToolError(f"unit {name} is not in the relation")
        return dict(units[name]) if key is None else units[name].get(key)

    async def relation_set(self, relation_id: str | None, settings: Mapping[str, str | None]) -> None:
        self._enter("relation_set")
        own = self._relation(relation_id).setdefault(self.unit, {})
        for key, value in settings.items():
            if value:
                own[key] = value
            else:
                own.pop(key, None)

    async def relation_list(self, relation_id: str | None) -> list[str]:
        self._enter("relation_list")
        return sorted(u for u in self._relation(relation_id) if u != self.unit)

    async def relation_ids(self, name: str | None) -> list[str]:
        self._enter("relation_ids")
        wanted = name or (self.relation or "").partition(":")[0]
        if not wanted:
            raise HookToolError("not a relation hook: name the relation, e.g. relation-ids db")
        return sorted(rid for rid in self.relations if rid.partition(":")[0] == wanted)
