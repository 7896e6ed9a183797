"""``ensemble ssh MACHINE|UNIT [COMMAND...]``: OpenSSH to one of the environment's machines (a unit's: the one
it is placed on), as its login user.

The address is resolved on the reactor (state, then provider); once the reactor has stopped and every
connection is closed, this process becomes ``ssh`` (``execvp``): the terminal, the exit status and Ctrl-C are
then ssh's own, exactly as if the user had typed the ssh command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any, NoReturn

from ..errors import EnsembleError
from ._provider import PROG, run_with_provider
from .machine_reach import machine_targets, parse_machine_or_unit, ssh_options
from .progress import Progress

__all__ = ["SSHClientMissing", "add_parser", "become", "openssh_client", "remote_command", "run", "ssh_argv"]


class SSHClientMissing(EnsembleError):
    """OpenSSH's client is not installed on the workstation (exit 1)."""


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    ssh = commands.add_parser(
        "ssh",
        parents=parents,
        help="OpenSSH to a machine of the environment",
        description="Log in to MACHINE (its id, as 'ensemble status' shows it) or to UNIT's machine (mysql/0),"
        " or run COMMAND there.",
    )
    ssh.add_argument(
        "machine_id", type=parse_machine_or_unit, metavar="MACHINE|UNIT", help="machine id or unit"
    )
    ssh.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="run this instead of a login shell")
    ssh.set_defaults(run=run)


def openssh_client(name: str) -> str:
    """The path of OpenSSH's *name* (ssh, scp); SSHClientMissing (one line, exit 1) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        raise SSHClientMissing(f"{name} (OpenSSH's client) is not installed: install openssh-client")
    return found


def become(argv: list[str]) -> NoReturn:
    """Replace this process with *argv* (ssh, scp): the terminal, the exit status and Ctrl-C are then its own."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)  # returns only by raising OSError (reported as one line)


def remote_command(args: argparse.Namespace) -> list[str]:
    """COMMAND as typed (a leading ``--`` separates it from our options; argparse keeps it on some versions)."""
    return args.command[1:] if args.command[:1] == ["--"] else list(args.command)


def ssh_argv(options: list[str], user: str, host: str, command: list[str], *, terminal: bool) -> list[str]:
    """ssh's argv: *terminal* (stdin and stdout are a TTY) asks for one for a *command* (a login has one anyway)."""
    tty = ["-t"] if command and terminal else []
    return ["ssh", *options, *tty, f"{user}@{host}", *command]


def run(args: argparse.Namespace) -> int | None:
    openssh_client("ssh")
    command = remote_command(args)

    async def work(provider: Any, progress: Progress, reactor: Any) -> list[str]:
        targets, missing = await machine_targets(provider, reactor, progress, [args.machine_id])
        if missing:
            raise missing[0]
        [target] = targets
        if target.state != "provisioned":
            progress.done()
            print(
                f"{PROG}: warning: machine {target.machine_id} ({target.system_name}) is still installing:"
                " ssh may not answer yet",
                file=sys.stderr,
            )
        terminal = sys.stdin.isatty() and sys.stdout.isatty()
        return ssh_argv(ssh_options(provider), provider.config.ssh_user, target.reach, command, terminal=terminal)

    become(run_with_provider(args, work))
