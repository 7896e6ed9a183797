"""``ensemble resolved [--retry] UNIT [RELATION]``: let a unit in an error state, or one of its relations, move on.

Without ``--retry`` the unit (or the relation) continues as if the failed hook had worked; with it the hook runs
again (after a fix on the machine, or when the failure was passing). Refused for a unit that is not in an error
state, or a relation without an error on that unit (``status`` shows ``relation-errors``).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from ..state.errors import StateNodeExistsError
from ..state.status import unit_agent_state
from ..state.units import UnitsState
from ._state import run_on_state
from .connection import StateConnection
from .names import unit_name
from .progress import Progress

__all__ = ["add_parser"]


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    resolved = commands.add_parser("resolved", parents=parents, help="let a unit in an error state move on")
    resolved.add_argument("unit", metavar="UNIT", type=unit_name)
    resolved.add_argument("relation", metavar="RELATION", nargs="?", help="a relation in error: its name or id (db:3)")
    resolved.add_argument("--retry", action="store_true", help="run the failed hook again")
    resolved.set_defaults(run=run)


def run(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        units = UnitsState(connection.client, connection.settings.identities)
        record = await units.read_if_there(args.unit)
        if record is None:
            raise UsageError(f"resolved: unit {args.unit} does not exist in the environment: see `ensemble status`")
        if args.relation is not None:
            errors = [
                (key, error)
                for key, error in sorted(record.relation_errors.items())
                if args.relation in (key, error.name)
            ]
            if not errors:
                known = ", ".join(sorted(record.relation_errors)) or "none"
                raise UsageError(
                    f"resolved: unit {args.unit} has no relation {args.relation!r} in error (in error: {known})"
                )
            if len(errors) > 1:
                ids = ", ".join(key for key, _ in errors)
                raise UsageError(
                    f"resolved: unit {args.unit} has more than one relation {args.relation!r} in error:"
                    f" name one of {ids}"
                )
            key, error = errors[0]
            what = f"{args.unit} relation {key}"
            hook: str | None = error.hook
            request: str | None = key
        elif not record.in_error:
            state = unit_agent_state(record, (await units.connected([args.unit]))[args.unit])
            raise UsageError(f"resolved: unit {args.unit} is {state}, not in an error state: nothing to resolve")
        else:
            request, what, hook = None, f"{args.unit} ({record.agent_state})", record.hook
        try:
            await units.request_resolved(args.unit, args.retry, request)
        except StateNodeExistsError:
            raise UsageError(f"resolved: unit {args.unit} has a resolved request pending already") from None
        progress.done()
        print(f"{what} {f'runs hook {hook} again' if args.retry else f'moves on as if hook {hook} worked'}")

    return run_on_state(args, work)
