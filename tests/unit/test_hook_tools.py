"""The hook tools as a hook runs them: real ``python -m ...tools`` processes against a real HookToolServer with a
FakeHookContext; each tool and format, -o, both sets of environment names, and every refusal with its exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from ensemble_orchestra.agents.hooks.server import NO_HOOK, HookToolServer
from ensemble_orchestra.agents.hooks.testing import FakeHookContext, ToolRun, run_tool
from ensemble_orchestra.agents.hooks.tools import NOT_IN_HOOK

CONFIG = {"title": "My Blog", "db-name": "wordpress", "port": 3306, "debug": False, "unset": None}


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def server(hook_server: HookToolServer) -> HookToolServer:
    return hook_server  # tests/unit/conftest.py: a started HookToolServer, stopped after the test


@pytest.fixture
def fake() -> FakeHookContext:
    return FakeHookContext(config=CONFIG)


@pytest.fixture
def env(server: HookToolServer, fake: FakeHookContext) -> dict[str, str]:
    """A hook's environment (Ensemble's names) for a context opened on the server."""
    return {"ENSEMBLE_AGENT_SOCKET": str(server.socket_path), "ENSEMBLE_CLIENT_ID": server.open_context(fake)}


async def tool(env: dict[str, str], name: str, *args: str) -> ToolRun:
    return await run_tool(_reactor(), name, *args, env=env)


@pytest_twisted.ensureDeferred
async def test_config_get_in_each_format(env: dict[str, str]) -> None:
    assert await tool(env, "config-get", "title") == ToolRun("My Blog\n", "", 0)
    assert (await tool(env, "config-get", "nosuch")).out == ""  # unknown key: nothing, exit 0 (Ensemble's)
    assert (await tool(env, "config-get", "debug")).out == "False\n"
    everything = await tool(env, "config-get")
    assert everything.out == "db-name: wordpress\ndebug: false\nport: 3306\ntitle: My Blog\nunset: null\n"
    assert json.loads((await tool(env, "config-get", "--format", "json")).out) == CONFIG
    assert (await tool(env, "config-get", "--format=json", "port")).out == "3306\n"
    shell = (await tool(env, "config-get", "--format", "shell")).out
    assert shell == "DB_NAME=wordpress\nDEBUG=False\nPORT=3306\nTITLE='My Blog'\nUNSET=''\n"
    assert (await tool(env, "config-get", "--format", "shell", "title")).out == "TITLE='My Blog'\n"


@pytest_twisted.ensureDeferred
async def test_output_file(env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    run = await tool(env, "config-get", "--format", "json", "-o", str(target))
    assert run == ToolRun("", "", 0)
    assert json.loads(target.read_text()) == CONFIG
    run = await tool(env, "unit-get", "-o", str(tmp_path / "missing-dir" / "x"), "private-address")
    assert run.code == 1 and run.err.startswith("unit-get: cannot write ") and "No such file" in run.err


@pytest_twisted.ensureDeferred
async def test_unit_get(env: dict[str, str]) -> None:
    assert await tool(env, "unit-get", "private-address") == ToolRun("10.0.0.2\n", "", 0)
    assert (await tool(env, "unit-get", "--format", "shell", "public-address")).out == "PUBLIC_ADDRESS=unit-0.example\n"
    assert (await tool(env, "unit-get", "--format", "json", "public-address")).out == '"unit-0.example"\n'


@pytest_twisted.ensureDeferred
async def test_ports(env: dict[str, str], fake: FakeHookContext) -> None:
    assert await tool(env, "open-port", "80") == ToolRun("", "", 0)
    assert await tool(env, "open-port", "53/udp") == ToolRun("", "", 0)
    assert await tool(env, "open-port", "3306/TCP") == ToolRun("", "", 0)
    assert await tool(env, "close-port", "80/tcp") == ToolRun("", "", 0)
    assert fake.ports == {(53, "udp"), (3306, "tcp")}


@pytest_twisted.ensureDeferred
async def test_log_and_its_successor_name(env: dict[str, str], fake: FakeHookContext) -> None:
    assert await tool(env, "ensemble-log", "installing", "mysql") == ToolRun("", "", 0)
    assert await tool(env, "juju-log", "-l", "warning", "disk low") == ToolRun("", "", 0)
    assert await tool(env, "ensemble-log", "--level", "DEBUG", "--", "-x-") == ToolRun("", "", 0)
    assert fake.logs == [("INFO", "installing mysql"), ("WARNING", "disk low"), ("DEBUG", "-x-")]


@pytest_twisted.ensureDeferred
async def test_the_successors_environment_names(server: HookToolServer, fake: FakeHookContext) -> None:
    cid = server.open_context(fake)
    for names in (("JUJU_AGENT_SOCKET", "JUJU_CLIENT_ID"), ("JUJU_AGENT_SOCKET", "JUJU_CONTEXT_ID")):
        env = {names[0]: str(server.socket_path), names[1]: cid}
        assert (await tool(env, "config-get", "title")).out == "My Blog\n"


USAGE = [
    (("open-port", "70000"), "invalid port 70000: ports are 1 to 65535"),
    (("open-port", "80/sctp"), "use tcp or udp"),
    (("close-port",), "the following arguments are required: PORT[/tcp|udp]"),
    (("unit-get", "hostname"), "invalid choice: 'hostname'"),
    (("config-get", "--format", "xml"), "invalid choice: 'xml'"),
    (("ensemble-log", "-l", "LOUD", "x"), "invalid choice: 'LOUD'"),
    (("ensemble-log",), "the following arguments are required: MESSAGE"),
    (("relation-fetch",), "hook tools: unknown tool 'relation-fetch'"),
    (("relation-set", "novalue"), "'novalue' is not KEY=VALUE"),
    (("relation-set", "=x"), "'=x' is not KEY=VALUE"),
    (("relation-get", "a", "b", "c"), "unrecognized arguments: c"),
]


@pytest_twisted.ensureDeferred
async def test_usage_errors_exit_2_without_asking_the_agent(env: dict[str, str], fake: FakeHookContext) -> None:
    for args, message in USAGE:
        run = await tool(env, *args)
        assert (run.code, run.out) == (2, ""), args
        assert message in run.err, (args, run.err)
    assert fake.calls == []


@pytest_twisted.ensureDeferred
async def test_outside_a_hook() -> None:
    run = await tool({}, "config-get", "title")
    assert run == ToolRun("", f"config-get: {NOT_IN_HOOK}\n", 1)
    run = await tool({"ENSEMBLE_AGENT_SOCKET": "/nonexistent/agent.sock"}, "juju-log", "hello")
    assert run.code == 1 and run.err.startswith(f"juju-log: {NOT_IN_HOOK}: ENSEMBLE_CLIENT_ID and JUJU_CLIENT_ID")


@pytest_twisted.ensureDeferred
async def test_refused_by_the_agent(server: HookToolServer, env: dict[str, str], tmp_path: Path) -> None:
    """An ended hook's client id, an unknown one, and no agent at the socket: one line on stderr, exit 1."""
    server.close_context(env["ENSEMBLE_CLIENT_ID"])
    assert await tool(env, "open-port", "80") == ToolRun("", f"open-port: {NO_HOOK}\n", 1)
    assert await tool({**env, "ENSEMBLE_CLIENT_ID": "guess"}, "unit-get", "private-address") == ToolRun(
        "", f"unit-get: {NO_HOOK}\n", 1
    )
    gone = {**env, "ENSEMBLE_AGENT_SOCKET": str(tmp_path / "gone.sock")}
    run = await tool(gone, "config-get")
    assert run.code == 1 and run.err.startswith("config-get: cannot reach the unit agent at ")
    assert run.err.count("\n") == 1


