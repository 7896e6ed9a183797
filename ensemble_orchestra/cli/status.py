"""``ensemble status``: the environment's machines (and, later, services and units), in Ensemble's layout.

From ZooKeeper (through the tunnel to machine 0) joined with one provider call; an environment whose
machines run no agents (``state-connection: none``) shows the provider's view only.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from ..state.machines import MachinesState
from ..state.status import environment_status
from ._provider import run_with_provider
from .connection import connect_environment, machine_zero, zookeeper_instance
from .progress import Progress

__all__ = ["CONNECT_TIMEOUT", "add_parser", "provider_status", "run"]

CONNECT_TIMEOUT = 60.0


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    status = commands.add_parser("status", parents=parents, help="the environment's machines, services and units")
    status.add_argument("--format", choices=("yaml", "json"), default="yaml")
    status.add_argument(
        "--timeout", type=float, default=CONNECT_TIMEOUT, help="seconds to reach the state (default %(default)g)"
    )
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int | None:
    async def work(provider: Any, progress: Progress, reactor: Any) -> None:
        document = await _status(provider, progress, reactor, args.timeout)
        progress.done()
        if args.format == "json":
            print(json.dumps(document, indent=2, sort_keys=True))
        else:
            print(yaml.safe_dump(document, default_flow_style=False, sort_keys=False), end="")

    return run_with_provider(args, work)


def provider_status(machines: list[Any]) -> dict[str, Any]:
    """The provider's view alone (machines that run no agents)."""

    def key(machine_id: str) -> int | str:
        return int(machine_id) if machine_id.isdigit() else machine_id

    ordered = sorted(machines, key=lambda m: (int(m.machine_id), "") if m.machine_id.isdigit() else (-1, m.machine_id))
    return {
        "machines": {
            key(m.machine_id): {"dns-name": m.dns_name, "instance-id": m.instance_id, "instance-state": m.state}
            for m in ordered
        },
        "services": {},
    }


async def _status(provider: Any, progress: Progress, reactor: Any, timeout: float) -> dict[str, Any]:
    if provider.config.state_connection == "none":
        await zookeeper_instance(provider)  # bootstrapped?
        return provider_status(await provider.get_machines())
    instances = await provider.get_machines()  # the one provider call: machine 0 is among them
    zero = await machine_zero(provider, instances)
    if zero.state != "provisioned":  # no ZooKeeper yet: what the provider knows
        document = provider_status(instances)
        for entry in document["machines"].values():
            entry["agent-state"] = "not-started"
        return document
    connection = await connect_environment(provider, reactor, progress, timeout, machine=zero)
    try:
        machines = MachinesState(connection.client, connection.settings.identities)
        return await environment_status(connection.client, machines, instances)
    finally:
        await connection.close()
