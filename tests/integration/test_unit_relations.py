"""Relations between unit agents on this machine, against a real ZooKeeper: real hooks run by the real runner,
the relation tools over the real socket, each agent with its own machine's credential.

Two services: ``keeper`` (provides db, peers ring; two units) and ``client`` (requires db). The hooks append
what they saw to one log per unit, so the order of hooks and the settings each hook read can be checked."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
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
from ensemble_orchestra.state.acl import Credential, machine_user, new_credential
from ensemble_orchestra.state.charms import CharmRecord
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.endpoints import match_relation, peer_relations
from ensemble_orchestra.state.errors import StateAuthError
from ensemble_orchestra.state.layout import charm_path, unit_relation_path
from ensemble_orchestra.state.relations import RelationsState
from ensemble_orchestra.state.services import ServiceRecord, ServicesState
from ensemble_orchestra.state.testing import Roles, initialized_zookeeper
from ensemble_orchestra.state.topology_node import TopologyNode
from ensemble_orchestra.state.units import UnitsState

ROLES = Roles.make()
ADMIN, PROVISIONING, SHARED = ROLES.admin, ROLES.provisioning, ROLES.machine_agents
IDENTITIES = ROLES.identities
REPO = Path(__file__).resolve().parents[2]

RECORD = 'echo "$JUJU_HOOK_NAME ${JUJU_REMOTE_UNIT:--} ${JUJU_RELATION_ID:--} $*" >> "$CHARM_DIR/../ran.log"\n'
KEEPER = {
    "metadata.yaml": "name: keeper\nsummary: s\ndescription: d\nprovides:\n  db: {interface: probe-db}\n"
    "peers:\n  ring: {interface: ring}\n",
    "config.yaml": "options:\n  fail-joined: {type: string, default: '', description: whose joined hook fails}\n",
    "hooks/start": "#!/bin/sh\nopen-port 7000\n",
    "hooks/db-relation-joined": "#!/bin/sh\nset -e\nrelation-set token=t-$JUJU_REMOTE_UNIT -r $JUJU_RELATION_ID\n"
    + RECORD.replace("$*", "ids=$(relation-ids)")
    + 'if [ "$(config-get fail-joined)" = "$JUJU_UNIT_NAME" ]; then echo "joined refuses" >&2; exit 4; fi\n',
    "hooks/db-relation-changed": "#!/bin/sh\nset -e\n" + RECORD.replace("$*", "list=$(relation-list)"),
    "hooks/db-relation-departed": "#!/bin/sh\nset -e\n" + RECORD.replace("$*", "list=$(relation-list)"),
    "hooks/db-relation-broken": "#!/bin/sh\nset -e\n" + RECORD,
    "hooks/ring-relation-joined": "#!/bin/sh\nset -e\n" + RECORD.replace("$*", "peer=$(relation-get private-address)"),
    "hooks/ring-relation-changed": "#!/bin/sh\nset -e\n" + RECORD,
}
CLIENT = {
    "metadata.yaml": "name: client\nsummary: s\ndescription: d\nrequires:\n  db: {interface: probe-db}\n",
    "hooks/db-relation-joined": "#!/bin/sh\nset -e\n" + RECORD,
    "hooks/db-relation-changed": "#!/bin/sh\nset -e\n" + RECORD.replace("$*", "token=$(relation-get token)"),
    "hooks/db-relation-departed": "#!/bin/sh\nset -e\n" + RECORD.replace("$*", "token=$(relation-get token)"),
    "hooks/db-relation-broken": "#!/bin/sh\nset -e\n" + RECORD,
}


def _charm(root: Path, files: dict[str, str]) -> CharmDirectory:
    for name, text in {**files, "revision": "1\n"}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name.startswith("hooks/"):
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return CharmDirectory.load(root)


@pytest.fixture(scope="module")
def relations_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    with initialized_zookeeper(Path(tmp_path_factory.mktemp("relations-zookeeper")), ROLES) as server:
        yield server


async def _until(check: Any, timeout: float = 30.0, what: str = "") -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"not reached in {timeout} s: {what}")


@dataclass
class Env:
    zookeeper: ZooKeeperServer
    admin: StateClient
    root: Path
    bundles: dict[str, Any]
    credentials: dict[str, Credential]
    agents: dict[str, tuple[UnitAgent, defer.Deferred[None]]]

    async def publish(self, name: str, files: dict[str, str]) -> CharmRecord:
        directory = _charm(self.root / "repo" / name, files)
        bundle = make_bundle(directory)
        record = CharmRecord(
            f"local:bookworm/{name}-1",
            bundle.sha256,
            "b",
            "http://unused/b",
            directory.metadata.to_dict(),
            directory.config.to_dict(),
        )
        await self.admin.create(charm_path(record.id), record.encode(), acl=IDENTITIES.shared())
        self.bundles[record.id] = (bundle, directory.metadata)
        return record

    async def start(self, unit: str, charm: CharmRecord) -> UnitAgent:
        credential = self.credentials.setdefault(unit, new_credential(machine_user(len(self.credentials) + 1)))
        provisioning = await StateClient.connect(reactor, self.zookeeper.hosts, credentials=[PROVISIONING], timeout=10)
        try:
            await UnitsState(provisioning, IDENTITIES).grant(unit, credential.identity)
        finally:
            await provisioning.close()
        units_dir = self.root / "units"
        paths = UnitPaths.of(unit, units_dir)
        paths.root.mkdir(parents=True)
        bundle = self.bundles[charm.id][0]
        unpack_bundle(bundle.data, paths.charm, bundle.sha256)
        config = AgentConfig(self.zookeeper.hosts, (credential, SHARED), machine_id=1)
        agent = UnitAgent(reactor, config, unit, units_dir=units_dir, tools_pythonpath=str(REPO))
        self.agents[unit] = (agent, defer.Deferred.fromCoroutine(agent.run()))
        return agent

    def log(self, unit: str) -> list[str]:
        path = UnitPaths.of(unit, self.root / "units").root / "ran.log"
        return path.read_text().splitlines() if path.exists() else []

    async def state(self, unit: str) -> str:
        return (await UnitsState(self.admin, IDENTITIES).read(unit)).agent_state


@pytest_twisted.async_yield_fixture
async def env(relations_zookeeper: ZooKeeperServer, tmp_path: Path) -> AsyncIterator[Env]:
    admin = await StateClient.connect(reactor, relations_zookeeper.hosts, credentials=[ADMIN], timeout=10)
    environment = Env(relations_zookeeper, admin, tmp_path, {}, {}, {})
    try:
        yield environment
    finally:
        for agent, running in environment.agents.values():
            if not agent.stopped.called:
                agent.stopped.callback(None)
            await running
            await agent.close()
        await admin.close()


def _after(lines: list[str], first: str) -> list[str]:
    return [line for line in lines if line.startswith(first)]


@pytest_twisted.ensureDeferred
async def test_relation_hooks_settings_errors_and_removal(env: Env) -> None:
    keeper, client = await env.publish("keeper", KEEPER), await env.publish("client", CLIENT)
    services = ServicesState(env.admin, IDENTITIES)
    keeper_meta, client_meta = env.bundles[keeper.id][1], env.bundles[client.id][1]
    await services.deploy(ServiceRecord("keeper", keeper.id, {}, 20.0), {}, 2, peer_relations("keeper", keeper_meta))
    await services.deploy(ServiceRecord("client", client.id, {}, 20.0), {}, 1)
    for unit, charm in (("keeper/0", keeper), ("keeper/1", keeper), ("client/0", client)):
        await env.start(unit, charm)
    for unit in ("keeper/0", "keeper/1", "client/0"):
        await _until(lambda unit=unit: _is(env, unit, "started"), what=f"{unit} started")

    # The peer relation from deploy: each keeper joined the other and read its private address.
    await _until(lambda: _has(env, "keeper/0", "ring-relation-changed keeper/1"), what="peers")
    assert _after(env.log("keeper/0"), "ring-relation-joined keeper/1 ring:0 peer=")[0].split("peer=")[1]

    # The first keeper refuses its joined hook: its token (set before it failed) is never seen by the client.
    await services.set_settings("keeper", {"fail-joined": "keeper/0"})
    topology = await TopologyNode(env.admin).read()
    match = match_relation(("client", None), ("keeper", None), {"keeper": keeper_meta, "client": client_meta}, topology)
    relation = await RelationsState(env.admin, IDENTITIES).add(match.interface, match.endpoints)
    db = f"db:{relation.id}"

    async def keeper_error() -> bool:
        record = await UnitsState(env.admin, IDENTITIES).read("keeper/0")
        return db in record.relation_errors

    await _until(keeper_error, what="keeper/0's relation error")
    error = (await UnitsState(env.admin, IDENTITIES).read("keeper/0")).relation_errors[db]
    assert (error.name, error.hook, error.remote_unit, error.remote_service) == (
        "db",
        "db-relation-joined",
        "client/0",
        "client",
    )
    assert error.hook_output[-2:] == ("joined refuses", "hook db-relation-joined exited 4")
    assert await env.state("keeper/0") == "started"  # the unit carries on; the relation is what failed
    await _until(lambda: _has(env, "client/0", f"db-relation-changed keeper/1 {db} token=t-client/0"), what="k1")
    assert not _after(env.log("client/0"), f"db-relation-changed keeper/0 {db} token=t-")  # never seen

    # resolved --retry after the fix: the hook runs again and its token reaches the client.
    await services.set_settings("keeper", {"fail-joined": None})
    await UnitsState(env.admin, IDENTITIES).request_resolved("keeper/0", True, "db")
    await _until(lambda: _has(env, "client/0", f"db-relation-changed keeper/0 {db} token=t-client/0"), what="retry")
    assert not (await UnitsState(env.admin, IDENTITIES).read("keeper/0")).relation_errors

    # Order on each side: joined(u) directly followed by changed(u); the joined hook sees the relation's id.
    for unit in ("client/0", "keeper/1"):
        lines = [line for line in env.log(unit) if line.startswith("db-relation-")]
        for index, line in enumerate(lines):
            if line.startswith("db-relation-joined"):
                remote = line.split()[1]
                assert lines[index + 1].startswith(f"db-relation-changed {remote} {db}"), lines
    assert _after(env.log("keeper/1"), f"db-relation-joined client/0 {db} ids={db}")
    assert _after(env.log("keeper/1"), f"db-relation-changed client/0 {db} list=client/0")

    # A unit writes its own settings and no other's: keeper/1's credential cannot touch client/0's node.
    intruder = await StateClient.connect(
        reactor, env.zookeeper.hosts, credentials=[env.credentials["keeper/1"], SHARED], timeout=10
    )
    try:
        with pytest.raises(StateAuthError):
            await intruder.set(unit_relation_path("client/0", relation.id), b"token: forged\n")
    finally:
        await intruder.close()

    # A dying keeper leaves the relation (departed on both sides, broken on its own) before its stop hook.
    await services.mark_dying(["keeper/1"])
    await _until(lambda: _is(env, "keeper/1", "stopped"), what="keeper/1 stopped")
    k1 = [line for line in env.log("keeper/1") if line.startswith(("db-relation-departed", "db-relation-broken"))]
    assert k1 == [f"db-relation-departed client/0 {db} list=", f"db-relation-broken - {db} "]
    await _until(lambda: _has(env, "client/0", f"db-relation-departed keeper/1 {db} token=t-client/0"), what="dep")

    # remove-relation: departed then broken on both sides, and the settings nodes go.
    await RelationsState(env.admin, IDENTITIES).remove(relation.id)
    await _until(lambda: _has(env, "client/0", f"db-relation-broken - {db}"), what="client broken")
    await _until(lambda: _has(env, "keeper/0", f"db-relation-broken - {db}"), what="keeper broken")
    client_db = [
        line for line in env.log("client/0") if line.startswith(("db-relation-departed", "db-relation-broken"))
    ]
    assert client_db[-2:] == [f"db-relation-departed keeper/0 {db} token=t-client/0", f"db-relation-broken - {db} "]
    for unit in ("client/0", "keeper/0"):
        assert await env.admin.exists(unit_relation_path(unit, relation.id)) is None


async def _is(env: Env, unit: str, state: str) -> bool:
    return await env.state(unit) == state


async def _has(env: Env, unit: str, prefix: str) -> bool:
    return bool(_after(env.log(unit), prefix))
