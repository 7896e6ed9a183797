"""``ensemble debug-log``: the agents' log records of the environment's machines, as they are written.

Ensemble's debug-log read records its agents pushed into ZooKeeper; ours reads the agents' own files
(``/var/log/ensemble/<agent>.log``) over OpenSSH, one ``tail -F`` per machine, and filters on the workstation
(``log_filter``), so nothing extra runs or is stored on the machines. Lines are ``machine-N <record line>``.

The backlog (``-n``, ``--replay``) comes file by file (tail's order), then new records as they are written.
Streaming ends on Ctrl-C (exit 130), at ``--limit`` records or after ``--timeout`` seconds (exit 0), or when
every machine's stream has ended (exit 1; each said why in a warning line).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import EnsembleError
from ._provider import PROG, run_with_provider
from .log_filter import LEVELS, LogFilter
from .log_tail import LogTail, tail_argv
from .machine_reach import MachineTarget, machine_targets, parse_machine_id, ssh_options
from .progress import Progress
from .ssh import openssh_client

__all__ = ["DEFAULT_LINES", "NoLogStream", "add_parser", "log_filter_of", "run"]

DEFAULT_LINES = 10
LEVEL_NAMES = tuple(name for name in LEVELS if name != "warning")


class NoLogStream(EnsembleError):
    """No machine's logs could be streamed (none has a system, or every stream ended): exit 1."""


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (0, 1, 2, ...)")
    return int(text)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
        return value

    return parse


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    debug_log = commands.add_parser(
        "debug-log",
        parents=parents,
        help="follow the agents' logs of the environment's machines",
        description="Show the agents' log records of every machine (or the --machine ones) as 'machine-N <line>',"
        " following new ones until Ctrl-C.",
    )
    start = debug_log.add_mutually_exclusive_group()
    start.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=DEFAULT_LINES,
        metavar="LINES",
        help="lines of each agent's log shown before following (default %(default)s; 0: new records only)",
    )
    start.add_argument("-r", "--replay", action="store_true", help="each agent's whole log, then follow")
    debug_log.add_argument(
        "-i",
        "--include",
        action="append",
        default=[],
        metavar="AGENT",
        help="only agents matching this glob (repeatable)",
    )
    debug_log.add_argument(
        "-x",
        "--exclude",
        action="append",
        default=[],
        metavar="AGENT",
        help="not agents matching this glob (repeatable)",
    )
    debug_log.add_argument(
        "-l",
        "--level",
        type=str.lower,
        choices=LEVEL_NAMES,
        default="debug",
        help="lowest level shown (default %(default)s)",
    )
    debug_log.add_argument("--limit", type=_positive(int), metavar="N", help="end after N records")
    debug_log.add_argument(
        "--machine",
        dest="machines",
        type=parse_machine_id,
        action="append",
        metavar="ID",
        help="only this machine (repeatable; default: all)",
    )
    debug_log.add_argument("--timeout", type=_positive(float), metavar="SECONDS", help="end streaming after SECONDS")
    debug_log.set_defaults(run=run)


def log_filter_of(args: argparse.Namespace) -> LogFilter:
    return LogFilter(tuple(args.include), tuple(args.exclude), args.level)


def run(args: argparse.Namespace) -> int | None:
    executable = openssh_client("ssh")
    lines = None if args.replay else args.lines

    async def work(provider: Any, progress: Progress, reactor: Any) -> str:
        targets, missing = await machine_targets(provider, reactor, progress, args.machines)
        progress.done()
        for reason in missing:
            print(f"{PROG}: warning: {reason}", file=sys.stderr)
        if not targets:
            raise NoLogStream(f"no machine of environment '{provider.environment_name}' has a system to read logs on")
        options = ssh_options(provider)

        def argv(target: MachineTarget) -> list[str]:
            return tail_argv(options, provider.config.ssh_user, target.reach, lines)

        tail = LogTail(reactor, sys.stdout, sys.stderr, prog=PROG, limit=args.limit)
        return await tail.run(targets, argv, log_filter_of(args), executable=executable, timeout=args.timeout)

    ended = run_with_provider(args, work)
    if ended == "output closed":  # Python's flush at exit would complain of the closed pipe once more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if ended == "ended":
        raise NoLogStream("every machine's log stream ended (the warnings above say why)")
    return None
