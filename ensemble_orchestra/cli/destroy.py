"""``ensemble destroy-environment``: release every machine of the environment and delete its state.

Asks first (unless ``-y``); environments.yaml is read and checked before the question, so the question
names the environment that will really be destroyed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._provider import run_with_provider
from .connection import known_hosts_file
from .environment import select_environment
from .progress import Progress

__all__ = ["add_parser", "run"]


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    destroy = commands.add_parser(
        "destroy-environment", parents=parents, help="release every machine of the environment and its state"
    )
    destroy.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    destroy.set_defaults(run=run)


def run(args: argparse.Namespace) -> int | None:
    selected = select_environment(args.environment)  # checked (and named) before asking
    if not args.yes and not _confirm(selected.name, selected.provider_type):
        print("destroy-environment: cancelled, nothing was changed", file=sys.stderr)
        return 1
    return run_with_provider(args, _destroy, selected=selected)


def _confirm(name: str, provider_type: str) -> bool:
    print(
        f"WARNING: this destroys environment '{name}' (type: {provider_type}): every machine it holds is"
        " powered off and returned to the pool, and its state is deleted.",
        file=sys.stderr,
    )
    print("Continue [y/N]? ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() in ("y", "yes")


async def _destroy(provider: Any, progress: Progress, reactor: Any) -> None:
    name = provider.environment_name
    released = await provider.destroy_environment()
    known_hosts_file(name).unlink(missing_ok=True)  # the machines' host keys go with them
    progress.done()
    for machine in sorted(released, key=lambda m: m.machine_id):
        print(f"released machine {machine.machine_id}: {machine.system_name} powered off and returned to the pool")
    print(f"environment '{name}' destroyed ({len(released)} machine(s) released, state cleared)")
