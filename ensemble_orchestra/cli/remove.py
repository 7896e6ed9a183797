"""``ensemble remove-unit UNIT...`` and ``ensemble destroy-service SERVICE``.

A unit leaves in two steps, so that its charm can clean up (Ensemble never ran the stop hook): it is marked
dying, its agent runs the stop hook and reports ``stopped``; then the unit, its nodes and its machine (each
unit has its own) go in one transaction, and the provisioning agent releases the machine to the pool. The wait
is bounded (``--timeout``); a unit whose stop hook fails stays (``ensemble resolved`` it, then run the command
again); ``--force`` skips the stop hook, for a unit whose machine is gone.
A unit that never got an agent (its machine never came up) is removed at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from ..state.errors import TopologyError
from ..state.services import ServicesState
from ..state.topology import Topology
from ..state.topology_node import TopologyNode
from ..state.units import UnitRecord
from ._state import run_on_state
from .connection import StateConnection
from .deploy import seconds
from .names import service_name, unit_name
from .progress import Progress
from .unit_wait import UnitWaitTimeout, wait_for_units

__all__ = ["add_parser"]

STOP_TIMEOUT = 600.0
STOP_HINT = "run `ensemble resolved {unit}` (or fix the charm and `resolved --retry`), then remove it again"


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    remove = commands.add_parser(
        "remove-unit", parents=parents, help="stop units (their stop hook runs) and release their machines"
    )
    remove.add_argument("units", nargs="+", metavar="UNIT", type=unit_name)
    _removal_arguments(remove)
    remove.set_defaults(run=run_remove_unit)
    destroy = commands.add_parser("destroy-service", parents=parents, help="remove a service and all its units")
    destroy.add_argument("service", metavar="SERVICE", type=service_name)
    _removal_arguments(destroy)
    destroy.set_defaults(run=run_destroy_service)


def _removal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="do not wait for the stop hook (a dead machine)")
    parser.add_argument(
        "--timeout", type=seconds, default=STOP_TIMEOUT, help="seconds to wait for stop hooks (default %(default)g)"
    )


def _check_units(topology: Topology, names: Sequence[str]) -> None:
    for name in names:
        try:
            topology.unit(name)
        except TopologyError as error:
            raise UsageError(f"remove-unit: {error}") from None


async def _stop_and_remove(
    reactor: Any,
    services: ServicesState,
    names: list[str],
    args: argparse.Namespace,
    progress: Progress,
    service: str | None = None,
) -> list[int]:
    if names or service is not None:
        await services.mark_dying(names, service=service)  # destroy-service: its relations go first
    if names and not args.force:
        records = await services.units.read_many(names)
        connected = await services.units.connected(names)
        # A unit that never had an agent (still pending, none connected) has nothing to stop.
        live = [name for name in names if connected[name] or _state(records[name]) not in (None, "pending")]
        if live:
            try:
                await wait_for_units(reactor, services.units, live, "stopped", args.timeout, progress, STOP_HINT)
            except UnitWaitTimeout as late:
                raise UnitWaitTimeout(f"{late}; a unit whose machine is gone can be removed with --force") from None
    return await services.remove_units(names, service=service)


def _state(record: UnitRecord | None) -> str | None:
    return None if record is None else record.agent_state


def run_remove_unit(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        services = ServicesState(connection.client, connection.settings.identities)
        names = list(dict.fromkeys(args.units))  # a unit named twice is removed once
        _check_units(await TopologyNode(connection.client).read(), names)
        machines = await _stop_and_remove(reactor, services, names, args, progress)
        progress.done()
        print(f"removed {', '.join(names)}{_released(machines)}")

    return run_on_state(args, work)


def _released(machines: list[int]) -> str:
    return f"; machine {', '.join(map(str, machines))} goes back to the pool" if machines else ""


def run_destroy_service(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        services = ServicesState(connection.client, connection.settings.identities)
        try:
            service = (await TopologyNode(connection.client).read()).service(args.service)
        except TopologyError as error:
            raise UsageError(f"destroy-service: {error}") from None
        names = sorted(service.units)
        machines = await _stop_and_remove(reactor, services, names, args, progress, service=args.service)
        progress.done()
        print(f"destroyed {args.service}{_released(machines)}")

    return run_on_state(args, work)
