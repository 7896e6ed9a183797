"""`ensemble deploy` on bad input: one line on stderr naming the file, key, charm or service (no traceback), exit
code 2, and nothing done — the provider is asked for its constraint names only, nothing is connected to and
nothing uploaded. Deploy onto an environment that was never bootstrapped: one line saying to bootstrap, nothing
uploaded. Argument errors argparse catches (-n 0, a timeout that could never end): exit 2 naming the option.

Each command runs as its own process (the commands run on the global reactor), with the ``statefake`` provider
type (tests/unit/_cli_state_provider.py); the cases of the table start at once, a process each, and each test
checks its own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ensemble_orchestra.charm.testing import SAMPLE_METADATA, write_charm
from ensemble_orchestra.cli import ensemble

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _cli_state_provider import COMMAND_BOUND, StateCli, error_line  # noqa: E402

Run = tuple[StateCli, subprocess.CompletedProcess[str]]
SECRET_VALUE = "hunter2-Pa55word"  # a value given for an option: never echoed
ADMIN_SECRET = "deploy-input-admin-secret"


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]  # after `deploy -e fake`
    says: tuple[str, ...]  # what the error line contains
    env: dict[str, str] = field(default_factory=dict)
    repository: bool = True  # add --repository REPO


def _files(root: Path) -> Path:
    """The charm repository and the --config files the cases name; the repository's path."""
    repo = root / "repo"
    write_charm(repo / "bookworm" / "sample")
    # Each broken charm in a repository of its own: a broken neighbour is skipped with a warning (by design).
    broken = {
        "broken": {"metadata.yaml": SAMPLE_METADATA.replace("sample", "broken") + "colour: red\n"},
        "badyaml": {"metadata.yaml": "name: badyaml\nsummary: [unclosed\n"},
        "noname": {"metadata.yaml": "summary: s\ndescription: d\n"},
        "badconfig": {
            "metadata.yaml": SAMPLE_METADATA.replace("sample", "badconfig"),
            "config.yaml": "options:\n  port:\n    type: integer\n",
        },
    }
    for name, files in broken.items():
        write_charm(root / f"repo-{name}" / "bookworm" / name, files)
    configs = {
        "unknown.yaml": "web:\n  colour: red\n",
        "wrong-type.yaml": f"web:\n  port: {SECRET_VALUE}\n",
        "unquoted.yaml": "web:\n  secret: 12345678\n",
        "not-yaml.yaml": f"web:\n  secret: [{SECRET_VALUE}\n",
        "tab.yaml": f"web:\n\tsecret: {SECRET_VALUE}\n",
        "deep.yaml": "web: " + "[" * 1000 + "\n",
        "other-service.yaml": f"db:\n  secret: {SECRET_VALUE}\n",
        "a-list.yaml": f"- web\n- {SECRET_VALUE}\n",
        "not-a-mapping.yaml": f"web: {SECRET_VALUE}\n",
        "duplicate.yaml": f"web:\n  secret: {SECRET_VALUE}\n  secret: other\n",
        "empty.yaml": "",
    }
    for name, text in configs.items():
        (root / name).write_text(text)
    (root / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + SECRET_VALUE.encode())
    return repo


def _broken(name: str) -> tuple[str, ...]:
    return ("--repository", f"{{root}}/repo-{name}", name)


def _config(name: str) -> tuple[str, ...]:
    return ("sample", "web", "--config", f"{{root}}/{name}")


