"""HookRunner with real hook processes on the real reactor; timeouts and graces on a task.Clock that the test
advances (so no test waits out a timeout): exit codes, missing and not-executable hooks, output lines and tail,
the process group a timeout kills, a background process that keeps the output open, cancellation."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.task import Clock

from ensemble_orchestra.agents.hooks.runner import (
    TAIL_LINES,
    HookInvocation,
    HookResult,
    HookRunner,
    hook_environment,
)
from ensemble_orchestra.agents.hooks.testing import write_hook
from ensemble_orchestra.lab.testing import process_table

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def invocation(
    charm: Path, name: str, timeout: float = 30, lines: list[str] | None = None, **env: str
) -> HookInvocation:
    return HookInvocation(name, charm, {**ENV, **env}, timeout, (lines if lines is not None else []).append)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Let the real reactor run until *predicate()* holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await task.deferLater(_reactor(), 0.02, lambda: None)


def alive(pid: int) -> bool:
    """*pid* runs (a zombie does not count: it is dead, waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest_twisted.ensureDeferred
async def test_exit_codes_and_output(tmp_path: Path) -> None:
    write_hook(tmp_path, "install", 'echo "to stdout"\necho "to stderr" >&2\nprintf "no newline"\nexit 0\n')
    write_hook(tmp_path, "start", "echo failing\nexit 3\n")
    runner = HookRunner(_reactor())
    lines: list[str] = []
    result = await runner.run(invocation(tmp_path, "install", lines=lines))
    assert (result.exit_code, result.ok, result.timed_out, result.missing) == (0, True, False, False)
    assert lines == ["to stdout", "to stderr", "no newline"]  # merged in order, the last partial line too
    assert result.output_tail == tuple(lines)
    assert result.summary() == "hook install exited 0"
    assert 0 < result.duration < 5
    failed = await runner.run(invocation(tmp_path, "start"))
    assert (failed.exit_code, failed.ok, failed.output_tail) == (3, False, ("failing",))
    assert failed.summary() == "hook start exited 3"


@pytest_twisted.ensureDeferred
async def test_the_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    write_hook(tmp_path, "install", "for i in $(seq 1 500); do echo line $i; done\nexit 1\n")
    lines: list[str] = []
    result = await HookRunner(_reactor()).run(invocation(tmp_path, "install", lines=lines))
    assert len(lines) == 500
    assert result.output_tail == tuple(f"line {i}" for i in range(501 - TAIL_LINES, 501))


@pytest_twisted.ensureDeferred
async def test_missing_and_not_executable(tmp_path: Path) -> None:
    runner = HookRunner(_reactor())
    missing = await runner.run(invocation(tmp_path, "config-changed"))
    assert missing == HookResult("config-changed", missing=True)
    assert missing.ok and missing.summary() == "hook config-changed is not in the charm (nothing to run)"
    write_hook(tmp_path, "install", "exit 0\n", executable=False)
    lines: list[str] = []
    result = await runner.run(invocation(tmp_path, "install", lines=lines))
    assert not result.ok and result.exit_code is None
    assert lines == ["hooks/install is not executable: chmod +x it in the charm"]
    assert result.output_tail == tuple(lines)
    assert result.summary() == "hook install did not run: hooks/install is not executable: chmod +x it in the charm"
    gone = await runner.run(invocation(tmp_path / "nowhere", "install"))
    assert not gone.ok and "the charm directory" in gone.summary()
    with pytest.raises(ValueError):
        await runner.run(invocation(tmp_path, "../escape"))


@pytest_twisted.ensureDeferred
async def test_cwd_stdin_env_and_own_process_group(tmp_path: Path) -> None:
    """cwd is the charm directory, stdin is /dev/null, the env is exactly the one given, the hook leads its group."""
    write_hook(
        tmp_path,
        "install",
        'echo "cwd=$(pwd)"\necho "stdin=$(readlink /proc/self/fd/0)"\necho "pid=$$ pgid=$(ps -o pgid= $$ | tr -d " ")"'
        '\necho "sid=$(ps -o sid= $$ | tr -d " ")"\necho "marker=$MARKER home=${HOME-unset}"\n',
    )
    lines: list[str] = []
    result = await HookRunner(_reactor()).run(invocation(tmp_path, "install", lines=lines, MARKER="m1"))
    assert result.ok, result.output_tail
    values = dict(item.split("=", 1) for line in lines for item in line.split(" "))
    assert values["cwd"] == str(tmp_path)
    assert values["stdin"] == "/dev/null"
    assert values["pid"] == values["pgid"] == values["sid"]
    assert int(values["pgid"]) != os.getpgrp()
    assert (values["marker"], values["home"]) == ("m1", "unset")


@pytest_twisted.ensureDeferred
async def test_timeout_kills_the_hook_and_its_children(tmp_path: Path) -> None:
    """On the Clock's timeout: SIGTERM reaches the whole group (a background child too), result timed_out."""
    write_hook(tmp_path, "install", 'sleep 300 &\necho "child=$!"\nsleep 300\n')
    clock = Clock()
    lines: list[str] = []
    run = defer.Deferred.fromCoroutine(
        HookRunner(_reactor(), clock=clock).run(invocation(tmp_path, "install", 60, lines))
    )
    await until(lambda: lines)
    child = int(lines[0].split("=")[1])
    assert alive(child)
    clock.advance(59)
    assert not run.called
    clock.advance(1)
    result = await run
    assert result.timed_out and not result.ok and result.signal == signal.SIGTERM
    assert result.summary() == "hook install timed out after 60 s"
    await until(lambda: not alive(child))


@pytest_twisted.ensureDeferred
async def test_a_hook_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    write_hook(tmp_path, "install", "trap '' TERM\necho ready\nwhile :; do sleep 0.05; done\n")
    clock = Clock()
    lines: list[str] = []
    runner = HookRunner(_reactor(), clock=clock, grace=5)
    run = defer.Deferred.fromCoroutine(runner.run(invocation(tmp_path, "install", 10, lines)))
    await until(lambda: lines == ["ready"])
    clock.advance(10)
    await task.deferLater(_reactor(), 0.3, lambda: None)
    assert not run.called  # SIGTERM ignored by the shell (its sleeps die and are replaced)
    clock.advance(5)
    result = await run
    assert result.timed_out and result.signal == signal.SIGKILL


@pytest_twisted.ensureDeferred
async def test_a_daemon_holding_the_output_does_not_hold_the_hook(tmp_path: Path) -> None:
    """The hook is done when its own process exits; a background child still writing to the pipe keeps
    running (its output drained, not shown, and it is not killed: no SIGPIPE)."""
    write_hook(
        tmp_path,
        "start",
        '(while :; do echo "daemon says"; sleep 0.05; done) &\necho "daemon=$!"\necho started\nexit 0\n',
    )
    clock = Clock()
    lines: list[str] = []
    run = defer.Deferred.fromCoroutine(
        HookRunner(_reactor(), clock=clock, output_grace=2).run(invocation(tmp_path, "start", 60, lines))
    )
    await until(lambda: "started" in lines)
    daemon = int(next(line for line in lines if line.startswith("daemon=")).split("=")[1])
    try:
        await task.deferLater(_reactor(), 0.3, lambda: None)  # the hook's process has exited by now
        assert not run.called
        clock.advance(2)
        result = await run
        assert result.ok and "started" in result.output_tail
        shown = len(lines)
        await task.deferLater(_reactor(), 0.3, lambda: None)
        assert len(lines) == shown and alive(daemon)
    finally:
        if alive(daemon):
            os.kill(daemon, signal.SIGKILL)


@pytest_twisted.ensureDeferred
async def test_cancel_stops_the_hook_and_its_group(tmp_path: Path) -> None:
    """Cancelling run (the agent stopping): SIGTERM to the group; once the hook is gone, a child of it that
    ignores SIGTERM gets SIGKILL."""
    write_hook(tmp_path, "install", "(trap '' TERM; exec sleep 301) &\necho \"straggler=$!\"\nexec sleep 300\n")
    lines: list[str] = []
    run = defer.Deferred.fromCoroutine(HookRunner(_reactor()).run(invocation(tmp_path, "install", 60, lines)))
    await until(lambda: lines)
    straggler = int(lines[0].split("=")[1])
    hook = next(p for p, (command, _) in process_table().items() if command == "sleep" and _parent_is_ours(p))
    try:
        run.cancel()
        with pytest.raises(defer.CancelledError):
            await run
        await until(lambda: not alive(hook) and not alive(straggler))
    finally:
        for pid in (hook, straggler):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _parent_is_ours(pid: int) -> bool:
    return process_table().get(pid, ("", 0))[1] == os.getpid()


def test_hook_environment_has_both_name_sets(tmp_path: Path) -> None:
    env = hook_environment(
        "mysql/0",
        tmp_path / "charm",
        tmp_path / "run" / "agent.sock",
        "cid-1",
        tmp_path / "tools",
        "install",
        {"JUJU_RELATION": "db"},
    )
    pairs = [
        ("ENSEMBLE_UNIT_NAME", "JUJU_UNIT_NAME", "mysql/0"),
        ("CHARM_DIR", "JUJU_CHARM_DIR", str(tmp_path / "charm")),
        ("ENSEMBLE_AGENT_SOCKET", "JUJU_AGENT_SOCKET", str(tmp_path / "run" / "agent.sock")),
        ("ENSEMBLE_CLIENT_ID", "JUJU_CLIENT_ID", "cid-1"),
        ("ENSEMBLE_CLIENT_ID", "JUJU_CONTEXT_ID", "cid-1"),
    ]
    for ensemble, juju, value in pairs:
        assert env[ensemble] == env[juju] == value
    assert env["JUJU_HOOK_NAME"] == "install"
    assert env["DEBIAN_FRONTEND"] == "noninteractive"
    assert env["PATH"].split(":")[0] == str(tmp_path / "tools") and "/usr/sbin" in env["PATH"]
    assert (env["LANG"], env["HOME"], env["JUJU_RELATION"]) == ("C.UTF-8", "/root", "db")
