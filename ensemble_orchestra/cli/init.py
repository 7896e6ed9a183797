"""``ensemble init``: write a sample environments.yaml (mode 0600), never overwriting one."""

from __future__ import annotations

import argparse

from .sample import write_sample

__all__ = ["add_parser", "run"]


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    init = commands.add_parser("init", parents=parents, help="write a sample environments.yaml (never overwrites)")
    init.set_defaults(run=run)


def run(args: argparse.Namespace) -> int | None:
    path = write_sample()
    print(f"wrote a sample environments.yaml to {path}: edit its orchestra environment, then 'ensemble bootstrap'")
    return 0
