"""``ensemble upgrade-charm [--repository DIR] [--force] SERVICE``: run a newer revision of the service's charm.

The charm is looked up in the local repository by the service's charm name and series (the highest revision),
published (its revision bumped above every one the environment has seen when its content changed without
one), and checked before anything changes: it must keep every relation the service takes part in and every
option the service's settings set. Then the service's charm changes in the topology and each unit's agent
fetches the new files, runs ``upgrade-charm`` and then ``config-changed``. A unit in an error state upgrades
only with ``--force`` (it stays in its error state; ``resolved`` then runs the new charm's hook) — without it,
once it has left the error state. Ensemble silently skipped such units.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..charm import CharmDirectory, CharmURL, LocalRepository, resolve_repository
from ..errors import UsageError
from ..state.errors import TopologyError
from ..state.services import ServicesState
from ..state.topology import Topology
from ..state.topology_node import TopologyNode
from ._state import run_on_state
from .charm_publish import publish_charm
from .connection import StateConnection
from .names import service_name
from .progress import Progress

__all__ = ["add_parser"]


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    upgrade = commands.add_parser(
        "upgrade-charm", parents=parents, help="run the newest revision of a service's charm from the repository"
    )
    upgrade.add_argument("service", metavar="SERVICE", type=service_name)
    upgrade.add_argument("--repository", metavar="DIR", help="local charm repository (default: $ENSEMBLE_REPOSITORY)")
    upgrade.add_argument("--force", action="store_true", help="upgrade units in an error state too")
    upgrade.set_defaults(run=run)


def _check_compatible(topology: Topology, service: str, directory: CharmDirectory, settings: dict[str, Any]) -> None:
    metadata = directory.metadata
    for relation in topology.relations_of(service):
        endpoint = relation.endpoint(service)
        role = {"server": metadata.provides, "client": metadata.requires, "peer": metadata.peers}[endpoint.role]
        spec = role.get(endpoint.name)
        if spec is None or spec.interface != relation.interface:
            raise UsageError(
                f"upgrade-charm {service}: the new charm has no relation {endpoint.name} ({relation.interface})"
                f" that relation {relation.id} uses: remove that relation first, or keep it in the charm"
            )
    for key in sorted(settings):
        if key not in directory.config.options:
            raise UsageError(
                f"upgrade-charm {service}: the new charm has no option {key!r}, which the service sets:"
                f" reset it first (ensemble set {service} {key}=)"
            )


def run(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        client, identities = connection.client, connection.settings.identities
        topology = await TopologyNode(client).read()
        try:
            service = topology.service(args.service)
        except TopologyError as error:
            raise UsageError(f"upgrade-charm: {error}") from None
        current = CharmURL.parse(service.charm, provider.config.default_series)
        repository = resolve_repository(args.repository, os.environ)
        if repository is None:
            raise UsageError(f"upgrade-charm {args.service}: no charm repository: give --repository DIR")
        directory = LocalRepository(repository).find(CharmURL("local", current.series, current.name))
        services = ServicesState(client, identities)
        settings, _ = await services.read_settings(args.service)
        _check_compatible(topology, args.service, directory, settings)
        charm = await publish_charm(
            client, identities, provider.get_file_storage(), directory, current.series, True, progress
        )
        if charm.id == service.charm:
            progress.done()
            print(f"{args.service} runs {charm.id} already: the repository's charm is the same")
            return
        try:
            new = await TopologyNode(client).change(lambda t: t.upgrade_charm(args.service, charm.id, args.force))
        except TopologyError as error:  # destroyed meanwhile
            raise UsageError(f"upgrade-charm: {error}") from None
        units = sorted(new.service(args.service).units)
        records = await services.units.read_many(units)
        waiting = [u for u in units if (r := records[u]) is not None and r.in_error and not args.force]
        progress.done()
        print(f"upgrading {args.service}: {service.charm} -> {charm.id} ({len(units)} unit(s) run upgrade-charm)")
        if waiting:
            print(f"{', '.join(waiting)} in an error state: they upgrade once resolved (or use --force)")

    return run_on_state(args, work)
