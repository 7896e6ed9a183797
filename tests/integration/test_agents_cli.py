"""``ensemble ssh`` and ``ensemble debug-log`` against a real bootstrapped environment (machine 0 runs the agents).

The tests only read: they run commands on machine 0 and stream its agents' logs, and change nothing (the CLI's
state connection stores /environment, as every command does). Each command runs as a process, as a user types
it, with a bound, so none can hang. They take ``agents_env``: the environment conftest bootstrapped with
``--wait`` for the xdist group "agents".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from ensemble_orchestra.cli.environment import select_environment
from ensemble_orchestra.cli.log_filter import LEVELS, LogFilter, parse_record
from ensemble_orchestra.cli.log_tail import LogTail, tail_argv
from ensemble_orchestra.cli.machine_reach import MachineTarget, machine_targets, ssh_options
from ensemble_orchestra.lab.testing import process_table
from ensemble_orchestra.lab.zookeeper_server import free_port

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("agents")]

COMMAND_BOUND = 60.0  # s for one command: the state connection (tunnel, session) is ~1 s on the lab
STREAM_BOUND = 20.0  # s past a debug-log's own --timeout (connecting, stopping its ssh)


@dataclass(frozen=True)
class AgentsEnv:
    home: Path  # its ENSEMBLE_HOME
    name: str  # the environment
    tunnel_pid: int | None = None  # conftest's SSH tunnel to machine 0's ZooKeeper (an ssh child of ours)


@pytest.fixture(scope="module")
def agents_env(agents_environment: Any, ensemble_home: Path) -> AgentsEnv:
    """The environment conftest bootstrapped for the "agents" group (see conftest's agents_environment)."""
    tunnel = agents_environment.tunnel
    return AgentsEnv(ensemble_home, "agents", tunnel.pid if tunnel is not None else None)


def ensemble(env: AgentsEnv, *args: str, timeout: float = COMMAND_BOUND) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", args[0], "-e", env.name, *args[1:]]
    environ = {**os.environ, "ENSEMBLE_HOME": str(env.home), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=environ, stdin=subprocess.DEVNULL
    )


def timed(env: AgentsEnv, *args: str, timeout: float = COMMAND_BOUND) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    run = ensemble(env, *args, timeout=timeout)
    return run, time.monotonic() - start


def errors(run: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("ensemble: error")]


def records(stdout: str) -> list[tuple[str, Any]]:
    """(machine prefix, parsed record or None for a continuation line) of each line debug-log printed."""
    out = []
    for line in stdout.splitlines():
        prefix, _, rest = line.partition(" ")
        out.append((prefix, parse_record(rest)))
    return out


# -- ssh ------------------------------------------------------------------------------------------------------


def test_ssh_runs_a_command_on_machine_0(agents_env: AgentsEnv) -> None:
    """`ssh 0 hostname` prints machine 0's hostname (the name its Cobbler system gives it), and only that."""
    status = ensemble(agents_env, "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    dns_name = json.loads(status.stdout)["machines"]["0"]["dns-name"]
    run = ensemble(agents_env, "ssh", "0", "hostname")
    assert run.returncode == 0, run.stderr
    assert run.stdout == dns_name.split(".")[0] + "\n"


def test_ssh_exits_with_the_remote_commands_status(agents_env: AgentsEnv) -> None:
    """The process became ssh: the remote command's exit status is ours, its arguments reach it as typed."""
    assert ensemble(agents_env, "ssh", "0", "true").returncode == 0
    failed = ensemble(agents_env, "ssh", "0", "exit", "7")
    assert failed.returncode == 7 and not errors(failed)
    listed = ensemble(agents_env, "ssh", "0", "ls", "-d", "/var/log/ensemble")
    assert listed.returncode == 0 and listed.stdout == "/var/log/ensemble\n"


def test_ssh_to_an_unknown_machine_is_one_line_exit_1(agents_env: AgentsEnv) -> None:
    run, took = timed(agents_env, "ssh", "99", "true")
    assert run.returncode == 1 and run.stdout == ""
    assert errors(run) == [
        f"ensemble: error: no machine 99 in environment '{agents_env.name}':"
        f" 'ensemble status -e {agents_env.name}' lists its machines"
    ]
    assert "Traceback" not in run.stderr and took < COMMAND_BOUND


# -- debug-log ------------------------------------------------------------------------------------------------


def test_debug_log_limit_with_an_agent_glob(agents_env: AgentsEnv) -> None:
    """`--replay --limit 2 -i machine-agent`: two records, both machine 0's machine agent, then it ends by itself.

    (Two: a machine agent writes two records when it starts — registered, running — and more only when its
    ZooKeeper session changes, so every bootstrapped machine 0 has them; a third may never come.)
    """
    run, took = timed(agents_env, "debug-log", "--replay", "--limit", "2", "-i", "machine-agent", "--timeout", "60")
    assert run.returncode == 0, run.stderr
    found = records(run.stdout)
    assert len(found) == 2 and all(prefix == "machine-0" for prefix, _ in found), run.stdout
    assert all(record is not None and record.agent == "machine-agent" for _, record in found), run.stdout
    assert took < 30, f"--limit should end it, not the 60 s --timeout ({took:.1f} s)"


def test_debug_log_limit_counts_records_of_every_agent(agents_env: AgentsEnv) -> None:
    """`--replay --limit 3`: three records (from the start of a log: no line before its record), then the end."""
    run, took = timed(agents_env, "debug-log", "--replay", "--limit", "3", "--timeout", "60")
    assert run.returncode == 0, run.stderr
    found = records(run.stdout)
    assert found[0][1] is not None, "the first line of a log is a record's"
    assert sum(record is not None for _, record in found) == 3 and {p for p, _ in found} == {"machine-0"}
    assert took < 30


def test_debug_log_level_and_timeout(agents_env: AgentsEnv) -> None:
    """`-l error --replay --timeout 4`: only ERROR and CRITICAL records (none on a healthy machine 0), and
    streaming ends after its 4 s, not before, exit 0."""
    run, took = timed(agents_env, "debug-log", "-l", "error", "--replay", "--limit", "50", "--timeout", "4")
    assert run.returncode == 0, run.stderr
    levels = [record.level for _, record in records(run.stdout) if record is not None]
    assert all(LEVELS[level] >= LEVELS["error"] for level in levels), run.stdout
    assert 4 <= took < 4 + STREAM_BOUND
    warned = [line for line in run.stderr.splitlines() if "warning" in line]
    assert warned == [], warned


def test_debug_log_of_an_unknown_machine_is_one_line_exit_1(agents_env: AgentsEnv) -> None:
    run = ensemble(agents_env, "debug-log", "--machine", "0", "--machine", "99", "--timeout", "5")
    assert run.returncode == 1 and run.stdout == ""
    assert errors(run) == [
        f"ensemble: error: no machine 99 in environment '{agents_env.name}':"
        f" 'ensemble status -e {agents_env.name}' lists its machines"
    ]


@pytest_twisted.ensureDeferred
async def test_a_machine_that_cannot_be_reached_warns_once_and_machine_0_keeps_streaming(
    agents_env: AgentsEnv, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Machine 0 (real, through the state) and a machine whose SSH port refuses (127.0.0.1, a closed port):
    one warning naming the second, while machine 0's records are still shown up to the limit; our sshs end."""
    from twisted.internet import reactor

    monkeypatch.setenv("ENSEMBLE_HOME", str(agents_env.home))
    provider = select_environment(agents_env.name).create_provider(reactor)
    try:
        [zero], _ = await machine_targets(provider, reactor, lambda *a: None, [0])
        options = ssh_options(provider)
        closed = MachineTarget(7, "127.0.0.1", "nowhere", "provisioned")
        port = str(free_port())

        def argv(target: MachineTarget) -> list[str]:
            extra = ["-o", f"Port={port}"] if target is closed else []
            return tail_argv([*options, *extra], provider.config.ssh_user, target.reach, None)

        out, err = StringIO(), StringIO()
        tail = LogTail(reactor, out, err, prog="ensemble", limit=4)
        start = time.monotonic()
        ended = await tail.run([closed, zero], argv, LogFilter(), executable="/usr/bin/ssh", timeout=60)
        took = time.monotonic() - start
    finally:
        await provider.close()
    assert ended == "limit" and took < 30
    assert err.getvalue().splitlines() == [
        f"ensemble: warning: machine-7 (nowhere, 127.0.0.1): its logs stopped streaming (ssh exit 255:"
        f" ssh: connect to host 127.0.0.1 port {port}: Connection refused)"
    ]
    shown = records(out.getvalue())
    assert sum(record is not None for _, record in shown) == 4 and {p for p, _ in shown} == {"machine-0"}
    assert _ssh_children(agents_env) == []  # every ssh we started has ended (and was reaped)


def _ssh_children(env: AgentsEnv) -> list[int]:
    """Our own child processes that are ssh, from /proc (but conftest's tunnel to ZooKeeper)."""
    return [
        pid
        for pid, (name, ppid) in process_table().items()
        if name == "ssh" and ppid == os.getpid() and pid != env.tunnel_pid
    ]
