"""From `-e NAME` to a provider: read environments.yaml, pick the environment, find its provider type.

Provider types are entry points in the group ``ensemble.providers`` (the orchestra provider registers
``orchestra``), so a provider shipped by another package plugs in the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..config import ORCHESTRA_KEYS, ConfigError, load_environments

__all__ = ["PROVIDER_GROUP", "SelectedEnvironment", "provider_types", "select_environment"]

PROVIDER_GROUP = "ensemble.providers"
# Keys whose values are secrets (as the schema marks them); a world-readable file holding any gets a warning.
SECRET_KEYS = tuple(k.name for k in ORCHESTRA_KEYS if k.secret)


@dataclass(frozen=True)
class SelectedEnvironment:
    name: str
    raw: Mapping[str, Any]
    source: Path
    provider_type: str
    warnings: tuple[str, ...] = ()

    def create_provider(self, reactor: Any) -> Any:
        """The provider for this environment; ConfigError names the file, environment and key."""
        factory = provider_types()[self.provider_type].load()
        return factory(self.name, self.raw, reactor, self.source)


def provider_types() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=PROVIDER_GROUP)}


def select_environment(name: str | None) -> SelectedEnvironment:
    """The `-e` environment, else $ENSEMBLE_ENV, else `default:`, else the only one."""
    envfile = load_environments()
    chosen, raw = envfile.select(name)
    where = f"{envfile.path}: environment '{chosen}'"
    kind = raw.get("type")
    if kind is None:
        raise ConfigError(f"{where}: key 'type' is missing: set 'type: orchestra'")
    known = provider_types()
    if not isinstance(kind, str) or kind not in known:
        raise ConfigError(f"{where}: key 'type': unknown provider type {kind!r} (known: {', '.join(sorted(known))})")
    warnings = []
    if envfile.world_readable and any(raw.get(k) for k in SECRET_KEYS):
        warnings.append(f"{envfile.path} holds passwords and is readable by other users: chmod 600 {envfile.path}")
    return SelectedEnvironment(chosen, raw, envfile.path, kind, tuple(warnings))
