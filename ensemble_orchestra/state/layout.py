"""The environment's tree: every node's path, and the YAML documents the nodes hold.

docs/state.md lists each node, its content, its ACL and who writes it; the paths follow Ensemble's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import yaml

from .errors import StateCorruptError

__all__ = [
    "AGENTS",
    "CHARMS",
    "CONTAINERS",
    "ENVIRONMENT",
    "INITIALIZED",
    "MACHINES",
    "PROVISIONING_LOCK",
    "SERVICES",
    "SETTINGS",
    "TOPOLOGY",
    "UNITS",
    "charm_path",
    "dump_document",
    "load_document",
    "machine_agent_path",
    "machine_id_of",
    "machine_path",
    "service_config_path",
    "service_path",
    "unit_agent_path",
    "unit_key",
    "unit_path",
    "unit_relation_path",
    "unit_relations_path",
    "unit_resolved_path",
]

INITIALIZED = "/initialized"  # created last by `ensemble-admin initialize`: clients wait for it
SETTINGS = "/settings"  # provider type, version, the roles' identities, ZooKeeper's address, the tools
ENVIRONMENT = "/environment"  # the environments.yaml entry (credentials): admin and provisioning agent only
TOPOLOGY = "/topology"  # machines, services, units (topology.py)
MACHINES = "/machines"  # machine-%010d: provider instance of each topology machine; child `agent` = presence
AGENTS = "/agents"  # agents' locks
PROVISIONING_LOCK = "/agents/provisioning"  # ephemeral: held by the one running provisioning agent
SERVICES = "/services"  # <name>: charm, constraints; child `config` = the user's settings
UNITS = "/units"  # <service>-<n>: the unit agent's state and open ports; children `agent`, `resolved`, `relations`
CHARMS = "/charms"  # <quoted charm id>: the published bundle (storage name, URL, sha256), metadata, config schema
# No /relations: a relation is in the topology, and each unit's settings in it are a child of the unit's own node,
# which its agent may write (a relation-wide node would need a CREATE right shared by every machine).
CONTAINERS = (SERVICES, UNITS, CHARMS)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def machine_path(machine_id: int) -> str:
    return f"{MACHINES}/machine-{machine_id:010d}"


def machine_agent_path(machine_id: int) -> str:
    return machine_path(machine_id) + "/agent"


def charm_path(charm_id: str) -> str:
    return f"{CHARMS}/{quote(charm_id, safe='')}"


def service_path(name: str) -> str:
    return f"{SERVICES}/{name}"


def service_config_path(name: str) -> str:
    return f"{SERVICES}/{name}/config"


def unit_key(unit_name: str) -> str:
    """``mysql/0`` → ``mysql-0``: the unit's name in node, directory and service names (unambiguous: a service
    name never ends in ``-<digits>``)."""
    service, _, number = unit_name.partition("/")
    return f"{service}-{number}"


def unit_path(unit_name: str) -> str:
    return f"{UNITS}/{unit_key(unit_name)}"


def unit_agent_path(unit_name: str) -> str:
    return unit_path(unit_name) + "/agent"


def unit_resolved_path(unit_name: str) -> str:
    return unit_path(unit_name) + "/resolved"


def unit_relations_path(unit_name: str) -> str:
    return unit_path(unit_name) + "/relations"


def unit_relation_path(unit_name: str, relation_id: int) -> str:
    """The unit's settings in relation *relation_id*: it exists while the unit is in the relation's scope."""
    return f"{unit_relations_path(unit_name)}/relation-{relation_id:010d}"


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
