"""The environment's provider state and recorded ports, as files on its storage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ..interfaces import IFileStorage
from ..storage import FileNotFound

__all__ = ["PORTS_DIR", "STATE_FILE", "ProviderState"]

STATE_FILE = "provider-state"
PORTS_DIR = "ports"


class ProviderState:
    """``provider-state`` (the bootstrap machine's instance id) and ``ports/<machine id>`` on one storage."""

    def __init__(self, storage: IFileStorage) -> None:
        self._storage = storage

    async def save(self, state: Mapping[str, Any]) -> None:
        await self._storage.put(STATE_FILE, yaml.safe_dump(dict(state)).encode())

    async def load(self) -> dict[str, Any] | bool:
        """The saved state, or False when there is none (Ensemble's convention)."""
        try:
            data = yaml.safe_load(await self._storage.get(STATE_FILE))
        except FileNotFound:
            return False
        return data if isinstance(data, dict) else False

    async def clear(self) -> None:
        """Delete the state and every recorded port (idempotent)."""
        await self._storage.delete(STATE_FILE)
        for name in await self._storage.list(PORTS_DIR + "/"):
            await self._storage.delete(name)

    async def ports(self, machine_id: str) -> set[tuple[int, str]]:
        try:
            data = yaml.safe_load(await self._storage.get(f"{PORTS_DIR}/{machine_id}")) or []
        except FileNotFound:
            return set()
        return {(int(p), str(proto)) for p, proto in data}

    async def set_port(self, machine_id: str, port: int, protocol: str, *, is_open: bool) -> None:
        current = await self.ports(machine_id)
        ports = current | {(int(port), protocol)} if is_open else current - {(int(port), protocol)}
        await self._storage.put(f"{PORTS_DIR}/{machine_id}", yaml.safe_dump(sorted(list(p) for p in ports)).encode())
