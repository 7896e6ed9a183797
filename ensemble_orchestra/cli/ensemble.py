"""``ensemble``: bootstrap, status and destroy an environment; ``init`` writes a sample environments.yaml.

Exit codes: 0 success, 1 a runtime failure, 2 a usage or configuration error, 130 interrupted.
Configuration is read and checked before anything talks to a server, so a bad environments.yaml
never leaves anything half-done.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from .. import __version__
from ..cobbler import CobblerError
from ..config import ConfigError
from ..constraints import ConstraintError, parse_constraints
from ..provider.errors import EnvironmentNotBootstrapped, ProviderError
from ..storage import StorageError
from ._run import Interrupted, UsageError, run_command
from .environment import SelectedEnvironment, select_environment
from .logs import start_logging
from .progress import Progress
from .reactor_run import run_on_reactor
from .sample import write_sample

__all__ = ["main"]

PROG = "ensemble"
WAIT_POLLS = (1.0, 1.0, 2.0, 2.0, 5.0)  # seconds between install checks; the last repeats


class WaitTimeout(ProviderError):
    """`bootstrap --wait` gave up: the machine is bootstrapped, its install did not finish in time."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log everything; tracebacks on errors")
    common.add_argument("--log-file", type=Path, help="append every log event (debug level) to this file")
    with_env = argparse.ArgumentParser(add_help=False, parents=[common])
    with_env.add_argument(
        "-e",
        "--environment",
        help="environment from environments.yaml (default: $ENSEMBLE_ENV, default:, the only one)",
    )

    parser = argparse.ArgumentParser(prog=PROG, description="Ensemble service orchestration on bare metal")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", dest="global_verbose", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    boot = commands.add_parser("bootstrap", parents=[with_env], help="start the environment's first machine")
    boot.add_argument("--constraints", default="", help='e.g. "arch=amd64 orchestra-classes=rack1"')
    boot.add_argument("--wait", action="store_true", help="return only when the machine finished installing")
    boot.add_argument(
        "--wait-timeout", type=float, default=3600.0, help="seconds --wait waits for the install (default %(default)g)"
    )

    status = commands.add_parser("status", parents=[with_env], help="the environment's machines")
    status.add_argument("--format", choices=("yaml", "json"), default="yaml")

    destroy = commands.add_parser(
        "destroy-environment", parents=[with_env], help="release every machine of the environment and its state"
    )
    destroy.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    commands.add_parser("init", parents=[common], help="write a sample environments.yaml (never overwrites)")
    return parser


# -- the commands ---------------------------------------------------------------------------------


def _known_constraints(provider: Any) -> tuple[str, ...]:
    """The provider's constraint names, before the reactor runs (its answer needs no server)."""
    answer = ensureDeferred(provider.get_constraint_set())
    names: list[Any] = []
    answer.addBoth(names.append)
    if not names or isinstance(names[0], Failure):
        raise UsageError(f"the {provider.provider_type} provider did not list its constraints")
    return tuple(names[0])


async def _bootstrap(
    provider: Any, args: argparse.Namespace, constraints: dict[str, str], progress: Progress, reactor: Any
) -> None:
    name = provider.environment_name
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
    except CancelledError:
        progress.done()
        raise Interrupted(
            f"stopped waiting; environment '{name}' stays bootstrapped ('ensemble status -e {name}')"
        ) from None
    progress.done()
    print(f"machine 0 ({machine.dns_name}) finished installing: netboot is off, it boots from disk")


async def _wait_for_install(provider: Any, machine: Any, timeout: float, progress: Progress, reactor: Any) -> None:
    """Poll until the installer turned netboot off (state `provisioned`), bounded by *timeout*."""
    started = reactor.seconds()
    for attempt in range(sys.maxsize):
        [current] = await provider.get_machines([machine.instance_id])
        if current.state == "provisioned":
            return
        waited = reactor.seconds() - started
        if waited >= timeout:
            raise WaitTimeout(
                f"{machine.system_name} did not finish installing within {timeout:g} s (netboot is still on):"
                " check its console; the environment stays bootstrapped"
            )
        progress("installing", f"{machine.system_name} (netboot still on)")
        await deferLater(reactor, min(WAIT_POLLS[min(attempt, len(WAIT_POLLS) - 1)], timeout - waited))


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


async def _status(provider: Any, args: argparse.Namespace) -> None:
    name = provider.environment_name
    if not await provider.load_state():
        raise EnvironmentNotBootstrapped(
            f"environment '{name}' is not bootstrapped: run 'ensemble bootstrap -e {name}'"
        )
    document = status_document(await provider.get_machines())
    if args.format == "json":
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(yaml.safe_dump(document, default_flow_style=False, sort_keys=False), end="")


async def _destroy(provider: Any, args: argparse.Namespace, progress: Progress) -> None:
    name = provider.environment_name
    released = await provider.destroy_environment()
    progress.done()
    for machine in sorted(released, key=lambda m: m.machine_id):
        print(f"released machine {machine.machine_id}: {machine.system_name} powered off and returned to the pool")
    print(f"environment '{name}' destroyed ({len(released)} machine(s) released, state cleared)")


def _confirm_destroy(name: str, provider_type: str) -> bool:
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


# -- running ---------------------------------------------------------------------------------------


def _with_provider(
    args: argparse.Namespace,
    work: Callable[[Any, Progress, Any], Any],
    check: Callable[[Any], None] | None = None,
    selected: SelectedEnvironment | None = None,
) -> int | None:
    """Select the environment, build its provider and *check* the arguments against it (config and usage
    errors: exit 2, before anything runs), then run *work* on the reactor."""
    from twisted.internet import reactor

    selected = selected or select_environment(args.environment)
    provider = selected.create_provider(reactor)
    if check is not None:
        check(provider)
    for warning in selected.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    progress = Progress(sys.stderr)
    provider.progress = progress

    async def body(reactor: Any) -> Any:
        try:
            return await work(provider, progress, reactor)
        finally:
            progress.done()
            close = getattr(provider, "close", None)
            if close is not None:
                await close()

    return run_on_reactor(body, reactor)


def _dispatch(args: argparse.Namespace) -> int | None:
    if args.command == "init":
        path = write_sample()
        print(f"wrote a sample environments.yaml to {path}: edit its orchestra environment, then 'ensemble bootstrap'")
        return 0
    if args.command == "bootstrap":
        constraints: dict[str, str] = {}

        def check(provider: Any) -> None:
            constraints.update(parse_constraints(args.constraints, _known_constraints(provider)))

        return _with_provider(
            args, lambda p, progress, reactor: _bootstrap(p, args, constraints, progress, reactor), check
        )
    if args.command == "status":
        return _with_provider(args, lambda p, progress, reactor: _status(p, args))
    if args.command == "destroy-environment":
        selected = select_environment(args.environment)  # checked (and named) before asking
        if not args.yes and not _confirm_destroy(selected.name, selected.provider_type):
            print("destroy-environment: cancelled, nothing was changed", file=sys.stderr)
            return 1
        return _with_provider(args, lambda p, progress, reactor: _destroy(p, args, progress), selected=selected)
    raise UsageError(f"unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    verbose = args.verbose or args.global_verbose
    stop_logging = start_logging(PROG, verbose=verbose, log_file=args.log_file)
    try:
        return run_command(
            PROG,
            lambda: _dispatch(args),
            verbose=verbose,
            expected=(ProviderError, CobblerError, StorageError, OSError),  # OSError: init's FileExistsError
            usage=(ConfigError, ConstraintError),
        )
    finally:
        stop_logging()


if __name__ == "__main__":
    sys.exit(main())
