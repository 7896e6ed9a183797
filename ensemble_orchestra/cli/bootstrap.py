"""``ensemble bootstrap``: start the environment's first machine; with ``--wait``, until its install is done.

The constraints are checked against the provider's names on the reactor (the provider may have to ask
for them), before anything talks to a server: a bad constraint is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from twisted.internet.defer import CancelledError

from ..constraints import parse_constraints
from ..errors import Interrupted
from ..provider.errors import ProviderError
from ..schedule import Schedule
from ..state.layout import PROVISIONING_LOCK
from ..state.machines import MachinesState
from ._provider import run_with_provider
from .connection import connect_environment, known_hosts_file
from .progress import Progress

__all__ = ["WAIT_POLLS", "WaitTimeout", "add_parser", "run"]

WAIT_POLLS = (1.0, 1.0, 2.0, 2.0, 5.0)
AGENT_POLLS = (0.5, 1.0, 2.0)  # seconds between install checks; the last repeats up to --wait-timeout


def _positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above zero (a NaN or infinite bound would never end a wait)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of seconds, not {text!r}")
    return value


class WaitTimeout(ProviderError):
    """`bootstrap --wait` gave up: the machine is bootstrapped, its install did not finish in time."""


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    boot = commands.add_parser("bootstrap", parents=parents, help="start the environment's first machine")
    boot.add_argument("--constraints", default="", help='e.g. "arch=amd64 orchestra-classes=rack1"')
    boot.add_argument(
        "--wait", action="store_true", help="return only when machine 0 is installed, initialized and its agents run"
    )
    boot.add_argument(
        "--wait-timeout",
        type=_positive_seconds,
        default=3600.0,
        help="seconds --wait waits for the install (default %(default)g)",
    )
    boot.set_defaults(run=run)


def run(args: argparse.Namespace) -> int | None:
    constraints: dict[str, str] = {}

    async def check_constraints(provider: Any) -> None:
        known = await provider.get_constraint_set()
        constraints.update(parse_constraints(args.constraints, known))

    async def work(provider: Any, progress: Progress, reactor: Any) -> None:
        await _bootstrap(provider, args, constraints, progress, reactor)

    return run_with_provider(args, work, prepare=check_constraints)


async def _bootstrap(
    provider: Any, args: argparse.Namespace, constraints: dict[str, str], progress: Progress, reactor: Any
) -> None:
    name = provider.environment_name
    started = reactor.seconds()
    known_hosts_file(name).unlink(missing_ok=True)  # machine 0 gets new host keys with every install
    try:
        [machine] = await provider.bootstrap(constraints)
    except CancelledError:
        progress.done()
        raise Interrupted(f"bootstrap of '{name}' rolled back: no system was left claimed") from None
    progress.done()
    print(
        f"bootstrapped environment '{name}': machine 0 is {machine.system_name} ({machine.dns_name},"
        f" instance {machine.instance_id}), powered on and installing"
    )
    if not args.wait:
        print(f"'ensemble status -e {name}' shows when its install has finished")
        return
    try:
        await _wait_for_install(provider, machine, args.wait_timeout, progress, reactor)
        progress.done()
        print(f"machine 0 ({machine.dns_name}) finished installing: netboot is off, it boots from disk")
        if provider.config.state_connection == "none":  # its machines run no agents
            return
        left = max(args.wait_timeout - (reactor.seconds() - started), 1.0)
        await _wait_for_agents(provider, left, progress, reactor)
    except CancelledError:
        progress.done()
        raise Interrupted(
            f"stopped waiting; environment '{name}' stays bootstrapped ('ensemble status -e {name}')"
        ) from None
    progress.done()
    print(
        f"environment '{name}' is initialized: ZooKeeper, the machine agent and the provisioning agent run on machine 0"
    )


async def _wait_for_install(provider: Any, machine: Any, timeout: float, progress: Progress, reactor: Any) -> None:
    """Poll until the installer turned netboot off (state `provisioned`), bounded by *timeout*."""
    run = Schedule(WAIT_POLLS, timeout=timeout).start(reactor)
    while True:
        [current] = await provider.get_machines([machine.instance_id])
        if current.state == "provisioned":
            return
        progress("installing", f"{machine.system_name} (netboot still on)")
        if not await run.wait():
            raise WaitTimeout(
                f"{machine.system_name} did not finish installing within {timeout:g} s (netboot is still on):"
                " check its console; the environment stays bootstrapped"
            )


async def _wait_for_agents(provider: Any, timeout: float, progress: Progress, reactor: Any) -> None:
    """Until machine 0's machine agent registered and the provisioning agent holds its lock; bounded."""
    connection = await connect_environment(provider, reactor, progress, timeout)
    try:
        machines = MachinesState(connection.client, connection.settings.identities)
        run = Schedule(AGENT_POLLS, timeout=timeout).start(reactor)
        while True:
            machine_agent = await machines.presence(0)
            provisioning = await connection.client.exists(PROVISIONING_LOCK)
            if machine_agent is not None and provisioning is not None:
                return
            waiting = [
                n for n, up in (("machine agent", machine_agent), ("provisioning agent", provisioning)) if not up
            ]
            progress("waiting for the agents", f"{' and '.join(waiting)} on {connection.machine.system_name}")
            if not await run.wait():
                missing = " and the ".join(waiting)
                raise WaitTimeout(
                    f"machine 0 ({connection.machine.system_name}): the {missing} did not start within {timeout:g} s:"
                    f" see /var/log/ensemble/ on it ('ensemble debug-log -e {provider.environment_name}')"
                )
    finally:
        await connection.close()
