"""``ensemble status``: the environment's machines, in Ensemble's layout (YAML, or JSON)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from ..provider.errors import EnvironmentNotBootstrapped
from ._provider import run_with_provider
from .progress import Progress

__all__ = ["add_parser", "run", "status_document"]


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    status = commands.add_parser("status", parents=parents, help="the environment's machines")
    status.add_argument("--format", choices=("yaml", "json"), default="yaml")
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int | None:
    async def work(provider: Any, progress: Progress, reactor: Any) -> None:
        await _status(provider, args.format)

    return run_with_provider(args, work)


def status_document(machines: list[Any]) -> dict[str, Any]:
    """Ensemble's status layout; services and units come with the deploy milestone."""

    def key(machine_id: str) -> int | str:
        return int(machine_id) if machine_id.isdigit() else machine_id

    ordered = sorted(machines, key=lambda m: (int(m.machine_id), "") if m.machine_id.isdigit() else (-1, m.machine_id))
    return {
        "machines": {
            key(m.machine_id): {
                "dns-name": m.dns_name,
                "instance-id": m.instance_id,
                "instance-state": m.state,
            }
            for m in ordered
        },
        "services": {},
    }


async def _status(provider: Any, output_format: str) -> None:
    name = provider.environment_name
    if not await provider.load_state():
        raise EnvironmentNotBootstrapped(
            f"environment '{name}' is not bootstrapped: run 'ensemble bootstrap -e {name}'"
        )
    document = status_document(await provider.get_machines())
    if output_format == "json":
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(yaml.safe_dump(document, default_flow_style=False, sort_keys=False), end="")
