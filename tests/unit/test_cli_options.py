"""-v/--verbose and -l/--log-file before or after the command, on every command of both console scripts;
and setup.cfg's console scripts name functions that exist."""

from __future__ import annotations

import argparse
import configparser
import importlib
from pathlib import Path

import pytest

from ensemble_orchestra.cli import ensemble, orchestra
from ensemble_orchestra.cli.options import add_global_options

# The commands that work on the environment's state (issue 13), each with its arguments.
STATE_COMMANDS = [
    ["deploy", "--repository", "r", "-n", "2", "mysql", "db"],
    ["add-unit", "db", "-n", "2"],
    ["remove-unit", "db/0", "db/1"],
    ["destroy-service", "db"],
    ["set", "db", "a=1", "b="],
    ["get", "db"],
    ["resolved", "--retry", "db/0"],
    ["resolved", "db/0", "db"],
    ["terminate-machine", "1", "2"],
    ["add-relation", "wordpress", "db:db"],
    ["remove-relation", "wordpress:db", "db"],
    ["expose", "db"],
    ["unexpose", "db"],
    ["upgrade-charm", "--repository", "r", "--force", "db"],
    ["scp", "-r", "local", "db/0:/tmp/"],
]
ENSEMBLE_COMMANDS = [["bootstrap", "-e", "x"], ["status"], ["destroy-environment", "-y"], ["init"], *STATE_COMMANDS]
# Not given options after their arguments: ssh's remote command takes every word after MACHINE (its own -v
# included); debug-log's -l is its level (--log-file only there), checked in test_debug_log.py.
TRAILING_WORDS_ARE_THEIRS = {"ssh", "debug-log"}
ORCHESTRA_COMMANDS = [
    ["lab", "up"],
    ["lab", "down"],
    ["lab", "reset"],
    ["lab", "status"],
    ["setup-server", "--cobbler", "http://c/RPC2", "--user", "u"],
]
PARSERS = {"ensemble": ensemble._parser, "ensemble-orchestra": lambda: add_global_options(orchestra._parser())}
ALL = [("ensemble", c) for c in ENSEMBLE_COMMANDS] + [("ensemble-orchestra", c) for c in ORCHESTRA_COMMANDS]


def _parse(script: str, argv: list[str]) -> argparse.Namespace:
    return PARSERS[script]().parse_args(argv)


@pytest.mark.parametrize(("script", "command"), ALL, ids=[f"{s} {' '.join(c[:2])}" for s, c in ALL])
def test_global_options_before_and_after_every_command(script: str, command: list[str]) -> None:
    plain = _parse(script, command)
    assert plain.verbose is False and plain.log_file is None
    for argv in (
        ["-v", "-l", "F", *command],
        ["--verbose", "--log-file", "F", *command],
        [*command, "-v", "-l", "F"],
        [*command, "--verbose", "--log-file", "F"],
        ["-v", *command, "-l", "F"],
        ["-l", "F", *command, "-v"],
    ):
        args = _parse(script, argv)
        assert args.verbose is True and args.log_file == Path("F"), argv


def test_every_ensemble_command_is_checked() -> None:
    """A command added later joins ENSEMBLE_COMMANDS (or says why it cannot)."""
    [commands] = [a for a in ensemble._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    checked = {command[0] for command in ENSEMBLE_COMMANDS} | TRAILING_WORDS_ARE_THEIRS
    assert set(commands.choices) == checked


@pytest.mark.parametrize("command", STATE_COMMANDS, ids=[c[0] for c in STATE_COMMANDS])
def test_the_state_commands_take_the_environment_and_say_what_they_do(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """-e right after the command or after its arguments; --help shows the command's usage, ensemble --help lists
    it."""
    for argv in ([command[0], "-e", "lab", *command[1:]], [*command, "-e", "lab"]):
        args = ensemble._parser().parse_args(argv)
        assert args.environment == "lab" and args.command == command[0], argv
    with pytest.raises(SystemExit) as exited:
        ensemble.main([command[0], "--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: ensemble {command[0]} ") and "-e ENVIRONMENT" in usage
    with pytest.raises(SystemExit):
        ensemble.main(["--help"])
    assert command[0] in capsys.readouterr().out


def test_the_value_after_the_command_wins() -> None:
    args = _parse("ensemble", ["-l", "before.log", "status", "-l", "after.log"])
    assert args.log_file == Path("after.log")
    args = _parse("ensemble-orchestra", ["-l", "before.log", "lab", "-l", "between.log", "status", "-l", "after.log"])
    assert args.log_file == Path("after.log")


def test_between_lab_and_its_command_too() -> None:
    args = _parse("ensemble-orchestra", ["lab", "-v", "-l", "F", "status"])
    assert args.verbose is True and args.log_file == Path("F")


def test_console_scripts_in_setup_cfg_resolve_to_main() -> None:
    """The entry points are kept when commands move between modules."""
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    lines = [line.strip() for line in setup["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    scripts = dict(line.split(" = ") for line in lines)
    assert set(scripts) == {"ensemble", "ensemble-orchestra"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "soon"])
def test_a_wait_timeout_that_could_never_end_or_is_no_number_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--wait-timeout bounds the wait: NaN and infinity would never end it, and a negative one used to be a
    ValueError traceback after the machine was already bootstrapped. Refused before anything runs."""
    with pytest.raises(SystemExit) as exit_:
        ensemble.main(["bootstrap", "--wait", "--wait-timeout", value])
    assert exit_.value.code == 2 and "--wait-timeout" in capsys.readouterr().err


def test_the_old_lab_machines_option_still_selects_the_system_kind() -> None:
    """`lab up --machines qemu` (before the rename) keeps working, hidden; the default is unchanged."""
    parser = orchestra._parser()
    assert parser.parse_args(["lab", "up"]).system_kind == "container"  # the default since issue 11
    assert parser.parse_args(["lab", "up", "--machines", "qemu"]).system_kind == "qemu"
    assert parser.parse_args(["lab", "up", "--system-kind", "qemu"]).system_kind == "qemu"
