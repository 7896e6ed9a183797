"""The hook tools' command lines: ``python3 -m ensemble_orchestra.agents.hooks.tools <tool> [args...]``.

Hooks run them by name (``config-get``, ``open-port 80``...) through the wrappers ``install.py`` writes on the
hook's PATH. Each run parses its arguments here (usage errors exit 2 without asking the agent), sends one
request to the unit agent (``protocol.call``), prints the result in the asked format and exits 0; a refusal
is ``<tool>: <reason>`` on stderr and exit 1.

Standard library only, and nothing imported that a tool does not use: a hook may call config-get dozens of
times, so a tool's start is most of its cost (``test_hook_tools`` holds Twisted out of its imports).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .formats import FORMATS, render
from .protocol import LEVELS, UNIT_SETTINGS, HookToolError, Request, call, parse_port

TYPE_CHECKING = False  # typing itself costs a tool's start ~5 ms; mypy reads this as typing's
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, TextIO

__all__ = ["ALIASES", "CLIENT_VARS", "NOT_IN_HOOK", "SOCKET_VARS", "TOOL_NAMES", "main", "parse"]

TOOL_NAMES = (
    "config-get",
    "unit-get",
    "open-port",
    "close-port",
    "ensemble-log",
    "juju-log",
    "relation-get",
    "relation-set",
    "relation-list",
    "relation-ids",
)
PRINTING = ("config-get", "unit-get", "relation-get", "relation-list", "relation-ids")
ALIASES = {"juju-log": "ensemble-log"}  # the name charms written for Ensemble's successor call
SOCKET_VARS = ("ENSEMBLE_AGENT_SOCKET", "JUJU_AGENT_SOCKET")
CLIENT_VARS = ("ENSEMBLE_CLIENT_ID", "JUJU_CLIENT_ID", "JUJU_CONTEXT_ID")
NOT_IN_HOOK = "not running inside a hook (hook tools talk to the unit agent that runs the hook)"

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _port(text: str) -> tuple[int, str]:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (KEY= deletes KEY)")
    return key, value


def _settings_file(path: str) -> dict[str, str]:
    """relation-set --file: a JSON object of strings (JSON is YAML, so Juju's --file takes the same file)."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        found = json.loads(text)
    except (OSError, ValueError) as exc:
        found = exc
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        why = found.strerror if isinstance(found, OSError) else "not a JSON object of strings"
        sys.stderr.write(f"relation-set: --file {path}: {why}\n")  # never the file's text: it holds secrets
        raise SystemExit(2)
    return found  # a value "" deletes its key, as KEY= does


def _relation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-r", "--relation", metavar="ID", help="the relation (default: the hook's own), e.g. db:3")


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=sorted(FORMATS), default="smart", help="how to print (default: smart)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")


def _parser(tool: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=tool)
    if tool == "config-get":
        parser.description = "Print the service's setting KEY, or every setting (an unknown key prints nothing)."
        _output_options(parser)
        parser.add_argument("key", metavar="KEY", nargs="?")
    elif tool == "unit-get":
        parser.description = "Print one of this unit's addresses."
        _output_options(parser)
        parser.add_argument("name", metavar="|".join(UNIT_SETTINGS), choices=UNIT_SETTINGS)
    elif tool in ("open-port", "close-port"):
        action = "Open" if tool == "open-port" else "Close"
        parser.description = f"{action} a port of this unit (opened ports are reachable once the service is exposed)."
        parser.add_argument("port", metavar="PORT[/tcp|udp]", type=_port)
    elif tool == "relation-get":
        parser.description = (
            "Print UNIT's setting KEY in the relation (all its settings for - or no KEY; UNIT defaults to the"
            " hook's remote unit). A setting not set prints nothing."
        )
        _relation_option(parser)
        _output_options(parser)
        parser.add_argument("key", metavar="KEY|-", nargs="?")
        parser.add_argument("unit", metavar="UNIT", nargs="?")
    elif tool == "relation-set":
        parser.description = (
            "Set this unit's settings in the relation (KEY= deletes KEY); the other side sees them once the"
            " hook exits 0."
        )
        _relation_option(parser)
        parser.add_argument(
            "--file",
            metavar="FILE",
            help="also the settings in FILE (- for stdin), a JSON object of strings: keeps values such as"
            " passwords off the command line; KEY=VALUE arguments win",
        )
        parser.add_argument("settings", metavar="KEY=VALUE", nargs="*", type=_setting)
    elif tool == "relation-list":
        parser.description = "Print the remote units in the relation, one per line."
        _relation_option(parser)
        _output_options(parser)
    elif tool == "relation-ids":
        parser.description = "Print the ids of this unit's relations named NAME (default: the hook's relation)."
        _output_options(parser)
        parser.add_argument("name", metavar="NAME", nargs="?")
    else:
        parser.description = "Write MESSAGE to the unit's log (ensemble debug-log shows it)."
        parser.add_argument("-l", "--level", type=str.upper, choices=LEVELS, default="INFO", help="default: INFO")
        parser.add_argument("message", metavar="MESSAGE", nargs="+")
    return parser


def parse(tool: str, argv: Sequence[str]) -> tuple[dict[str, Any], argparse.Namespace]:
    """(the request's args, the parsed options) for *tool* run with *argv*; SystemExit(2) on a usage error."""
    options = _parser(tool).parse_args(list(argv))
    name = ALIASES.get(tool, tool)
    if name == "config-get":
        args: dict[str, Any] = {"key": options.key}
    elif name == "unit-get":
        args = {"name": options.name}
    elif name in ("open-port", "close-port"):
        args = {"port": options.port[0], "protocol": options.port[1]}
    elif name == "relation-get":
        key = None if options.key in (None, "-") else options.key
        args = {"relation-id": options.relation, "key": key, "unit": options.unit}
    elif name == "relation-set":
        settings = _settings_file(options.file) if options.file else {}
        args = {"relation-id": options.relation, "settings": {**settings, **dict(options.settings)}}
    elif name == "relation-list":
        args = {"relation-id": options.relation}
    elif name == "relation-ids":
        args = {"name": options.name}
    else:
        args = {"level": options.level, "message": " ".join(options.message)}
    return args, options


def _first(environ: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        if environ.get(name):
            return environ[name]
    return None


def _emit(options: argparse.Namespace, text: str, stdout: TextIO) -> None:
    if options.output:
        with open(options.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    elif text:
        stdout.write(text)
        stdout.flush()


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the tool named by ``argv[0]`` with the rest of *argv*; the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if not argv or argv[0] not in TOOL_NAMES:
        given = repr(argv[0]) if argv else "none"
        stderr.write(f"hook tools: unknown tool {given}: use one of {', '.join(TOOL_NAMES)}\n")
        return EXIT_USAGE
    tool = argv[0]
    try:
        args, options = parse(tool, argv[1:])
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    socket_path = _first(environ, SOCKET_VARS)
    if socket_path is None:
        stderr.write(f"{tool}: {NOT_IN_HOOK}\n")
        return EXIT_FAILURE
    client_id = _first(environ, CLIENT_VARS)
    if client_id is None:
        stderr.write(f"{tool}: {NOT_IN_HOOK}: {' and '.join(CLIENT_VARS)} are not set\n")
        return EXIT_FAILURE
    name = ALIASES.get(tool, tool)
    try:
        result = call(socket_path, Request(client_id, name, args))
        if name in PRINTING:
            _emit(options, render(options.format, result, args.get("key") or args.get("name")), stdout)
    except HookToolError as exc:
        stderr.write(f"{tool}: {exc}\n")
        return EXIT_FAILURE
    except OSError as exc:  # -o FILE, or a closed standard output
        stderr.write(f"{tool}: cannot write {options.output or 'standard output'}: {exc.strerror or exc}\n")
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
