"""``ensemble scp [-r] SOURCE... DESTINATION``: OpenSSH's scp to and from the environment's machines.

A remote path is ``MACHINE:PATH`` or ``UNIT:PATH`` (``0:/etc/hosts``, ``mysql/0:/var/log/syslog``), as in
Ensemble; a path with no colon, or starting with ``.`` or ``/``, is local (write ``./a:b`` for a local file
whose name has a colon). The machines are resolved as ``ensemble ssh`` resolves them (one state session for
all of them); then this process becomes ``scp`` with the environment's key, login user and known_hosts, so its
progress, exit status and Ctrl-C are scp's own.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ._provider import run_with_provider
from .machine_reach import MachineTarget, machine_targets, parse_machine_or_unit, ssh_options
from .progress import Progress
from .ssh import become, openssh_client

__all__ = ["RemotePath", "add_parser", "parse_location", "run", "scp_argv"]


@dataclass(frozen=True)
class RemotePath:
    """``TARGET:PATH`` on one of the environment's machines (TARGET: a machine id or a unit name)."""

    target: int | str
    path: str


def parse_location(text: str) -> RemotePath | str:
    """A remote path for ``TARGET:PATH``; a local path when *text* has no colon or starts with ``.`` or ``/``.

    Any other ``X:PATH`` must name a machine or a unit: a typo (``mysql/O:``, ``node3:``) is refused rather than
    copied to a local file of that name."""
    head, colon, path = text.partition(":")
    if not colon or text.startswith((".", "/")):
        return text
    try:
        return RemotePath(parse_machine_or_unit(head), path)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error}; for a local path with a colon write ./{text}") from None


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    scp = commands.add_parser(
        "scp",
        parents=parents,
        help="copy files to and from the environment's machines (scp)",
        description="Copy files with scp. A remote path is MACHINE:PATH or UNIT:PATH (0:/etc/hosts,"
        " mysql/0:/var/log/syslog); other paths are local.",
    )
    scp.add_argument("-r", "--recursive", action="store_true", help="copy directories recursively")
    scp.add_argument("locations", nargs="+", type=parse_location, metavar="PATH", help="SOURCE... DESTINATION")
    scp.set_defaults(run=run)


def _host(reach: str) -> str:
    return f"[{reach}]" if ":" in reach else reach  # an IPv6 address


def scp_argv(
    options: list[str],
    user: str,
    locations: list[RemotePath | str],
    targets: dict[int | str, MachineTarget],
    *,
    recursive: bool,
) -> list[str]:
    """scp's argv: each remote path as ``user@host:path`` on its machine."""
    converted = [
        f"{user}@{_host(targets[where.target].reach)}:{where.path}" if isinstance(where, RemotePath) else where
        for where in locations
    ]
    return ["scp", *options, *(["-r"] if recursive else []), *converted]


def run(args: argparse.Namespace) -> int | None:
    locations: list[RemotePath | str] = args.locations
    if len(locations) < 2 or not any(isinstance(where, RemotePath) for where in locations):
        raise UsageError(
            "scp needs SOURCE... DESTINATION with at least one remote path, MACHINE:PATH or UNIT:PATH"
            " (like 0:/etc/hosts or mysql/0:/tmp/x)"
        )
    openssh_client("scp")
    wanted = list(dict.fromkeys(where.target for where in locations if isinstance(where, RemotePath)))

    async def work(provider: Any, progress: Progress, reactor: Any) -> list[str]:
        placed: dict[int | str, int] = {}
        found, missing = await machine_targets(provider, reactor, progress, wanted, placed=placed)
        if missing:
            raise missing[0]
        by_id = {target.machine_id: target for target in found}
        targets = {name: by_id[machine_id] for name, machine_id in placed.items()}
        return scp_argv(ssh_options(provider), provider.config.ssh_user, locations, targets, recursive=args.recursive)

    become(run_with_provider(args, work))
