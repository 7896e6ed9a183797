"""``ensemble expose SERVICE`` / ``unexpose SERVICE``: open (close) a service's ports to the world.

A unit's ports are those its hooks opened (``open-port``). Each machine's agent keeps a host firewall
(nftables) that refuses inbound traffic except SSH, what the environment's agents need, the ports of its units
to the machines of related units, and — once the service is exposed — those ports from anywhere. The flag is
part of the topology, so every machine agent sees the change at once (docs/agents.md states the bound).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from ..state.errors import TopologyError
from ..state.topology_node import TopologyNode
from ..state.units import UnitsState, sort_ports
from ._state import run_on_state
from .connection import StateConnection
from .names import service_name
from .progress import Progress

__all__ = ["add_parser"]


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    expose = commands.add_parser("expose", parents=parents, help="open a service's ports to the world")
    unexpose = commands.add_parser("unexpose", parents=parents, help="close a service's ports to the world")
    for parser, exposed in ((expose, True), (unexpose, False)):
        parser.add_argument("service", metavar="SERVICE", type=service_name)
        parser.set_defaults(run=run, exposed=exposed)


def run(args: argparse.Namespace) -> int | None:
    command = "expose" if args.exposed else "unexpose"

    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        try:
            topology = await TopologyNode(connection.client).change(
                lambda t: t.set_exposed(args.service, args.exposed)
            )
        except TopologyError as error:
            raise UsageError(f"{command}: {error}") from None
        units = sorted(topology.service(args.service).units)
        records = await UnitsState(connection.client, connection.settings.identities).read_many(units)
        ports = sort_ports(p for r in records.values() if r is not None for p in r.open_ports)  # by number
        progress.done()
        which = f"its open ports ({', '.join(ports)})" if ports else "the ports its units open"
        if args.exposed:
            print(f"{args.service} is exposed: {which} accept connections from anywhere")
        else:
            print(f"{args.service} is not exposed: {which} accept only the environment's related machines")

    return run_on_state(args, work)
