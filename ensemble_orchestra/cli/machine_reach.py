"""Where OpenSSH reaches an environment's machines, for ``ensemble ssh`` and ``ensemble debug-log``.

A unit name (``mysql/0``, as in Ensemble) leads to its machine through the topology. A machine id leads to its
provider instance through the state (``/machines/machine-N`` holds the instance the
provisioning agent launched), then to the address the provider reports; where the machines run no agents
(``state-connection: none``) the provider alone says which system is which machine. Every ssh we run or exec
checks host keys against the environment's own known_hosts (the first key of a machine is recorded).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import EnsembleError
from ..provider.errors import EnvironmentNotBootstrapped
from ..state.errors import StateNotFoundError, TopologyError
from ..state.machines import MachinesState
from ..state.topology import Topology
from ..state.topology_node import TopologyNode
from .connection import StateConnection, connect_environment, known_hosts_file
from .names import unit_name

__all__ = [
    "CONNECT_TIMEOUT",
    "MachineNotFound",
    "MachineNotLaunched",
    "MachineTarget",
    "machine_targets",
    "parse_machine_id",
    "parse_machine_or_unit",
    "ssh_options",
]

CONNECT_TIMEOUT = 60.0  # s to reach the environment's state


class MachineNotFound(EnsembleError):
    """No machine with that id in the environment (exit 1)."""


class MachineNotLaunched(EnsembleError):
    """The machine exists but has no system (yet, or any more): nothing to connect to (exit 1)."""


@dataclass(frozen=True)
class MachineTarget:
    """A machine ssh can be pointed at."""

    machine_id: int
    reach: str  # address or DNS name
    system_name: str
    state: str  # the provider's instance state: "provisioned" once installed

    @property
    def label(self) -> str:
        return f"machine-{self.machine_id}"


def parse_machine_id(text: str) -> int:
    """argparse type: a machine id (units are not accepted yet)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(
            f"not a machine id: {text!r} (machines are numbered 0, 1, ...; units are not supported yet)"
        )
    return int(text)


def parse_machine_or_unit(text: str) -> int | str:
    """argparse type: a machine id (``0``) or a unit name (``mysql/0``: the machine it is placed on)."""
    if text.isascii() and text.isdigit():
        return int(text)
    if "/" in text:
        return unit_name(text)
    raise argparse.ArgumentTypeError(
        f"not a machine id or a unit name: {text!r} (machines are numbered 0, 1, ...; units are named like 'mysql/0')"
    )


def ssh_options(provider: Any) -> list[str]:
    """OpenSSH options every connection to the environment's machines uses: its known_hosts (created, 0700
    directory), accept a new machine's first key, refuse a changed one; the environment's key if it has one."""
    known_hosts = known_hosts_file(provider.environment_name)
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    options = ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=accept-new"]
    identity = provider.config.ssh_identity
    if identity is not None:
        options += ["-o", "IdentitiesOnly=yes", "-i", os.fspath(identity)]
    return options


async def machine_targets(
    provider: Any,
    reactor: Any,
    progress: Callable[[str, str], None],
    wanted: Sequence[int | str] | None,
    *,
    timeout: float = CONNECT_TIMEOUT,
    connect: Callable[..., Awaitable[StateConnection]] = connect_environment,
    placed: dict[int | str, int] | None = None,
) -> tuple[list[MachineTarget], list[MachineNotLaunched]]:
    """The *wanted* machines (ids, or unit names for their machines; None: all) that have a system, ordered by
    id, and why the others have none. *placed*, if given, gets each wanted id or unit's machine id.

    Raises MachineNotFound for a wanted id or unit the environment does not have. *connect* opens the state
    (``connect_environment``'s signature).
    """
    wanted = None if wanted is None else list(dict.fromkeys(wanted))
    if provider.config.state_connection == "none":
        units = [w for w in wanted or () if isinstance(w, str)]
        if units:
            name = provider.environment_name
            raise MachineNotFound(
                f"environment '{name}' runs no agents (state-connection: none), so it has no unit {units[0]}:"
                " name a machine id"
            )
        if placed is not None:
            placed.update({w: w for w in wanted or () if isinstance(w, int)})
        return await _from_provider(provider, None if wanted is None else [w for w in wanted if isinstance(w, int)])
    connection = await connect(provider, reactor, progress, timeout)
    try:
        machines = MachinesState(connection.client, connection.settings.identities)
        if wanted is None:
            records = list((await machines.read_all()).values())
        else:
            topology = await TopologyNode(connection.client).read() if any(isinstance(w, str) for w in wanted) else None
            ids = [w if isinstance(w, int) else _unit_machine(provider, topology, w) for w in wanted]
            if placed is not None:
                placed.update(zip(wanted, ids, strict=True))
            records = []
            for machine_id in dict.fromkeys(ids):
                try:
                    records.append(await machines.read(machine_id))
                except StateNotFoundError:
                    raise _not_found(provider, machine_id) from None
    finally:
        await connection.close()
    instances = {m.instance_id: m for m in await provider.get_machines()} if records else {}
    targets, missing = [], []
    for record in sorted(records, key=lambda r: r.id):
        where = f"machine {record.id} of environment '{provider.environment_name}'"
        instance = instances.get(record.provider_machine_id) if record.provider_machine_id else None
        if record.provider_machine_id is None:
            missing.append(MachineNotLaunched(f"{where} has no system yet: the provisioning agent is launching one"))
        elif instance is None:
            missing.append(
                MachineNotLaunched(
                    f"{where}: its system {record.instance_name or record.provider_machine_id} is gone from the"
                    " provider; the provisioning agent launches another"
                )
            )
        else:
            targets.append(_target(record.id, instance))
    return targets, missing


async def _from_provider(provider: Any, wanted: Sequence[int] | None) -> tuple[list[MachineTarget], list[Any]]:
    name = provider.environment_name
    if not await provider.load_state():
        raise EnvironmentNotBootstrapped(
            f"environment '{name}' is not bootstrapped: run 'ensemble bootstrap -e {name}'"
        )
    found = {int(m.machine_id): m for m in await provider.get_machines() if m.machine_id.isdigit()}
    for machine_id in wanted or ():
        if machine_id not in found:
            raise _not_found(provider, machine_id)
    ids = sorted(found) if wanted is None else wanted
    return [_target(i, found[i]) for i in ids], []


def _unit_machine(provider: Any, topology: Topology | None, unit: str) -> int:
    """The id of the machine unit *unit* is placed on (MachineNotFound when there is no such unit or none yet)."""
    assert topology is not None
    name = provider.environment_name
    try:
        placed = topology.unit(unit).machine
    except TopologyError:
        raise MachineNotFound(
            f"no unit {unit} in environment '{name}': 'ensemble status -e {name}' lists its units"
        ) from None
    if placed is None:
        raise MachineNotFound(f"unit {unit} of environment '{name}' has no machine yet: try again shortly")
    return placed


def _target(machine_id: int, instance: Any) -> MachineTarget:
    """(``reach`` and ``system_name`` are the orchestra provider's; another provider's DNS name and id do.)"""
    reach = getattr(instance, "reach", None) or instance.dns_name
    return MachineTarget(machine_id, reach, getattr(instance, "system_name", instance.instance_id), instance.state)


def _not_found(provider: Any, machine_id: int) -> MachineNotFound:
    name = provider.environment_name
    return MachineNotFound(
        f"no machine {machine_id} in environment '{name}': 'ensemble status -e {name}' lists its machines"
    )
