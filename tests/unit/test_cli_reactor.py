"""The commands on the reactor, each run as its own process: constraints awaited from a provider that
answers later, errors raised on the reactor, Ctrl-C, and the global options in both positions.

The ``ensemble`` tests use a provider type registered the way a third-party one is (an entry point,
here from a dist-info directory on PYTHONPATH): tests/unit/_cli_fake_provider.py. It talks to no
server and writes each call it gets to a file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
# Console script -> its module (setup.cfg's entry points; test_cli_options.py checks they agree).
SCRIPTS = {"ensemble": "ensemble_orchestra.cli.ensemble", "ensemble-orchestra": "ensemble_orchestra.cli.orchestra"}


class Cli:
    """Runs a console script's module with a private ENSEMBLE_HOME and the fake provider type installed."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.home.mkdir()
        self.calls = root / "calls.log"
        plugins = root / "plugins"
        dist_info = plugins / "ensemble_fake_provider-1.0.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ensemble-fake-provider\nVersion: 1.0\n")
        (dist_info / "entry_points.txt").write_text("[ensemble.providers]\nfake = _cli_fake_provider:create\n")
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "ENSEMBLE_ENV"},
            "ENSEMBLE_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join([str(plugins), str(HERE)]),
            "PYTHONUNBUFFERED": "1",
        }

    def environment(self, **keys: object) -> None:
        env = {"type": "fake", "calls": str(self.calls), **keys}
        path = self.home / "environments.yaml"
        path.write_text(yaml.safe_dump({"environments": {"fake": env}}))
        path.chmod(0o600)

    def argv(self, script: str, *args: str) -> list[str]:
        return [sys.executable, "-m", SCRIPTS[script], *args]

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(script, *args), capture_output=True, text=True, timeout=60, env=self.env, stdin=subprocess.DEVNULL
        )

    def popen(self, script: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(script, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )

    def recorded(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def one_error_line(err: str, prog: str = "ensemble") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err
    return lines[0]


# -- constraints are awaited on the reactor -------------------------------------------------------


def test_constraints_from_a_provider_that_answers_later_are_awaited(cli: Cli) -> None:
    """get_constraint_set fires 0.3 s later through the reactor: the bootstrap gets the parsed constraints."""
    cli.environment()
    boot = cli.run("ensemble", "bootstrap", "-e", "fake", "--constraints", "arch=amd64 mem=4G")
    assert boot.returncode == 0, boot.stderr
    assert "bootstrapped environment 'fake': machine 0 is fake0 (fake0.example, instance fake-uid-0)" in boot.stdout
    assert cli.recorded() == ["get_constraint_set", "bootstrap {'arch': 'amd64', 'mem': '4G'}", "close"]


def test_a_bad_constraint_stops_the_command_before_the_provider_works(cli: Cli) -> None:
    """Checked against the names the provider answered later: exit 2, one line, bootstrap never called."""
    cli.environment()
    boot = cli.run("ensemble", "bootstrap", "-e", "fake", "--constraints", "colour=red")
    assert boot.returncode == 2
    line = one_error_line(boot.stderr)
    assert line == "ensemble: error: unknown constraint 'colour' (known: arch, mem, orchestra-name)"
    assert boot.stdout == ""
    assert cli.recorded() == ["get_constraint_set", "close"]


def test_a_usage_error_raised_on_the_reactor_is_exit_2_and_one_line(cli: Cli) -> None:
    """E.g. the provider refusing a constraint it cannot check, from inside bootstrap."""
    cli.environment(bootstrap="usage-error")
    boot = cli.run("ensemble", "bootstrap", "-e", "fake", "--constraints", "mem=4G")
    assert boot.returncode == 2
    assert one_error_line(boot.stderr) == (
        "ensemble: error: constraint 'mem' cannot be checked: the fake has no hardware inventory"
    )
    verbose = cli.run("ensemble", "bootstrap", "-e", "fake", "--constraints", "mem=4G", "-v")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr and "UncheckableConstraint" in verbose.stderr


# -- global options before and after the command --------------------------------------------------
# The variants of one test run at once (each is a process that mostly waits on imports).


def _run_all(cli: Cli, script: str, variants: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    started = {name: (argv, cli.popen(script, *argv)) for name, argv in variants.items()}
    finished = {}
    for name, (argv, process) in started.items():
        out, err = process.communicate(timeout=60)
        finished[name] = subprocess.CompletedProcess(argv, process.returncode, out, err)
    return finished


def test_ensemble_takes_verbose_and_log_file_before_or_after_the_command(cli: Cli, tmp_path: Path) -> None:
    """-v shows info events on stderr; the log file gets them (debug level) whether or not -v is given."""
    cli.environment()
    logs = {name: tmp_path / f"{name}.log" for name in ("before", "short", "after", "mixed", "quiet")}
    runs = _run_all(
        cli,
        "ensemble",
        {
            "before": ["-v", "--log-file", str(logs["before"]), "bootstrap", "-e", "fake"],
            "short": ["-v", "-l", str(logs["short"]), "bootstrap", "-e", "fake"],
            "after": ["bootstrap", "-e", "fake", "-v", "-l", str(logs["after"])],
            "mixed": ["--verbose", "bootstrap", "-e", "fake", "--log-file", str(logs["mixed"])],
            "quiet": ["-l", str(logs["quiet"]), "bootstrap", "-e", "fake"],
        },
    )
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr)
        assert ("ensemble: info: fake bootstrap of fake" in run.stderr) is (name != "quiet"), name
        assert "fake bootstrap of fake" in logs[name].read_text(), name


def test_ensemble_orchestra_takes_verbose_and_log_file_before_or_after_the_command(cli: Cli, tmp_path: Path) -> None:
    """`lab status` of a lab that never ran fails (exit 1): -v adds the traceback; the log file is opened."""
    nothing = str(tmp_path / "nothing")
    logs = {name: tmp_path / f"{name}.log" for name in ("before", "between", "after", "quiet")}
    runs = _run_all(
        cli,
        "ensemble-orchestra",
        {
            "before": ["-v", "-l", str(logs["before"]), "lab", "status", "--dir", nothing],
            "between": ["lab", "-v", "--log-file", str(logs["between"]), "status", "--dir", nothing],
            "after": ["lab", "status", "--dir", nothing, "--verbose", "-l", str(logs["after"])],
            "quiet": ["--log-file", str(logs["quiet"]), "lab", "status", "--dir", nothing],
        },
    )
    for name, run in runs.items():
        assert run.returncode == 1, (name, run.stderr)
        assert f"ensemble-orchestra: error: no lab in {nothing}" in run.stderr, name
        assert ("Traceback" in run.stderr) is (name != "quiet"), name
        assert logs[name].exists(), name


# -- Ctrl-C: the messages name the running program -------------------------------------------------


def _read_until(stream: object, wanted: str, seconds: float) -> str:
    seen = ""
    deadline = time.monotonic() + seconds
    while wanted not in seen and time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        seen += line
    return seen


def test_ctrl_c_in_ensemble_cancels_and_says_ensemble(cli: Cli) -> None:
    cli.environment(bootstrap="hang")
    process = cli.popen("ensemble", "bootstrap", "-e", "fake")
    assert process.stderr is not None
    seen = _read_until(process.stderr, "powering on", 30)
    assert "powering on" in seen
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, seen + err
    assert "ensemble: interrupted: rolling back (Ctrl-C again to abandon)" in err
    assert err.strip().splitlines()[-1] == (
        "ensemble: interrupted: bootstrap of 'fake' rolled back: no system was left claimed"
    )
    assert cli.recorded()[-1] == "close"


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server
    finally:
        server.close()


def test_ctrl_c_in_ensemble_orchestra_says_ensemble_orchestra(cli: Cli, silent_server: socket.socket) -> None:
    """setup-server waits on a Cobbler that never answers; Ctrl-C's messages name ensemble-orchestra."""
    port = silent_server.getsockname()[1]
    cli.env["ENSEMBLE_ORCHESTRA_PASSWORD"] = "never-shown-pw"
    url = f"http://127.0.0.1:{port}/RPC2"
    process = cli.popen("ensemble-orchestra", "setup-server", "--cobbler", url, "--user", "cobbler")
    silent_server.settimeout(30)
    connection, _ = silent_server.accept()  # the client is on the reactor, waiting for an answer
    try:
        time.sleep(0.3)  # the connect was issued from the reactor's first turn; let that turn end
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        connection.close()
    assert process.returncode == 130, err
    assert "ensemble-orchestra: interrupted: rolling back (Ctrl-C again to abandon)" in err
    assert err.strip().splitlines()[-1] == "ensemble-orchestra: interrupted"
    assert not any(line.startswith("ensemble:") for line in err.splitlines())
    assert "never-shown-pw" not in out + err
