"""``ensemble deploy CHARM [SERVICE]`` and ``ensemble add-unit SERVICE``: services and their units.

deploy finds the charm in the local repository (``--repository``, ``ENSEMBLE_REPOSITORY`` or
``JUJU_REPOSITORY``), checks ``--config`` and ``--constraints`` against it and the provider BEFORE anything
changes, publishes the charm (``charm_publish``), then adds the service and its units in one transaction: each
unit on a new machine, which the provisioning agent launches. With ``--wait`` the command returns once the
units are started (or says which hook failed).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from ..charm import CharmDirectory, CharmURL, LocalRepository, resolve_repository
from ..charm._yaml import load_yaml
from ..charm.url import is_valid_name
from ..constraints import parse_constraints
from ..errors import UsageError
from ..state.endpoints import peer_relations
from ..state.errors import TopologyError
from ..state.services import DEFAULT_HOOK_TIMEOUT, ServiceRecord, ServicesState
from ..state.topology_node import TopologyNode
from ._provider import PROG
from ._state import run_on_state
from .charm_publish import publish_charm
from .connection import StateConnection
from .names import service_name
from .progress import Progress
from .unit_wait import wait_for_units

__all__ = ["add_parser", "positive_int", "seconds", "wait_arguments"]

WAIT_TIMEOUT = 1800.0
RESOLVE_HINT = "fix the charm, then `ensemble resolved --retry {unit}`"


MAX_UNITS = 500  # per command: one transaction carries them all, and ZooKeeper bounds a request at 1 MB


def positive_int(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_UNITS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a number of units from 1 to {MAX_UNITS} (add more with further add-unit commands)"
        )
    return int(text)


def seconds(text: str) -> float:
    """A bound on a wait: NaN and infinity are refused (a wait bounded by them would never end)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds above 0")
    return value


def wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="return once the units are started")
    parser.add_argument(
        "--timeout", type=seconds, default=WAIT_TIMEOUT, help="with --wait: seconds to wait (default %(default)g)"
    )


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    deploy = commands.add_parser("deploy", parents=parents, help="deploy a charm as a service")
    deploy.add_argument("charm", metavar="CHARM", help="local:<series>/<name>[-<revision>] or a bare name")
    deploy.add_argument("service", metavar="SERVICE", nargs="?", help="the service's name (default: the charm's)")
    deploy.add_argument("--repository", help="the local charm repository (default: $ENSEMBLE_REPOSITORY)")
    deploy.add_argument("-n", "--num-units", type=positive_int, default=1, help="units to deploy (default 1)")
    deploy.add_argument("--config", type=Path, help="YAML settings keyed by service name")
    deploy.add_argument("--constraints", default="", help='machine constraints, e.g. "orchestra-classes=db"')
    deploy.add_argument("-u", "--upgrade", action="store_true", help="bump the charm's revision if it changed")
    deploy.add_argument(
        "--hook-timeout",
        type=seconds,
        default=DEFAULT_HOOK_TIMEOUT,
        help="seconds a hook may run before it is killed (default %(default)g)",
    )
    wait_arguments(deploy)
    deploy.set_defaults(run=run_deploy)

    add = commands.add_parser("add-unit", parents=parents, help="add units to a service, each on a new machine")
    add.add_argument("service", metavar="SERVICE", type=service_name)
    add.add_argument("-n", "--num-units", type=positive_int, default=1)
    wait_arguments(add)
    add.set_defaults(run=run_add_unit)


def _find_charm(args: argparse.Namespace, default_series: str) -> tuple[CharmDirectory, CharmURL]:
    url = CharmURL.parse(args.charm, default_series)
    repository = resolve_repository(args.repository, os.environ)
    if repository is None:
        raise UsageError(f"deploy {args.charm}: no charm repository: give --repository DIR or set ENSEMBLE_REPOSITORY")
    return LocalRepository(repository).find(url), url


def _settings(args: argparse.Namespace, directory: CharmDirectory, service: str) -> dict[str, Any]:
    if args.config is None:
        return {}
    try:
        data = args.config.read_bytes()
    except OSError as exc:
        raise UsageError(f"{args.config}: cannot read it ({exc.strerror})") from None
    document = load_yaml(data, str(args.config))  # not UTF-8, not YAML, duplicate keys: one line naming the file
    if not isinstance(document, dict) or not isinstance(document.get(service), dict):
        raise UsageError(
            f"{args.config}: no settings for service {service} (the file is keyed by service name:"
            f" '{service}: {{option: value}}')"
        )
    return dict(directory.config.validate(document[service], f"{args.config}: {service}"))


def run_deploy(args: argparse.Namespace) -> int | None:
    checked: dict[str, Any] = {}

    async def prepare(provider: Any) -> None:  # every argument checked before anything changes
        directory, url = _find_charm(args, provider.config.default_series)
        service = args.service or directory.metadata.name
        if not is_valid_name(service):
            raise UsageError(
                f"deploy: {service!r} is not a valid service name (lowercase letters, digits and dashes;"
                " it starts with a letter and no part after a dash is only digits)"
            )
        checked.update(
            directory=directory,
            series=url.series,
            service=service,
            settings=_settings(args, directory, service),
            constraints=parse_constraints(args.constraints, await provider.get_constraint_set()),
        )
        for warning in directory.warnings():
            print(f"{PROG}: warning: {warning}", file=sys.stderr)  # as the environment's warnings: not output

    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        client, identities = connection.client, connection.settings.identities
        service = checked["service"]
        if service in (await TopologyNode(client).read()).services:
            raise UsageError(f"deploy: service {service} exists already: name another one (deploy CHARM NAME)")
        charm = await publish_charm(
            client,
            identities,
            provider.get_file_storage(),
            checked["directory"],
            checked["series"],
            args.upgrade,
            progress,
        )
        record = ServiceRecord(service, charm.id, checked["constraints"], args.hook_timeout)
        services = ServicesState(client, identities)
        peers = peer_relations(service, checked["directory"].metadata)
        units = await services.deploy(record, checked["settings"], args.num_units, peers)
        progress.done()
        print(f"deployed {service} ({charm.id}): {', '.join(units)}, each on a new machine")
        await _maybe_wait(args, reactor, services, units, progress)

    return run_on_state(args, work, prepare=prepare)


async def _maybe_wait(
    args: argparse.Namespace, reactor: Any, services: ServicesState, units: list[str], progress: Progress
) -> None:
    if args.wait:
        await wait_for_units(reactor, services.units, units, "started", args.timeout, progress, RESOLVE_HINT)
        progress.done()
        print(f"{', '.join(units)} started")


def run_add_unit(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        services = ServicesState(connection.client, connection.settings.identities)
        try:
            units = await services.add_units(args.service, args.num_units)
        except TopologyError as error:  # an unknown service: a usage error, as in set, get, destroy-service
            raise UsageError(f"add-unit: {error}") from None
        progress.done()
        print(f"added {', '.join(units)}, each on a new machine")
        await _maybe_wait(args, reactor, services, units, progress)

    return run_on_state(args, work)
