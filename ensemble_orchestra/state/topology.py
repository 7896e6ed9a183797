"""The topology: which machines, services and units the environment has, as one immutable value.

It is the content of the ``/topology`` node (YAML), so a change that spans machines, services and units is ONE
version-checked write (see ``topology_node``). Changes are pure functions returning a new Topology: a change
that lost a race is simply run again on the fresh value. Identifiers follow Ensemble: machines are numbered
from a sequence that never goes back (machine 0 is the bootstrap node), units are ``<service>/<n>`` numbered
per service, and services are keyed by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from .errors import StateCorruptError, TopologyError

__all__ = ["FORMAT_VERSION", "ROLES", "Endpoint", "Machine", "Relation", "Service", "Topology", "Unit"]

FORMAT_VERSION = 1
# libyaml when PyYAML has it: 1,000 machines and 2,000 units load in ~0.2 s with the pure-Python loader.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Machine:
    """A machine of the environment (its details, instance id and agent, live in ``/machines/machine-N``)."""

    id: int


@dataclass(frozen=True)
class Unit:
    """One unit of a service, and the machine it is assigned to (None: not yet placed)."""

    name: str  # "<service>/<n>"
    machine: int | None = None
    dying: bool = False  # remove-unit asked for it: its agent runs the stop hook, then it is removed

    @property
    def service(self) -> str:
        return self.name.partition("/")[0]


@dataclass(frozen=True)
class Service:
    """A deployed service: its charm, its units by name, and whether ``expose`` opened it to the world."""

    name: str
    charm: str
    units: Mapping[str, Unit] = field(default_factory=_frozen)
    exposed: bool = False
    force_upgrade: bool = False  # upgrade-charm --force: units in an error state take the new charm too

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", _frozen(self.units))


ROLES = ("server", "client", "peer")  # provides, requires, peers: Ensemble's names for a relation's sides


@dataclass(frozen=True, order=True)
class Endpoint:
    """One side of a relation: a service, the relation's name in its charm (the hooks' prefix), its role."""

    service: str
    name: str
    role: str

    def __str__(self) -> str:
        return f"{self.service}:{self.name}"


@dataclass(frozen=True)
class Relation:
    """A relation between two services' endpoints (one endpoint: a peer relation among a service's units).

    Its hooks see it as ``<endpoint name>:<id>`` (``db:3``): the id is global, from a sequence that never goes
    back, so a relation removed and added again is a new relation to every hook.
    """

    id: int
    interface: str
    endpoints: tuple[Endpoint, ...]
    scope: str = "global"

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoints", tuple(sorted(self.endpoints)))

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(endpoint.service for endpoint in self.endpoints)

    def endpoint(self, service: str) -> Endpoint:
        for endpoint in self.endpoints:
            if endpoint.service == service:
                return endpoint
        raise TopologyError(f"relation {self.id} does not involve service {service}")

    def remote_service(self, service: str) -> str:
        """The other side's service (the service itself for a peer relation)."""
        others = [e.service for e in self.endpoints if e.service != service]
        return others[0] if others else self.endpoint(service).service

    def key(self, service: str) -> str:
        """The relation's id as *service*'s hooks name it: ``db:3``."""
        return f"{self.endpoint(service).name}:{self.id}"

    def describe(self) -> str:
        return " ".join(str(e) for e in self.endpoints) + f" ({self.interface})"


