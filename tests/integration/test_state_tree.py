"""The environment's tree and its access control, on a real ZooKeeper of this module's own (initialize narrows
the root's ACL, which the session's shared ZooKeeper must not see)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from twisted.internet import defer, reactor

from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer, free_port
from ensemble_orchestra.secret import Secret
from ensemble_orchestra.state.acl import (
    ADMIN_USER,
    MACHINE_AGENTS_USER,
    PROVISIONING_USER,
    Credential,
    Identities,
    machine_user,
    new_credential,
)
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.environment import (
    EnvironmentSettings,
    initialize_tree,
    read_environment,
    read_settings,
    store_environment,
    wait_initialized,
)
from ensemble_orchestra.state.errors import StateAuthError, StateConnectionError, TopologyError
from ensemble_orchestra.state.layout import ENVIRONMENT, INITIALIZED, SETTINGS, TOPOLOGY, machine_path
from ensemble_orchestra.state.machines import AgentPresence, MachineRecord, MachinesState

ADMIN = Credential(ADMIN_USER, Secret("tree-admin-secret"))
PROVISIONING = new_credential(PROVISIONING_USER)
SHARED = new_credential(MACHINE_AGENTS_USER)
MACHINE0 = new_credential(machine_user(0))
IDENTITIES = Identities(ADMIN.identity, PROVISIONING.identity, SHARED.identity)


@pytest.fixture(scope="module")
def tree_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(Path(tmp_path_factory.mktemp("tree-zookeeper")), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _session(server: ZooKeeperServer, *credentials: Credential) -> StateClient:
    return await StateClient.connect(reactor, server.hosts, credentials=credentials, timeout=10)


@pytest.fixture(scope="module")
def initialized(tree_zookeeper: ZooKeeperServer) -> ZooKeeperServer:
    """initialize's tree, made as initialize makes it: by the provisioning agent's credential."""

    async def make() -> None:
        client = await _session(tree_zookeeper, PROVISIONING)
        try:
            settings = EnvironmentSettings("orchestra", "0-test", IDENTITIES, tree_zookeeper.hosts, "http://x/t", "ab")
            assert await initialize_tree(client, settings, MachineRecord(0, "uid-0", "node001", MACHINE0.identity))
            assert not await initialize_tree(client, settings, MachineRecord(0, "uid-0", "node001", MACHINE0.identity))
        finally:
            await client.close()

    pytest_twisted.blockon(defer.Deferred.fromCoroutine(make()))
    return tree_zookeeper


@pytest_twisted.ensureDeferred
async def test_the_admin_sees_the_whole_tree_and_initialized_names_the_version(initialized: ZooKeeperServer) -> None:
    admin = await _session(initialized, ADMIN)
    try:
        assert await wait_initialized(admin, 5) == "0-test"
        settings = await read_settings(admin)
        assert settings.identities == IDENTITIES and settings.tools_sha256 == "ab"
        children = set(await admin.get_children("/"))
        assert {"initialized", "settings", "topology", "machines", "agents", "services", "units", "charms"} <= children
        record = await MachinesState(admin, IDENTITIES).read(0)
        assert record == MachineRecord(0, "uid-0", "node001", MACHINE0.identity)
    finally:
        await admin.close()


def test_an_anonymous_client_gets_nothing(initialized: ZooKeeperServer) -> None:
    """No ACL of ours names 'world': listing the root, reading any node, creating one — all refused."""
    kazoo = KazooClient(hosts=initialized.hosts, timeout=5)
    kazoo.start(timeout=10)
    try:
        calls = {
            "list /": lambda: kazoo.get_children("/"),
            "get settings": lambda: kazoo.get(SETTINGS),
            "get topology": lambda: kazoo.get(TOPOLOGY),
            "get initialized": lambda: kazoo.get(INITIALIZED),
            "get machine 0": lambda: kazoo.get(machine_path(0)),
            "create": lambda: kazoo.create("/intruder", b"x"),
            "list /zookeeper": lambda: kazoo.get_children("/zookeeper"),
        }
        allowed = []
        for name, call in calls.items():
            try:
                call()
                allowed.append(name)
            except NoAuthError:
                pass
        assert allowed == []
    finally:
        kazoo.stop()
        kazoo.close()


@pytest_twisted.ensureDeferred
async def test_environment_credentials_are_for_the_admin_and_the_provisioning_agent_only(
    initialized: ZooKeeperServer,
) -> None:
    """The CLI stores /environment (with the provider's passwords); a machine agent's credentials cannot read it,
    while they can read what agents share."""
    admin = await _session(initialized, ADMIN)
    machine = await _session(initialized, MACHINE0, SHARED)
    provisioning = await _session(initialized, PROVISIONING)
    try:
        config = {"name": "tree", "config": {"orchestra-pass": "cobbler-pw", "storage-pass": "dav-pw"}}
        assert await store_environment(admin, IDENTITIES, config)
        assert not await store_environment(admin, IDENTITIES, config)
        assert await read_environment(provisioning) == config
        with pytest.raises(StateAuthError):
            await machine.get(ENVIRONMENT)
        with pytest.raises(StateAuthError):
            await machine.set(TOPOLOGY, b"version: 1\n")
        assert (await read_settings(machine)).zookeeper_servers == initialized.hosts
        await machine.get(TOPOLOGY)
    finally:
        for client in (admin, machine, provisioning):
            await client.close()


@pytest_twisted.ensureDeferred
async def test_machines_come_and_go_with_their_nodes_and_agents_register_only_their_own(
    initialized: ZooKeeperServer,
) -> None:
    admin = await _session(initialized, ADMIN)
    provisioning = await _session(initialized, PROVISIONING)
    try:
        machines = MachinesState(admin, IDENTITIES)
        new_id = await machines.add_machine()
        assert new_id >= 1 and (await machines.read(new_id)) == MachineRecord(new_id)

        own = new_credential(machine_user(new_id))
        await MachinesState(provisioning, IDENTITIES).record_instance(
            MachineRecord(new_id, "uid-x", "node009", own.identity)
        )
        agent = await _session(initialized, own, SHARED)
        try:
            presence = AgentPresence(("10.0.0.9",), "node009", "0-test", 42)
            await MachinesState(agent, IDENTITIES).register(new_id, presence, own.identity)
            assert (await machines.presences([new_id])) == {new_id: presence}
            with pytest.raises(StateAuthError):  # another machine's node is not its to register under
                await MachinesState(agent, IDENTITIES).register(0, presence, own.identity)
        finally:
            await agent.close()
        assert await machines.presence(new_id) is None  # the session ended: so did the presence

        with pytest.raises(TopologyError):
            await machines.remove_machine(0)
        await machines.remove_machine(new_id)
        assert new_id not in await machines.read_all()
        assert new_id not in (await machines.topology.read()).machines
    finally:
        await admin.close()
        await provisioning.close()


@pytest_twisted.ensureDeferred
async def test_waiting_for_an_uninitialized_environment_is_bounded(zookeeper: ZooKeeperServer) -> None:
    """On a ZooKeeper where nobody initialized anything, the wait ends with what to look at."""
    client = await StateClient.connect(reactor, zookeeper.hosts, "whatever", timeout=10)
    try:
        with pytest.raises(StateConnectionError, match="not initialized within 0.5 s.*cloud-init"):
            await wait_initialized(client, 0.5)
    finally:
        await client.close()
