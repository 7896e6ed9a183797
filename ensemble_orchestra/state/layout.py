"""The environment's tree: every node's path, and the YAML documents the nodes hold.

docs/state.md lists each node, its content, its ACL and who writes it; the paths follow Ensemble's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from .errors import StateCorruptError

__all__ = [
    "AGENTS",
    "CONTAINERS",
    "ENVIRONMENT",
    "INITIALIZED",
    "MACHINES",
    "PROVISIONING_LOCK",
    "SETTINGS",
    "TOPOLOGY",
    "dump_document",
    "load_document",
    "machine_agent_path",
    "machine_id_of",
    "machine_path",
]

INITIALIZED = "/initialized"  # created last by `ensemble-admin initialize`: clients wait for it
SETTINGS = "/settings"  # provider type, version, the roles' identities, ZooKeeper's address, the tools
ENVIRONMENT = "/environment"  # the environments.yaml entry (credentials): admin and provisioning agent only
TOPOLOGY = "/topology"  # machines, services, units (topology.py)
MACHINES = "/machines"  # machine-%010d: provider instance of each topology machine; child `agent` = presence
AGENTS = "/agents"  # agents' locks
PROVISIONING_LOCK = "/agents/provisioning"  # ephemeral: held by the one running provisioning agent
CONTAINERS = ("/services", "/units", "/charms", "/relations")  # filled by the next milestones' commands

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def machine_path(machine_id: int) -> str:
    return f"{MACHINES}/machine-{machine_id:010d}"


def machine_agent_path(machine_id: int) -> str:
    return machine_path(machine_id) + "/agent"


def machine_id_of(name: str) -> int | None:
    """The id in a ``machine-%010d`` child name of /machines (None for anything else)."""
    prefix, _, number = name.partition("-")
    return int(number) if prefix == "machine" and number.isdigit() else None


def dump_document(document: Mapping[str, Any]) -> bytes:
    return yaml.dump(dict(document), Dumper=_Dumper, default_flow_style=False, sort_keys=True).encode()


def load_document(data: bytes, where: str) -> dict[str, Any]:
    """The mapping a node holds ({} for an empty node); StateCorruptError naming *where* otherwise."""
    if not data:
        return {}
    try:
        document = yaml.load(data, Loader=_Loader)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise StateCorruptError(f"{where} is not YAML ({problem}): repair or re-initialize it") from None
    if not isinstance(document, dict):
        raise StateCorruptError(f"{where} does not hold a mapping: repair or re-initialize it")
    return document
