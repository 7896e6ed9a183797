"""``ensemble``: bootstrap, status and destroy an environment; ``init`` writes a sample environments.yaml.

Each command is a module of this package (bootstrap, status, destroy, init) that adds its parser and
runs it; this one builds the command line and ends every command the same way (see ``_run``).

Exit codes: 0 success, 1 a runtime failure, 2 a usage or configuration error, 130 interrupted.
Configuration is read and checked before anything talks to a server, so a bad environments.yaml
never leaves anything half-done.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import (
    bootstrap,
    debug_log,
    deploy,
    destroy,
    expose,
    init,
    relation,
    remove,
    resolved,
    scp,
    service_config,
    ssh,
    status,
    terminate,
    upgrade,
)
from ._provider import PROG
from ._run import run_command
from .options import add_global_options

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    with_env = argparse.ArgumentParser(add_help=False)
    with_env.add_argument(
        "-e",
        "--environment",
        help="environment from environments.yaml (default: $ENSEMBLE_ENV, default:, the only one)",
    )
    parser = argparse.ArgumentParser(prog=PROG, description="Ensemble service orchestration on bare metal")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for command in (
        bootstrap,
        status,
        deploy,
        remove,
        relation,
        expose,
        service_config,
        resolved,
        upgrade,
        destroy,
        terminate,
        ssh,
        scp,
        debug_log,
    ):
        command.add_parser(commands, [with_env])
    init.add_parser(commands, [])
    return add_global_options(parser)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return run_command(PROG, lambda: args.run(args), verbose=args.verbose, log_file=args.log_file)


if __name__ == "__main__":
    sys.exit(main())