@dataclass(frozen=True)
class Topology:
    """The environment's map; every method returns a new Topology and leaves this one as it was."""

    machines: Mapping[int, Machine] = field(default_factory=_frozen)
    services: Mapping[str, Service] = field(default_factory=_frozen)
    machine_sequence: int = 0  # the next machine id
    unit_sequence: Mapping[str, int] = field(default_factory=_frozen)  # per service: the next unit number
    relations: Mapping[int, Relation] = field(default_factory=_frozen)
    relation_sequence: int = 0  # the next relation id

    def __post_init__(self) -> None:
        for name in ("machines", "services", "unit_sequence", "relations"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    # -- changes ---------------------------------------------------------------------------------

    def add_machine(self) -> Topology:
        """A new machine, numbered from the sequence (``new_machine_id`` of the result tells which)."""
        machine = Machine(self.machine_sequence)
        return dataclasses.replace(
            self, machines={**self.machines, machine.id: machine}, machine_sequence=machine.id + 1
        )

    @property
    def new_machine_id(self) -> int:
        """The id the last ``add_machine`` gave."""
        return self.machine_sequence - 1

    def remove_machine(self, machine_id: int) -> Topology:
        """Without machine *machine_id*; refused while units are assigned to it (and for machine 0)."""
        self._machine(machine_id)
        if machine_id == 0:
            raise TopologyError("machine 0 runs the environment's ZooKeeper and agents: it cannot be removed")
        placed = sorted(unit.name for unit in self.units() if unit.machine == machine_id)
        if placed:
            raise TopologyError(f"machine {machine_id} has units ({', '.join(placed)}): remove them first")
        return dataclasses.replace(self, machines={k: v for k, v in self.machines.items() if k != machine_id})

    def add_service(self, name: str, charm: str) -> Topology:
        if name in self.services:
            raise TopologyError(f"service {name} exists already: choose another name")
        return dataclasses.replace(self, services={**self.services, name: Service(name, charm)})

    def remove_service(self, name: str) -> Topology:
        service = self._service(name)
        if service.units:
            raise TopologyError(f"service {name} has units ({', '.join(sorted(service.units))}): remove them first")
        related = [r.describe() for r in self.relations_of(name) if r.services != (name,)]
        if related:
            raise TopologyError(f"service {name} has relations ({'; '.join(related)}): remove them first")
        relations = {k: v for k, v in self.relations.items() if name not in v.services}  # its peer relations go
        services = {k: v for k, v in self.services.items() if k != name}
        return dataclasses.replace(self, services=services, relations=relations)

    def set_exposed(self, name: str, exposed: bool) -> Topology:
        service = self._service(name)
        if service.exposed == exposed:
            return self
        return dataclasses.replace(
            self, services={**self.services, name: dataclasses.replace(service, exposed=exposed)}
        )

    def upgrade_charm(self, name: str, charm: str, force: bool = False) -> Topology:
        """Service *name* runs *charm* from now on (its units' agents upgrade)."""
        service = dataclasses.replace(self._service(name), charm=charm, force_upgrade=force)
        return dataclasses.replace(self, services={**self.services, name: service})

    def add_relation(self, interface: str, endpoints: tuple[Endpoint, ...], scope: str = "global") -> Topology:
        """A new relation between *endpoints* (``new_relation_id`` of the result tells its id); refused when
        a service is missing or the same endpoints are related already."""
        if len(endpoints) not in (1, 2) or len({e.service for e in endpoints}) != len(endpoints):
            raise TopologyError("a relation joins two services, or one service's peers")
        for endpoint in endpoints:
            self._service(endpoint.service)
            if endpoint.role not in ROLES:
                raise TopologyError(f"endpoint {endpoint}: unknown role {endpoint.role!r}")
        relation = Relation(self.relation_sequence, interface, endpoints, scope)
        for existing in self.relations.values():
            if existing.endpoints == relation.endpoints:
                raise TopologyError(f"{existing.describe()} are related already (relation {existing.id})")
        return dataclasses.replace(
            self, relations={**self.relations, relation.id: relation}, relation_sequence=relation.id + 1
        )

    @property
    def new_relation_id(self) -> int:
        """The id the last ``add_relation`` gave."""
        return self.relation_sequence - 1

    def remove_relation(self, relation_id: int) -> Topology:
        if relation_id not in self.relations:
            raise TopologyError(f"relation {relation_id} does not exist in the environment: see `ensemble status`")
        return dataclasses.replace(self, relations={k: v for k, v in self.relations.items() if k != relation_id})

    def add_unit(self, service_name: str, machine: int | None = None) -> Topology:
        """A new unit of *service_name*, numbered from its sequence, placed on *machine* if given."""
        service = self._service(service_name)
        if machine is not None:
            self._machine(machine)
        number = self.unit_sequence.get(service_name, 0)
        unit = Unit(f"{service_name}/{number}", machine)
        service = dataclasses.replace(service, units={**service.units, unit.name: unit})
        return dataclasses.replace(
            self,
            services={**self.services, service_name: service},
            unit_sequence={**self.unit_sequence, service_name: number + 1},
        )

    def assign_unit(self, unit_name: str, machine: int) -> Topology:
        unit = self.unit(unit_name)
        self._machine(machine)
        return self._with_unit(dataclasses.replace(unit, machine=machine))

    def _with_unit(self, unit: Unit) -> Topology:
        service = self._service(unit.service)
        service = dataclasses.replace(service, units={**service.units, unit.name: unit})
        return dataclasses.replace(self, services={**self.services, service.name: service})

    def mark_dying(self, unit_name: str) -> Topology:
        """*unit_name* is to be removed: its agent runs the stop hook first (``remove_unit`` ends it)."""
        unit = self.unit(unit_name)
        if unit.dying:
            return self
        return self._with_unit(dataclasses.replace(unit, dying=True))

    def remove_unit(self, unit_name: str) -> Topology:
        service = self._service(unit_name.partition("/")[0])
        if unit_name not in service.units:
            raise TopologyError(f"unit {unit_name} does not exist")
        units = {k: v for k, v in service.units.items() if k != unit_name}
        return dataclasses.replace(
            self, services={**self.services, service.name: dataclasses.replace(service, units=units)}
        )

    # -- queries ---------------------------------------------------------------------------------

    def units(self) -> list[Unit]:
        return [unit for service in self.services.values() for unit in service.units.values()]

    def unit(self, unit_name: str) -> Unit:
        """The unit named *unit_name* (TopologyError naming it when there is none)."""
        service = self.services.get(unit_name.partition("/")[0])
        if service is None or unit_name not in service.units:
            raise TopologyError(f"unit {unit_name} does not exist in the environment: see `ensemble status`")
        return service.units[unit_name]

    def service(self, name: str) -> Service:
        """The service named *name* (TopologyError naming it when there is none)."""
        return self._service(name)

    def relations_of(self, service: str) -> list[Relation]:
        """The relations *service* takes part in, by id."""
        return [r for _, r in sorted(self.relations.items()) if service in r.services]

    def units_on(self, machine_id: int) -> list[Unit]:
        return sorted((u for u in self.units() if u.machine == machine_id), key=lambda u: u.name)

    def _machine(self, machine_id: int) -> Machine:
        try:
            return self.machines[machine_id]
        except KeyError:
            raise TopologyError(f"machine {machine_id} does not exist in the environment") from None

    def _service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise TopologyError(f"service {name} does not exist in the environment: see `ensemble status`") from None

    # -- YAML ------------------------------------------------------------------------------------

    def to_yaml(self) -> str:
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "machine-sequence": self.machine_sequence,
            "machines": {machine_id: {} for machine_id in sorted(self.machines)},
            "services": {
                name: _service_document(service) for name, service in sorted(self.services.items())
            },
            "unit-sequence": dict(sorted(self.unit_sequence.items())),
        }
        if self.relations or self.relation_sequence:  # written only when used: older topologies read as before
            document["relation-sequence"] = self.relation_sequence
            document["relations"] = {
                relation_id: _relation_document(relation) for relation_id, relation in sorted(self.relations.items())
            }
        return yaml.dump(document, Dumper=_Dumper, default_flow_style=False, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str | bytes, where: str = "/topology") -> Topology:
        """The topology *text* holds; StateCorruptError (naming *where*) if it is not what ``to_yaml`` writes."""
        if not text:
            return cls()
        try:
            document = yaml.load(text, Loader=_Loader)
            if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
                raise ValueError(f"expected a mapping with version: {FORMAT_VERSION}")
            machines = {int(k): Machine(int(k)) for k in document.get("machines") or {}}
            services = {}
            for name, entry in (document.get("services") or {}).items():
                units = {
                    str(unit): Unit(
                        str(unit),
                        None if info["machine"] is None else int(info["machine"]),
                        bool(info.get("dying", False)),
                    )
                    for unit, info in (entry.get("units") or {}).items()
                }
                services[str(name)] = Service(
                    str(name),
                    str(entry["charm"]),
                    units,
                    bool(entry.get("exposed", False)),
                    bool(entry.get("force-upgrade", False)),
                )
            sequences = {str(k): int(v) for k, v in (document.get("unit-sequence") or {}).items()}
            relations = {
                int(k): _relation_from(int(k), entry) for k, entry in (document.get("relations") or {}).items()
            }
            return cls(
                machines,
                services,
                int(document["machine-sequence"]),
                sequences,
                relations,
                int(document.get("relation-sequence", 0)),
            )
        except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StateCorruptError(
                f"{where} does not hold a topology this version can read ({problem}): repair or re-initialize it"
            ) from None


def _service_document(service: Service) -> dict[str, Any]:
    document: dict[str, Any] = {
        "charm": service.charm,
        "units": {unit.name: _unit_document(unit) for unit in service.units.values()},
    }
    if service.exposed:
        document["exposed"] = True
    if service.force_upgrade:
        document["force-upgrade"] = True
    return document


def _relation_document(relation: Relation) -> dict[str, Any]:
    return {
        "interface": relation.interface,
        "scope": relation.scope,
        "endpoints": [{"service": e.service, "name": e.name, "role": e.role} for e in relation.endpoints],
    }


def _relation_from(relation_id: int, entry: dict[str, Any]) -> Relation:
    endpoints = tuple(Endpoint(str(e["service"]), str(e["name"]), str(e["role"])) for e in entry["endpoints"])
    return Relation(relation_id, str(entry["interface"]), endpoints, str(entry.get("scope", "global")))


def _unit_document(unit: Unit) -> dict[str, Any]:
    document: dict[str, Any] = {"machine": unit.machine}
    if unit.dying:  # written only when set: a topology without dying units reads as before
        document["dying"] = True
    return document
