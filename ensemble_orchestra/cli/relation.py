"""``ensemble add-relation A[:rel] B[:rel]`` and ``remove-relation``: relate two services, or stop relating them.

add-relation picks the one provides/requires pair of one interface the two charms offer (``state.endpoints``);
when there is none or more than one, it says what each side has, and nothing changes. The units' agents then
run the relation's hooks (joined, changed) on both sides. remove-relation removes the relation: each unit
runs departed for every remote unit it had seen, then broken.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..charm.metadata import CharmMetadata
from ..errors import UsageError
from ..state.charms import read_charm
from ..state.endpoints import EndpointError, match_relation, parse_endpoint
from ..state.errors import TopologyError
from ..state.relations import RelationsState
from ..state.topology import Relation, Topology
from ..state.topology_node import TopologyNode
from ._state import run_on_state
from .connection import StateConnection
from .names import service_name
from .progress import Progress

__all__ = ["add_parser"]


def endpoint(text: str) -> tuple[str, str | None]:
    """An argparse type: ``SERVICE`` or ``SERVICE:RELATION`` (exit 2 otherwise)."""
    try:
        service, name = parse_endpoint(text)
    except EndpointError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    try:
        return service_name(service), name
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    add = commands.add_parser("add-relation", parents=parents, help="relate two services (their hooks configure)")
    remove = commands.add_parser("remove-relation", parents=parents, help="remove the relation between two services")
    for parser, run in ((add, run_add), (remove, run_remove)):
        parser.add_argument("first", metavar="SERVICE[:RELATION]", type=endpoint)
        parser.add_argument("second", metavar="SERVICE[:RELATION]", type=endpoint)
        parser.set_defaults(run=run)


async def _metadata(connection: StateConnection, topology: Topology, services: list[str]) -> dict[str, CharmMetadata]:
    found: dict[str, CharmMetadata] = {}
    for name in services:
        service = topology.services.get(name)
        if service is None:
            continue  # match_relation names it
        record = await read_charm(connection.client, service.charm)
        found[name] = CharmMetadata.from_dict(record.metadata, f"charm {service.charm}")
    return found


def run_add(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        topology = await TopologyNode(connection.client).read()
        metadata = await _metadata(connection, topology, [args.first[0], args.second[0]])
        try:
            match = match_relation(args.first, args.second, metadata, topology)
            relation = await RelationsState(connection.client, connection.settings.identities).add(
                match.interface, match.endpoints, match.scope
            )
        except (EndpointError, TopologyError) as error:  # TopologyError: added by someone else meanwhile
            raise UsageError(f"add-relation: {error}") from None
        progress.done()
        print(f"added relation {relation.id}: {relation.describe()}")

    return run_on_state(args, work)


def find_relation(topology: Topology, first: tuple[str, str | None], second: tuple[str, str | None]) -> Relation:
    """The one relation between the two endpoints named (a relation name narrows the choice)."""
    found = []
    for relation in topology.relations.values():
        if len(relation.endpoints) != 2 or {first[0], second[0]} != set(relation.services):
            continue
        if all(name is None or relation.endpoint(service).name == name for service, name in (first, second)):
            found.append(relation)
    spelled = " and ".join(s if n is None else f"{s}:{n}" for s, n in (first, second))
    if not found:
        raise UsageError(f"remove-relation: {spelled} are not related: see `ensemble status`")
    if len(found) > 1:
        choices = "; ".join(" ".join(map(str, r.endpoints)) for r in found)
        raise UsageError(f"remove-relation: {spelled} have more than one relation: name one of {choices}")
    return found[0]


def run_remove(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        relation = find_relation(await TopologyNode(connection.client).read(), args.first, args.second)
        try:
            await RelationsState(connection.client, connection.settings.identities).remove(relation.id)
        except TopologyError as error:  # removed by someone else meanwhile
            raise UsageError(f"remove-relation: {error}") from None
        progress.done()
        print(f"removed relation {relation.id}: {relation.describe()} (its units run departed, then broken)")

    return run_on_state(args, work)
