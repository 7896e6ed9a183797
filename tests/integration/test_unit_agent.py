"""The unit agent on this machine, against a real ZooKeeper: a real charm's hooks run by the real runner, the
hook tools talking over the real socket. (The lab's tests run it as a systemd service on a lab system.)"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from ensemble_orchestra.agents.config import AgentConfig
from ensemble_orchestra.agents.unit import UnitAgent
from ensemble_orchestra.agents.unit_paths import UnitPaths
from ensemble_orchestra.charm import CharmDirectory, make_bundle, unpack_bundle
from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer
from ensemble_orchestra.state.acl import machine_user, new_credential
from ensemble_orchestra.state.charms import CharmRecord
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.layout import charm_path
from ensemble_orchestra.state.services import ServiceRecord, ServicesState
from ensemble_orchestra.state.testing import Roles, initialized_zookeeper
from ensemble_orchestra.state.units import UnitsState

ROLES = Roles.make()
ADMIN, PROVISIONING, SHARED = ROLES.admin, ROLES.provisioning, ROLES.machine_agents
IDENTITIES = ROLES.identities
MACHINE = new_credential(machine_user(1))
REPO = Path(__file__).resolve().parents[2]

METADATA = "name: probe\nsummary: a probe\ndescription: writes what its hooks see\n"
CONFIG = (
    "options:\n  greeting: {type: string, default: hello, description: said by config-changed}\n"
    "  fail-start: {type: boolean, default: false, description: make start fail}\n"
)
HOOK = """#!/bin/bash
set -e
echo "$JUJU_HOOK_NAME $ENSEMBLE_UNIT_NAME $(config-get greeting)" >> "$CHARM_DIR/../ran.log"
"""
HOOKS = {
    "install": HOOK,
    "config-changed": HOOK + 'echo "config says $(config-get greeting)"\n',
    "start": HOOK + 'open-port 8080/tcp\njuju-log "started on $(unit-get private-address)"\n'
    'if [ "$(config-get fail-start)" = True ]; then echo "start refuses" >&2; exit 3; fi\n',
    "stop": HOOK + "close-port 8080/tcp\n",
}


def _charm(root: Path, hooks: dict[str, str] = HOOKS, not_executable: tuple[str, ...] = ()) -> CharmDirectory:
    root.mkdir(parents=True)
    (root / "metadata.yaml").write_text(METADATA)
    (root / "config.yaml").write_text(CONFIG)
    (root / "revision").write_text("1\n")
    (root / "hooks").mkdir()
    for name, text in hooks.items():
        path = root / "hooks" / name
        path.write_text(text)
        if name not in not_executable:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return CharmDirectory.load(root)


@pytest.fixture(scope="module")
def unit_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    with initialized_zookeeper(Path(tmp_path_factory.mktemp("unit-zookeeper")), ROLES) as server:
        yield server


async def _until(check: Any, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if await check():
            return
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"not reached in {timeout} s")


@pytest_twisted.ensureDeferred
async def test_a_unit_goes_through_its_life_and_its_tools_reach_the_agent(
    unit_zookeeper: ZooKeeperServer, tmp_path: Path
) -> None:
    """install, config-changed, start (open-port, juju-log, unit-get), config-changed after set, a failing
    start left through resolved --retry, then stop when dying — each hook once, as the table says."""
    admin = await StateClient.connect(reactor, unit_zookeeper.hosts, credentials=[ADMIN], timeout=10)
    provisioning = await StateClient.connect(reactor, unit_zookeeper.hosts, credentials=[PROVISIONING], timeout=10)
    directory = _charm(tmp_path / "repo" / "probe")
    bundle = make_bundle(directory)
    charm = CharmRecord(
        "local:bookworm/probe-1",
        bundle.sha256,
        "b",
        "http://unused/b",
        directory.metadata.to_dict(),
        directory.config.to_dict(),
    )
    await admin.create(charm_path(charm.id), charm.encode(), acl=IDENTITIES.shared())
    services = ServicesState(admin, IDENTITIES)
    [unit] = await services.deploy(ServiceRecord("probe", charm.id, {}, 20.0), {"fail-start": True}, 1)
    assert await UnitsState(provisioning, IDENTITIES).grant(unit, MACHINE.identity)
    units_dir = tmp_path / "units"
    paths = UnitPaths.of(unit, units_dir)
    paths.root.mkdir(parents=True)
    unpack_bundle(bundle.data, paths.charm, bundle.sha256)
    config = AgentConfig(unit_zookeeper.hosts, (MACHINE, SHARED), machine_id=1)
    agent = UnitAgent(reactor, config, unit, units_dir=units_dir, tools_pythonpath=str(REPO))
    running = defer.Deferred.fromCoroutine(agent.run())
    units = UnitsState(admin, IDENTITIES)
    ran = paths.root / "ran.log"
    try:

        async def state_is(wanted: str) -> bool:
            return (await units.read(unit)).agent_state == wanted

        await _until(lambda: state_is("start-error"))
        record = await units.read(unit)
        assert record.hook == "start" and "start refuses" in record.hook_output
        assert (await units.read(unit)).open_ports == ()  # the failed hook's open-port was not kept
        assert ran.read_text().splitlines() == [
            "install probe/0 hello",
            "config-changed probe/0 hello",
            "start probe/0 hello",
        ]

        await services.set_settings("probe", {"fail-start": False, "greeting": "bonjour"})
        await units.request_resolved(unit, retry=True)
        await _until(lambda: state_is("started"))
        assert (await units.read(unit)).open_ports == ("8080/tcp",)
        assert (await units.read(unit)).private_address == agent.address
        await _until(lambda: _none(units, unit))
        # config-changed runs for the settings start never saw applied (the retry ran start only)
        await _until(lambda: _lines(ran, 5))
        assert ran.read_text().splitlines()[3:5] == ["start probe/0 bonjour", "config-changed probe/0 bonjour"]

        await services.mark_dying([unit])
        await _until(lambda: state_is("stopped"))
        assert ran.read_text().splitlines()[-1] == "stop probe/0 bonjour"
        assert (await units.read(unit)).open_ports == ()
        assert agent.hooks_run == ["install", "config-changed", "start", "start", "config-changed", "stop"]
        assert (await units.presence(unit)) is not None
    finally:
        agent.stopped.callback(None)
        await running
        await agent.close()
        await admin.close()
        await provisioning.close()


async def _none(units: UnitsState, unit: str) -> bool:
    return await units.resolved_request(unit) is None


async def _lines(path: Path, count: int) -> bool:
    return path.exists() and len(path.read_text().splitlines()) >= count


@pytest_twisted.ensureDeferred
async def test_a_hook_that_is_not_executable_or_hangs_leaves_a_visible_error_state(
    unit_zookeeper: ZooKeeperServer, tmp_path: Path
) -> None:
    """install not executable -> install-error saying so; after `resolved`, a start that hangs past the
    service's hook timeout is killed -> start-error saying it timed out. A missing hook (stop) is no error."""
    admin = await StateClient.connect(reactor, unit_zookeeper.hosts, credentials=[ADMIN], timeout=10)
    provisioning = await StateClient.connect(reactor, unit_zookeeper.hosts, credentials=[PROVISIONING], timeout=10)
    hooks = {"install": HOOK, "start": HOOK + "sleep 60\n"}
    directory = _charm(tmp_path / "repo" / "stuck", hooks, not_executable=("install",))
    bundle = make_bundle(directory)
    charm = CharmRecord(
        "local:bookworm/probe-2", bundle.sha256, "b", "http://unused/b", directory.metadata.to_dict(), {}
    )
    await admin.create(charm_path(charm.id), charm.encode(), acl=IDENTITIES.shared())
    services = ServicesState(admin, IDENTITIES)
    [unit] = await services.deploy(ServiceRecord("stuck", charm.id, {}, 1.5), {}, 1)
    assert await UnitsState(provisioning, IDENTITIES).grant(unit, MACHINE.identity)
    paths = UnitPaths.of(unit, tmp_path / "units")
    paths.root.mkdir(parents=True)
    unpack_bundle(bundle.data, paths.charm, bundle.sha256)
    config = AgentConfig(unit_zookeeper.hosts, (MACHINE, SHARED), machine_id=1)
    agent = UnitAgent(reactor, config, unit, units_dir=tmp_path / "units", tools_pythonpath=str(REPO))
    running = defer.Deferred.fromCoroutine(agent.run())
    units = UnitsState(admin, IDENTITIES)
    try:

        async def state_is(wanted: str) -> bool:
            return (await units.read(unit)).agent_state == wanted

        await _until(lambda: state_is("install-error"))
        record = await units.read(unit)
        assert record.hook == "install"
        assert any("hooks/install is not executable" in line for line in record.hook_output), record.hook_output
        await units.request_resolved(unit, retry=False)
        await _until(lambda: state_is("start-error"))
        record = await units.read(unit)
        assert record.hook == "start" and any("timed out" in line for line in record.hook_output), record
        assert agent.hooks_run == ["install", "config-changed", "start"]  # config-changed: missing, not an error
        await services.mark_dying([unit])
        await _until(lambda: state_is("stopped"))  # no stop hook in the charm: stopped all the same
    finally:
        agent.stopped.callback(None)
        await running
        await agent.close()
        await admin.close()
        await provisioning.close()
