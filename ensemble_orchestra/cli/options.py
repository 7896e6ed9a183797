"""The options every command takes, before or after the command name.

Ensemble users type ``ensemble -v -l LOG bootstrap``; others type ``ensemble bootstrap -v``. argparse
hands a sub-command's values over the top-level ones, defaults included, so the sub-commands declare the
options without a default (``SUPPRESS``): a value given after the command wins, one given before it stays.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

__all__ = ["add_global_options"]


def _add(parser: argparse.ArgumentParser, *, top: bool) -> None:
    verbose_default = False if top else argparse.SUPPRESS
    log_default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=verbose_default, help="log everything; tracebacks on errors"
    )
    taken = parser._option_string_actions  # a command's own -l (debug-log's level) keeps it: --log-file only there
    parser.add_argument(
        *(flag for flag in ("-l", "--log-file") if flag not in taken),
        type=Path,
        default=log_default,
        metavar="FILE",
        help="append every log event (debug level) to FILE",
    )


def _command_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every sub-command's parser below *parser*, nested ones included (``lab up``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield sub
                yield from _command_parsers(sub)


def add_global_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give *parser* and every command under it ``-v/--verbose`` and ``-l/--log-file``; returns *parser*.

    Call it once the commands are added. The parsed namespace always has ``verbose`` and ``log_file``.
    """
    _add(parser, top=True)
    for sub in _command_parsers(parser):
        _add(sub, top=False)
    return parser
