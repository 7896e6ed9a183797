"""`ensemble scp`: which paths are remote, what scp is given, and bad input as one line, exit 2."""

from __future__ import annotations

import argparse

import pytest

from ensemble_orchestra.cli import ensemble
from ensemble_orchestra.cli.machine_reach import MachineTarget
from ensemble_orchestra.cli.scp import RemotePath, parse_location, scp_argv


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("0:/etc/hosts", RemotePath(0, "/etc/hosts")),
        ("12:", RemotePath(12, "")),  # the login user's home
        ("mysql/0:/var/log/syslog", RemotePath("mysql/0", "/var/log/syslog")),
        ("wordpress-db/3:notes.txt", RemotePath("wordpress-db/3", "notes.txt")),
        ("./a:b", "./a:b"),  # a local file with a colon in its name
        ("/tmp/a:b", "/tmp/a:b"),
        ("report.txt", "report.txt"),
    ],
)
def test_remote_paths_name_a_machine_or_a_unit(text: str, location: RemotePath | str) -> None:
    assert parse_location(text) == location


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("mysql/x:/tmp", "'mysql/x' is not a unit name"),
        ("node003:/tmp", "not a machine id or a unit name: 'node003'"),  # scp's host:path is not offered
        (":x", "not a machine id or a unit name: ''"),
        ("a/b:c", "'a/b' is not a unit name"),
    ],
)
def test_anything_else_before_a_colon_is_refused_not_copied_to_a_local_file(text: str, says: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse_location(text)
    assert says in str(refused.value) and f"write ./{text}" in str(refused.value)


def test_scp_argv_puts_each_remote_path_on_its_machine() -> None:
    targets = {
        0: MachineTarget(0, "10.0.0.10", "node001", "provisioned"),
        "mysql/0": MachineTarget(2, "fd00::2", "node003", "provisioned"),
    }
    locations: list[RemotePath | str] = [RemotePath(0, "/etc/hosts"), "local.txt", RemotePath("mysql/0", "/tmp/")]
    argv = scp_argv(["-o", "X=1"], "debian", locations, targets, recursive=True)
    assert argv == ["scp", "-o", "X=1", "-r", "debian@10.0.0.10:/etc/hosts", "local.txt", "debian@[fd00::2]:/tmp/"]
    assert "-r" not in scp_argv([], "debian", locations, targets, recursive=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["scp", "only-one"],
        ["scp", "a", "b"],  # nothing remote
        ["scp", "0:/etc/hosts"],  # no destination
    ],
)
def test_bad_arguments_are_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert ensemble.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least one remote path, MACHINE:PATH or UNIT:PATH" in err
