"""Services and units in the environment's tree, on a real ZooKeeper of this module's own: the deploy, grow,
shrink and destroy transactions, and who may write a unit's nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer
from ensemble_orchestra.state.acl import Credential, machine_user, new_credential
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.errors import StateAuthError, StateNotFoundError, TopologyError
from ensemble_orchestra.state.layout import machine_path, service_config_path, unit_path
from ensemble_orchestra.state.machines import MachinesState
from ensemble_orchestra.state.services import ServiceRecord, ServicesState
from ensemble_orchestra.state.testing import Roles, initialized_zookeeper, session
from ensemble_orchestra.state.topology_node import TopologyNode
from ensemble_orchestra.state.units import UnitPresence, UnitRecord, UnitsState

ROLES = Roles.make()
ADMIN, PROVISIONING, SHARED = ROLES.admin, ROLES.provisioning, ROLES.machine_agents
IDENTITIES = ROLES.identities


@pytest.fixture(scope="module")
def services_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    with initialized_zookeeper(Path(tmp_path_factory.mktemp("services-zookeeper")), ROLES) as server:
        yield server


async def _session(server: ZooKeeperServer, *credentials: Credential) -> StateClient:
    return await session(reactor, server.hosts, *credentials)


@pytest_twisted.ensureDeferred
async def test_deploy_places_each_unit_on_a_new_machine_with_the_services_constraints(
    services_zookeeper: ZooKeeperServer,
) -> None:
    admin = await _session(services_zookeeper, ADMIN)
    try:
        services = ServicesState(admin, IDENTITIES)
        record = ServiceRecord("db", "local:bookworm/mysql-1", {"orchestra-classes": "big"}, 60.0)
        units = await services.deploy(record, {"database": "shop"}, 2)
        assert units == ["db/0", "db/1"]
        topology = await TopologyNode(admin).read()
        placed = {u.name: u.machine for u in topology.service("db").units.values()}
        assert sorted(placed) == units and None not in placed.values() and 0 not in placed.values()
        assert len(set(placed.values())) == 2
        for machine in placed.values():
            assert (await MachinesState(admin, IDENTITIES).read(machine)).constraints == {"orchestra-classes": "big"}
        assert await services.read("db") == record
        assert (await services.read_settings("db"))[0] == {"database": "shop"}
        assert (await UnitsState(admin, IDENTITIES).read("db/1")) == UnitRecord("db/1", charm=record.charm)
        with pytest.raises(TopologyError, match="service db exists already"):
            await services.deploy(record, {}, 1)
        assert await services.add_units("db", 1) == ["db/2"]
    finally:
        await admin.close()


@pytest_twisted.ensureDeferred
async def test_only_the_units_own_machine_may_write_it_once_granted(services_zookeeper: ZooKeeperServer) -> None:
    """The provisioning agent grants machine N's identity on its units' nodes; another machine's agent is refused."""
    admin = await _session(services_zookeeper, ADMIN)
    own_credential, other_credential = new_credential(machine_user(90)), new_credential(machine_user(91))
    provisioning = await _session(services_zookeeper, PROVISIONING)
    own = await _session(services_zookeeper, own_credential, SHARED)
    other = await _session(services_zookeeper, other_credential, SHARED)
    try:
        [unit] = await ServicesState(admin, IDENTITIES).deploy(ServiceRecord("web", "local:bookworm/web-1"), {}, 1)
        units_as_own = UnitsState(own, IDENTITIES)
        with pytest.raises(StateAuthError):
            await units_as_own.report(UnitRecord(unit, "installed"))
        assert await UnitsState(provisioning, IDENTITIES).grant(unit, own_credential.identity)
        assert not await UnitsState(provisioning, IDENTITIES).grant(unit, own_credential.identity)
        await units_as_own.report(UnitRecord(unit, "started", private_address="10.0.0.5", open_ports=("80/tcp",)))
        await units_as_own.register(unit, UnitPresence(42, "0-test"), own_credential.identity)
        with pytest.raises(StateAuthError):
            await UnitsState(other, IDENTITIES).report(UnitRecord(unit, "stopped"))
        admin_units = UnitsState(admin, IDENTITIES)
        assert (await admin_units.read(unit)).agent_state == "started"
        assert (await admin_units.read(unit)).open_ports == ("80/tcp",)
        assert await admin_units.presence(unit) == UnitPresence(42, "0-test")
        await admin_units.request_resolved(unit, retry=True)
        assert await units_as_own.resolved_request(unit) is True
        await units_as_own.clear_resolved(unit)
        assert await admin_units.resolved_request(unit) is None
    finally:
        for client in (admin, provisioning, own, other):
            await client.close()


@pytest_twisted.ensureDeferred
async def test_removing_units_takes_their_nodes_children_and_empty_machines_in_one_go(
    services_zookeeper: ZooKeeperServer,
) -> None:
    admin = await _session(services_zookeeper, ADMIN)
    try:
        services = ServicesState(admin, IDENTITIES)
        units = await services.deploy(ServiceRecord("cache", "local:bookworm/cache-1"), {}, 2)
        topology = await TopologyNode(admin).read()
        machines = [topology.unit(u).machine for u in units]
        await UnitsState(admin, IDENTITIES).register(units[0], UnitPresence(7, "0-test"), ADMIN.identity)
        await services.mark_dying([units[0]])
        assert (await TopologyNode(admin).read()).unit(units[0]).dying
        removed = await services.remove_units([units[0]])
        assert removed == [machines[0]]
        topology = await TopologyNode(admin).read()
        assert units[0] not in topology.service("cache").units and machines[0] not in topology.machines
        for path in (unit_path(units[0]), machine_path(machines[0])):
            assert await admin.exists(path) is None
        assert await services.remove_units([units[1]], service="cache") == [machines[1]]
        assert "cache" not in (await TopologyNode(admin).read()).services
        with pytest.raises(StateNotFoundError):
            await admin.get(service_config_path("cache"))
    finally:
        await admin.close()


@pytest_twisted.ensureDeferred
async def test_settings_merge_and_none_resets_a_key(services_zookeeper: ZooKeeperServer) -> None:
    admin = await _session(services_zookeeper, ADMIN)
    try:
        services = ServicesState(admin, IDENTITIES)
        await services.deploy(ServiceRecord("conf", "local:bookworm/conf-1"), {"a": 1}, 1)
        assert await services.set_settings("conf", {"b": "x"}) == {"a": 1, "b": "x"}
        assert await services.set_settings("conf", {"a": None}) == {"b": "x"}
        settings, _ = await services.read_settings("conf")
        assert settings == {"b": "x"}
    finally:
        await admin.close()
