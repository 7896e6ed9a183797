"""The whole loop on this machine: tool wrappers written by install_tools, a real hook script run by the real
HookRunner, calling every tool by name from PATH against a real HookToolServer whose context is a FakeHookContext;
then the same hook once it has ended, and the wrappers themselves."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from ensemble_orchestra.agents.hooks.install import TOOL_NAMES, install_tools, wrapper_text
from ensemble_orchestra.agents.hooks.runner import HookInvocation, HookRunner, hook_environment
from ensemble_orchestra.agents.hooks.server import NO_HOOK, HookToolServer
from ensemble_orchestra.agents.hooks.testing import FakeHookContext, write_hook

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

HOOK = """#!/bin/sh
set -e
title=$(config-get title)
echo "title is $title"
eval "$(config-get --format shell)"
echo "db is $DB_NAME on port $PORT"
echo "address $(unit-get private-address)"
open-port "$PORT/tcp"
open-port 53/udp
close-port 53/udp
ensemble-log "installed $title"
juju-log -l WARNING "from a juju charm"
config-get --format json -o "$CHARM_DIR/config.json"
echo "unit $JUJU_UNIT_NAME hook $JUJU_HOOK_NAME"
if open-port 99999 2>err; then exit 9; fi
echo "refused: $(tail -n 1 err)"
"""


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def server(hook_server: HookToolServer) -> HookToolServer:
    return hook_server  # tests/unit/conftest.py: a started HookToolServer, stopped after the test


@pytest_twisted.ensureDeferred
async def test_a_hook_uses_every_tool(tmp_path: Path, server: HookToolServer) -> None:
    tools = tmp_path / "tools"
    install_tools(tools, sys.executable, PACKAGE_ROOT)
    charm = tmp_path / "charm"
    write_hook(charm, "install", HOOK)
    fake = FakeHookContext(config={"title": "My Blog", "db-name": "wp", "port": 3306})
    client_id = server.open_context(fake)
    env = hook_environment("mysql/0", charm, server.socket_path, client_id, tools, "install")
    lines: list[str] = []
    result = await HookRunner(_reactor()).run(HookInvocation("install", charm, env, 60, lines.append))
    server.close_context(client_id)
    assert result.ok, result.output_tail
    assert lines == [
        "title is My Blog",
        "db is wp on port 3306",
        "address 10.0.0.2",
        "unit mysql/0 hook install",
        "refused: open-port: error: argument PORT[/tcp|udp]: invalid port 99999: ports are 1 to 65535",
    ]
    assert fake.ports == {(3306, "tcp")}
    assert fake.logs == [("INFO", "installed My Blog"), ("WARNING", "from a juju charm")]
    assert (charm / "config.json").read_text().startswith('{"db-name": "wp"')

    # the same hook's tools, after the hook ended (a leftover background process would see this)
    write_hook(charm, "late", "config-get title\n")
    late = await HookRunner(_reactor()).run(HookInvocation("late", charm, env, 60))
    assert late.exit_code == 1 and late.output_tail == (f"config-get: {NO_HOOK}",)


def test_wrappers(tmp_path: Path) -> None:
    """One executable wrapper per name; rewritten only when different, atomically (no temporary files left)."""
    tools = tmp_path / "bin"
    install_tools(tools, "/usr/bin/python3", "/opt/ensemble lib")
    assert sorted(p.name for p in tools.iterdir()) == sorted(TOOL_NAMES)
    assert "juju-log" in TOOL_NAMES and "ensemble-log" in TOOL_NAMES
    text = (tools / "config-get").read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "PYTHONPATH='/opt/ensemble lib' exec /usr/bin/python3 -S -m ensemble_orchestra.agents.hooks.tools" in text
    assert text.rstrip().endswith('config-get "$@"')
    assert stat.S_IMODE((tools / "juju-log").stat().st_mode) == 0o755
    before = {p.name: p.stat().st_ino for p in tools.iterdir()}
    install_tools(tools, "/usr/bin/python3", "/opt/ensemble lib")
    assert {p.name: p.stat().st_ino for p in tools.iterdir()} == before  # unchanged: not rewritten
    install_tools(tools, "/usr/bin/python3.11", "/opt/ensemble")
    assert "exec /usr/bin/python3.11" in (tools / "unit-get").read_text()
    assert sorted(os.listdir(tools)) == sorted(TOOL_NAMES)


def test_a_wrapper_runs_the_tool(tmp_path: Path) -> None:
    """Outside a hook the wrapper's tool starts and says so (the wrapper's quoting and PYTHONPATH work)."""
    install_tools(tmp_path, sys.executable, PACKAGE_ROOT)
    run = subprocess.run([str(tmp_path / "juju-log"), "hi"], capture_output=True, text=True, env={"PYTHONPATH": "/x"})
    assert run.returncode == 1
    assert run.stderr == "juju-log: not running inside a hook (hook tools talk to the unit agent that runs the hook)\n"
    assert wrapper_text("unit-get", "py", "p").count("\n") == 3


def test_the_package_names_its_public_api() -> None:
    """Every name in ``hooks.__all__`` resolves (imported on first use, so a tool never imports Twisted)."""
    import ensemble_orchestra.agents.hooks as hooks

    for name in hooks.__all__:
        assert getattr(hooks, name) is not None
    with pytest.raises(AttributeError):
        hooks.nothing_here  # noqa: B018