@pytest_twisted.ensureDeferred
async def test_a_context_error_is_the_tools_message(server: HookToolServer) -> None:
    cid = server.open_context(FakeHookContext(addresses={}))
    env = {"ENSEMBLE_AGENT_SOCKET": str(server.socket_path), "ENSEMBLE_CLIENT_ID": cid}
    run = await tool(env, "unit-get", "public-address")
    assert run == ToolRun("", "unit-get: the unit has no public-address yet: try again when its machine is up\n", 1)


def test_a_tool_imports_no_twisted() -> None:
    """A tool's process loads only the standard library (and our package): every hook pays its start-up."""
    code = (
        "import sys, ensemble_orchestra.agents.hooks.tools;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'twisted', 'yaml', 'zope', 'typing', 'dataclasses'}))"
    )
    out = subprocess.run([sys.executable, "-s", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() in ("[]", "['zope']")  # Debian's zope .pth files import the namespace at start-up


def test_help_works_outside_a_hook() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ensemble_orchestra.agents.hooks.tools", "open-port", "--help"],
        capture_output=True,
        text=True,
        env={},
    )
    assert run.returncode == 0 and "PORT[/tcp|udp]" in run.stdout


@pytest_twisted.ensureDeferred
async def test_relation_tools(server: HookToolServer) -> None:
    fake = FakeHookContext(
        relations={
            "db:3": {"wordpress/0": {"private-address": "10.0.0.3"}, "mysql/0": {"private-address": "10.0.0.2"}},
            "db:5": {"blog/1": {"private-address": "10.0.0.9", "title": "My Blog"}},
        },
        relation="db:3",
        remote_unit="wordpress/0",
        unit="mysql/0",
    )
    env = {"JUJU_AGENT_SOCKET": str(server.socket_path), "JUJU_CONTEXT_ID": server.open_context(fake)}
    assert await tool(env, "relation-get", "private-address") == ToolRun("10.0.0.3\n", "", 0)
    assert (await tool(env, "relation-get", "nosuch")).out == ""  # not set: nothing, exit 0
    assert (await tool(env, "relation-get", "-")).out == 'private-address: "10.0.0.3"\n'  # YAML: quoted, not a number
    assert (await tool(env, "relation-get", "-r", "db:5", "title", "blog/1")).out == "My Blog\n"
    shell = (await tool(env, "relation-get", "--format", "shell", "-r", "db:5", "-", "blog/1")).out
    assert shell == "PRIVATE_ADDRESS=10.0.0.9\nTITLE='My Blog'\n"
    assert (await tool(env, "relation-list")).out == "wordpress/0\n"
    assert json.loads((await tool(env, "relation-list", "--format", "json", "-r", "db:5")).out) == ["blog/1"]
    assert (await tool(env, "relation-ids")).out == "db:3\ndb:5\n"
    assert (await tool(env, "relation-ids", "website")).out == ""
    assert await tool(env, "relation-set", "database=blog", "user=blog", "private-address=") == ToolRun("", "", 0)
    assert fake.relations["db:3"]["mysql/0"] == {"database": "blog", "user": "blog"}  # KEY= deleted the key
    refused = await tool(env, "relation-get", "-r", "db:9", "x")
    assert refused == ToolRun("", "relation-get: unknown relation 'db:9': see relation-ids\n", 1)
    missing = await tool(env, "relation-get", "x", "other/0")
    assert missing.err == "relation-get: unit other/0 is not in the relation\n"


@pytest_twisted.ensureDeferred
async def test_relation_set_from_a_file_keeps_values_off_the_command_line(
    server: HookToolServer, tmp_path: Path
) -> None:
    fake = FakeHookContext(relations={"db:3": {"mysql/0": {"user": "old"}}}, relation="db:3", unit="mysql/0")
    env = {"JUJU_AGENT_SOCKET": str(server.socket_path), "JUJU_CONTEXT_ID": server.open_context(fake)}
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"password": "s3cret", "user": "blog", "host": "10.0.0.2"}))
    assert await tool(env, "relation-set", "--file", str(settings), "host=10.0.0.9") == ToolRun("", "", 0)
    assert fake.relations["db:3"]["mysql/0"] == {"password": "s3cret", "user": "blog", "host": "10.0.0.9"}
    settings.write_text('["s3cret"]')
    refused = await tool(env, "relation-set", "--file", str(settings))
    assert refused.code == 2 and "not a JSON object of strings" in refused.err and "s3cret" not in refused.err
