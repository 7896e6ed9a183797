"""``ensemble terminate-machine ID...``: remove machines from the environment; the provisioning agent then
powers their systems off and returns them to the pool.

Refused for machine 0 (it runs the environment) and for machines with units; every id is checked before any
is removed, so a bad id changes nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from ..state.errors import TopologyError
from ..state.machines import MachinesState
from ..state.topology_node import TopologyNode
from ._state import run_on_state
from .connection import StateConnection
from .progress import Progress

__all__ = ["add_parser", "run"]


def _machine_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a machine id: {text!r} (machines are numbered: 1, 2, ...)")
    return int(text)


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    terminate = commands.add_parser(
        "terminate-machine", parents=parents, help="remove machines; their systems go back to the pool"
    )
    terminate.add_argument("machine_ids", nargs="+", type=_machine_id, metavar="ID")
    terminate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        topology = await TopologyNode(connection.client).read()
        for machine_id in args.machine_ids:  # all checked first: a bad id changes nothing
            try:
                topology = topology.remove_machine(machine_id)
            except TopologyError as error:
                raise UsageError(f"terminate-machine: {error}") from None
        machines = MachinesState(connection.client, connection.settings.identities)
        for machine_id in args.machine_ids:
            await machines.remove_machine(machine_id)
            progress.done()
            print(f"machine {machine_id} removed: the provisioning agent powers its system off and releases it")

    return run_on_state(args, work)