CASES: dict[str, Case] = {
    # the charm and its repository
    "no-repository": Case(("sample",), ("deploy sample: no charm repository", "--repository DIR"), repository=False),
    "repository-missing": Case(
        ("sample",), ("{root}/nowhere does not exist",), {"ENSEMBLE_REPOSITORY": "{root}/nowhere"}, False
    ),
    "no-series-directory": Case(("local:jammy/sample",), ("has no jammy/ directory",)),
    "charm-not-in-repository": Case(("mysql",), ("local:bookworm/mysql: not in charm repository {root}/repo",)),
    "revision-not-in-repository": Case(("sample-7",), ("has sample at revision 1 only",)),
    "bad-charm-url": Case(
        ("local:bookworm/My_SQL",), ("charm URL 'local:bookworm/My_SQL': 'My_SQL' is not a charm name",)
    ),
    "unknown-metadata-key": Case(_broken("broken"), ("{root}/repo-broken/bookworm/broken/metadata.yaml", "'colour'")),
    "metadata-not-yaml": Case(_broken("badyaml"), ("badyaml/metadata.yaml: malformed YAML at line 3",)),
    "metadata-without-name": Case(_broken("noname"), ("noname/metadata.yaml: 'name' is missing",)),
    "config-yaml-bad-type": Case(_broken("badconfig"), ("badconfig/config.yaml: 'options.port.type' must be",)),
    # the service's name
    "service-uppercase": Case(("sample", "Web"), ("'Web' is not a valid service name",)),
    "service-digits-part": Case(("sample", "web-2"), ("'web-2' is not a valid service name",)),
    "service-slash": Case(("sample", "web/0"), ("'web/0' is not a valid service name",)),
    # --config
    "config-unknown-option": Case(_config("unknown.yaml"), ("{root}/unknown.yaml: web: unknown option 'colour'",)),
    "config-wrong-type": Case(
        _config("wrong-type.yaml"), ("{root}/wrong-type.yaml: web: option 'port' expects an int",)
    ),
    "config-unquoted-string": Case(_config("unquoted.yaml"), ("option 'secret' expects a string", "quote it")),
    "config-not-yaml": Case(_config("not-yaml.yaml"), ("{root}/not-yaml.yaml", "YAML")),
    "config-tab": Case(_config("tab.yaml"), ("{root}/tab.yaml", "YAML")),
    "config-not-utf8": Case(_config("binary.yaml"), ("{root}/binary.yaml", "UTF-8")),
    "config-nested-too-deeply": Case(_config("deep.yaml"), ("{root}/deep.yaml", "nested too deeply")),
    "config-duplicate-key": Case(_config("duplicate.yaml"), ("{root}/duplicate.yaml", "duplicate key 'secret'")),
    "config-without-the-service": Case(
        _config("other-service.yaml"), ("{root}/other-service.yaml: no settings for service web",)
    ),
    "config-a-list": Case(_config("a-list.yaml"), ("{root}/a-list.yaml: no settings for service web",)),
    "config-service-not-a-mapping": Case(_config("not-a-mapping.yaml"), ("{root}/not-a-mapping.yaml", "service web")),
    "config-empty": Case(_config("empty.yaml"), ("{root}/empty.yaml: no settings for service web",)),
    "config-missing-file": Case(_config("absent.yaml"), ("{root}/absent.yaml: cannot read it (No such file",)),
    "config-a-directory": Case(("sample", "--config", "{root}"), ("{root}: cannot read it (Is a directory)",)),
    # --constraints
    "constraint-unknown": Case(("sample", "--constraints", "colour=red"), ("unknown constraint 'colour'",)),
    "constraint-not-a-pair": Case(("sample", "--constraints", "arch"), ("constraint 'arch' is not NAME=VALUE",)),
    "constraint-bad-memory": Case(("sample", "--constraints", "mem=lots"), ("constraint mem='lots'",)),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Every case's command, started at once (each a process of its own, with its own calls and storage)."""
    root = tmp_path_factory.mktemp("deploy-input")
    repo = _files(root)
    started = {}
    for name, case in CASES.items():
        cli = StateCli(root / "runs" / name)
        cli.environment(ADMIN_SECRET)
        argv = ["deploy", "-e", "fake", *(a.format(root=root) for a in case.argv)]
        if case.repository and "--repository" not in argv:
            argv += ["--repository", str(repo)]
        env = {k: v.format(root=root) for k, v in case.env.items()}
        started[name] = (cli, argv, cli.popen(*argv, env=env))
    finished = {}
    try:
        for name, (cli, argv, process) in started.items():
            out, err = process.communicate(timeout=COMMAND_BOUND * 2)  # all at once: they share the CPUs
            finished[name] = (cli, subprocess.CompletedProcess(argv, process.returncode, out, err))
    finally:
        for _, _, process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    yield finished


@pytest.mark.parametrize("name", list(CASES))
def test_bad_deploy_input_is_one_line_exit_2_and_changes_nothing(name: str, runs: dict[str, Run]) -> None:
    cli, run = runs[name]
    root = cli.root.parent.parent
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1, run.stderr  # checked before anything runs: no progress line either
    line = error_line(run)
    for text in CASES[name].says:
        assert text.format(root=root) in line, line
    assert SECRET_VALUE not in run.stderr + run.stdout
    assert ADMIN_SECRET not in run.stderr + run.stdout
    # Nothing was connected to (no provider state read) and nothing uploaded.
    assert set(cli.recorded()) <= {"get_constraint_set", "close"}, cli.recorded()
    assert cli.stored() == []


def test_deploy_onto_an_environment_never_bootstrapped(tmp_path: Path) -> None:
    """The arguments are fine; the environment has no machine 0: one line saying to bootstrap it, nothing
    uploaded (the charm is published only once the state is reached). A runtime failure: exit 1."""
    repo = _files(tmp_path)
    cli = StateCli(tmp_path / "cli")
    cli.environment(ADMIN_SECRET, bootstrapped=False)
    run = cli.run("deploy", "-e", "fake", "--repository", str(repo), "sample")
    assert run.returncode == 1, run.stderr
    bootstrap = "run 'ensemble bootstrap -e fake'"
    assert error_line(run) == f"ensemble: error: environment 'fake' is not bootstrapped: {bootstrap}"
    assert cli.recorded() == ["get_constraint_set", "load_state", "close"]
    assert cli.stored() == [] and run.stdout == ""


def test_the_charms_warnings_go_to_stderr_before_anything_is_done(tmp_path: Path) -> None:
    """A hook that is not executable is allowed but probably a mistake: said on stderr as the command's other
    warnings are (stdout is the command's result), once the arguments are checked and before the connection."""
    charm = write_charm(tmp_path / "repo" / "bookworm" / "sample", hooks={"start": "#!/bin/sh\n"}, executable=False)
    cli = StateCli(tmp_path / "cli")
    cli.environment(ADMIN_SECRET, bootstrapped=False)
    run = cli.run("deploy", "-e", "fake", "--repository", str(tmp_path / "repo"), "sample")
    assert run.returncode == 1 and run.stdout == ""
    warnings = [line for line in run.stderr.splitlines() if line.startswith("ensemble: warning: ")]
    assert warnings and all(str(charm / "hooks") in line for line in warnings), run.stderr
    assert "is not bootstrapped" in error_line(run)


# -- what argparse refuses (in-process: it exits before anything runs) ----------------------------------------


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["deploy", "sample", "-n", "0"], "-n/--num-units"),
        (["deploy", "sample", "-n", "-1"], "-n/--num-units"),
        (["deploy", "sample", "-n", "two"], "-n/--num-units"),
        (["deploy", "sample", "-n", "²"], "-n/--num-units"),
        (["add-unit", "web", "-n", "0"], "-n/--num-units"),
        (["deploy", "sample", "--wait", "--timeout", "0"], "--timeout"),
        (["deploy", "sample", "--wait", "--timeout", "nan"], "--timeout"),
        (["deploy", "sample", "--wait", "--timeout", "inf"], "--timeout"),
        (["add-unit", "web", "--wait", "--timeout", "nan"], "--timeout"),
        (["deploy", "sample", "--hook-timeout", "nan"], "--hook-timeout"),
        (["deploy", "sample", "--hook-timeout", "-5"], "--hook-timeout"),
        (["remove-unit", "web/0", "--timeout", "nan"], "--timeout"),
        (["remove-unit", "web/0", "--timeout", "inf"], "--timeout"),
        (["remove-unit", "web/0", "--timeout", "-1"], "--timeout"),
        (["destroy-service", "web", "--timeout", "nan"], "--timeout"),
        (["deploy"], "CHARM"),
        (["set", "web"], "KEY=VALUE"),
        (["remove-unit"], "UNIT"),
        (["resolved"], "UNIT"),
        (["get", "web", "--format", "xml"], "--format"),
        # names that would become other ZooKeeper paths: /services/web/config is the settings node
        (["get", "web/config"], "argument SERVICE: 'web/config' is not a service name"),
        (["set", "web/config", "a=b"], "argument SERVICE: 'web/config' is not a service name"),
        (["add-unit", "web/config"], "argument SERVICE: 'web/config' is not a service name"),
        (["destroy-service", "web/config"], "argument SERVICE: 'web/config' is not a service name"),
        (["get", ""], "argument SERVICE: '' is not a service name"),
        (["get", "../x"], "argument SERVICE: '../x' is not a service name"),
        (["get", "Web"], "argument SERVICE: 'Web' is not a service name"),
        (["resolved", "web"], "argument UNIT: 'web' is not a unit name (<service>/<number>, like 'mysql/0')"),
        (["resolved", "web/0/../1"], "argument UNIT: 'web/0/../1' is not a unit name"),
        (["resolved", "web/0/agent"], "argument UNIT: 'web/0/agent' is not a unit name"),
        (["resolved", "web/"], "argument UNIT: 'web/' is not a unit name"),
        (["resolved", "web/٣"], "argument UNIT: 'web/٣' is not a unit name"),
        (["remove-unit", "web/0", "web"], "argument UNIT: 'web' is not a unit name"),
    ],
)
def test_arguments_argparse_refuses_exit_2_naming_the_option(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wait that could never end (NaN, infinity) or is already over is refused like a unit count of 0:
    a --timeout of NaN used to wait forever (NaN >= timeout is never true), and a --hook-timeout of NaN was
    stored for the unit agents. A service or unit name that is none (``web/config`` read the service's settings
    node as a service: a KeyError traceback) is refused the same way."""
    monkeypatch.setenv("ENSEMBLE_HOME", str(tmp_path))  # were the argument accepted: no user's environments
    with pytest.raises(SystemExit) as exited:
        ensemble.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "Traceback" not in err and option in err.splitlines()[-1], err
