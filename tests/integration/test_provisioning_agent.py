"""The provisioning agent with a real ZooKeeper and a recording provider (the lab's tests run it on machine 0
with the Orchestra provider): it launches the machines of one change concurrently, and it drops a machine's
user data (its agent's secrets) from the provider's record once that machine's agent has registered — at once,
through a watch on its presence, not at the next periodic reconcile — and never before (the Orchestra
provider's ``forget_user_data`` itself is tested on fakes in tests/unit and on the lab's Cobbler in test_agents).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from ensemble_orchestra.agents.config import AgentConfig
from ensemble_orchestra.agents.provisioning import ProvisioningAgent
from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer
from ensemble_orchestra.provider.errors import ProviderError
from ensemble_orchestra.state.acl import Credential
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.environment import store_environment
from ensemble_orchestra.state.machines import AgentPresence, MachinesState
from ensemble_orchestra.state.services import ServiceRecord, ServicesState
from ensemble_orchestra.state.testing import Roles, initialized_zookeeper, session

ROLES = Roles.make()
BOUND = 5.0  # s from a registration to the drop (measured: tens of ms; printed)


@pytest.fixture
def zookeeper(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    """Each test's own: the agent launches every topology machine its provider does not know."""
    with initialized_zookeeper(tmp_path / "zookeeper", ROLES) as server:
        yield server


@dataclass(frozen=True)
class Machine:
    """What the agent reads of a provider machine."""

    machine_id: str
    instance_id: str
    system_name: str
    holds_user_data: bool = True
    address: str = ""


class RecordingProvider:
    """Machines that hold user data until ``forget_user_data``; each drop's time; failures on request."""

    def __init__(self) -> None:
        self.machines = {"0": Machine("0", "uid-0", "node001")}
        self.credentials: dict[int, Credential] = {}
        self.forgotten: dict[str, float] = {}
        self.failures_to_give = 0
        self.forget_calls = 0
        self.gate: defer.Deferred[None] | None = None  # when set, each launch waits for it
        self.in_flight = self.most_in_flight = 0
        self.failing: set[str] = set()  # machine ids whose launch fails
        self.starts: dict[str, int] = {}  # start_machine calls by machine id
        self.resume_fails = False  # resume_launch (called on adopting a machine) raises

    async def resume_launch(self, machine: Machine) -> bool:
        if self.resume_fails:
            raise ProviderError(f"{machine.system_name}'s BMC does not answer (test)")
        return False

    async def get_machines(self) -> list[Machine]:
        return list(self.machines.values())

    async def start_machine(self, machine_data: dict[str, Any]) -> list[Machine]:
        machine_id = str(machine_data["machine-id"])
        self.starts[machine_id] = self.starts.get(machine_id, 0) + 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate
        finally:
            self.in_flight -= 1
        if machine_id in self.failing:
            raise ProviderError(f"no available system for machine {machine_id} (test)")
        self.credentials[int(machine_id)] = Credential.from_dict(machine_data["agent-credentials"][0])
        self.machines[machine_id] = Machine(machine_id, f"uid-{machine_id}", f"node{int(machine_id) + 1:03d}")
        return [self.machines[machine_id]]

    async def forget_user_data(self, machine: Machine) -> bool:
        self.forget_calls += 1
        if self.failures_to_give:
            self.failures_to_give -= 1
            raise ProviderError(f"Cobbler refused the edit of {machine.system_name} (test)")
        current = self.machines[machine.machine_id]
        if not current.holds_user_data:
            return False
        self.machines[machine.machine_id] = dataclasses.replace(current, holds_user_data=False)
        self.forgotten[machine.machine_id] = time.monotonic()
        return True

    async def shutdown_machines(self, machines: list[Machine]) -> list[Machine]:
        for machine in machines:
            self.machines.pop(machine.machine_id, None)
        return machines

    async def close(self) -> None:
        pass


async def _until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await deferLater(reactor, 0.02, lambda: None)


@asynccontextmanager
async def running_agent(
    zookeeper: ZooKeeperServer, provider: RecordingProvider
) -> AsyncIterator[tuple[ProvisioningAgent, StateClient]]:
    """The real agent with *provider*, after its first reconcile, and the admin's session. No periodic reconcile:
    only the topology's watch, the presence watches and the test's own triggers start one."""
    admin = await session(reactor, zookeeper.hosts, ROLES.admin)
    await store_environment(admin, ROLES.identities, {"name": "test", "config": {"type": "orchestra"}})
    config = AgentConfig(zookeeper.hosts, (ROLES.provisioning,), machine_agents=ROLES.machine_agents)
    agent = ProvisioningAgent(reactor, config, make_provider=lambda name, cfg: provider, reconcile_interval=3600)
    running = defer.Deferred.fromCoroutine(agent.run())
    try:
        await _until(lambda: agent.reconciled >= 1, 10, "the first reconcile")
        yield agent, admin
    finally:
        if not agent.stopped.called:
            agent.stopped.callback(None)
        try:
            await running
        finally:
            await agent.close()
            await admin.close()


async def _register(hosts: str, machine_id: int, credential: Credential) -> StateClient:
    """Machine *machine_id*'s agent registering, as the machine agent does (its session keeps the presence)."""
    client = await session(reactor, hosts, credential)
    presence = AgentPresence((f"10.9.0.{machine_id}",), f"node{machine_id + 1:03d}", "test", 1)
    await MachinesState(client, ROLES.identities).register(machine_id, presence, credential.identity)
    return client


@pytest_twisted.ensureDeferred
async def test_the_machines_of_one_change_are_launched_concurrently(zookeeper: ZooKeeperServer) -> None:
    """deploy -n 3 adds three machines in one change: their launches are in flight together, and a failed one is
    that machine's own (the others are launched)."""
    provider = RecordingProvider()
    provider.gate = defer.Deferred()
    async with running_agent(zookeeper, provider) as (agent, admin):
        units = await ServicesState(admin, ROLES.identities).deploy(ServiceRecord("web", "local:bookworm/web-1"), {}, 3)
        assert len(units) == 3
        await _until(lambda: provider.in_flight == 3, 10, "three launches in flight at once")
        provider.failing.add("2")
        reconciled = agent.reconciled  # the reconcile launching them ends only once all three have
        provider.gate.callback(None)
        await _until(lambda: agent.reconciled > reconciled, 10, "the reconcile of the three launches ended")
        records = await MachinesState(admin, ROLES.identities).read_all()
        assert sorted(agent.launched) == [1, 3] and provider.most_in_flight == 3
        assert [records[i].provider_machine_id for i in (1, 2, 3)] == ["uid-1", None, "uid-3"]
        assert "no available system for machine 2" in (records[2].launch_error or "")


@pytest_twisted.ensureDeferred
async def test_a_reconcile_that_fails_waits_for_its_launches_so_none_is_launched_twice(
    zookeeper: ZooKeeperServer,
) -> None:
    """Machine 1 is being launched when the same reconcile fails on machine 2 (adopted; its BMC does not answer):
    that reconcile ends only with machine 1's launch, so the next one sees machine 1 and never launches it again."""
    provider = RecordingProvider()
    provider.resume_fails = True
    provider.gate = defer.Deferred()
    async with running_agent(zookeeper, provider) as (agent, admin):
        reconciled = agent.reconciled
        provider.machines["2"] = Machine("2", "uid-2", "node003")  # launched just before a crash: to be adopted
        await ServicesState(admin, ROLES.identities).deploy(ServiceRecord("web", "local:bookworm/web-1"), {}, 2)
        await _until(lambda: provider.in_flight == 1, 10, "machine 1's launch in flight")
        await deferLater(reactor, 0.5, lambda: None)  # machine 2's adoption fails meanwhile
        settled = agent.trigger()  # a tick: it must wait for the run under way
        await deferLater(reactor, 0.5, lambda: None)
        assert provider.starts == {"1": 1} and agent.reconciled == reconciled
        provider.gate.callback(None)
        await settled
        # The failed run counts nothing; the next one completes, and machine 1 was launched once.
        assert agent.reconciled == reconciled + 1 and provider.starts == {"1": 1} and agent.launched == [1]


@pytest_twisted.ensureDeferred
async def test_user_data_is_dropped_once_the_agent_registers_and_not_before(
    zookeeper: ZooKeeperServer,
) -> None:
    hosts = zookeeper.hosts
    provider = RecordingProvider()
    sessions: list[StateClient] = []
    async with running_agent(zookeeper, provider) as (agent, admin):
        try:
            assert provider.forgotten == {}  # machine 0's agent has not registered: its user data stays

            # Machine 0's agent registers (the admin stands in for its credential): dropped at once.
            registered = time.monotonic()
            sessions.append(await _register(hosts, 0, ROLES.admin))
            await _until(lambda: "0" in provider.forgotten, BOUND, "machine 0's user data dropped")
            print(f"machine 0 registered → user data dropped: {provider.forgotten['0'] - registered:.3f} s")

            # A new machine: launched with user data, which stays until its own agent registers.
            machines = MachinesState(admin, ROLES.identities)
            reconciled = agent.reconciled
            new_id = await machines.add_machine()
            await _until(lambda: agent.reconciled > reconciled, 10, f"machine {new_id} launched")
            assert new_id in provider.credentials and str(new_id) not in provider.forgotten
            assert new_id in agent._awaited  # watched from its launch on

            # Its first drop fails (Cobbler refused the edit): logged, and the next reconcile drops it.
            provider.failures_to_give = 1
            registered = time.monotonic()
            sessions.append(await _register(hosts, new_id, provider.credentials[new_id]))
            await _until(lambda: provider.forget_calls >= 2, BOUND, f"machine {new_id}'s first drop tried")
            assert str(new_id) not in provider.forgotten
            await agent.trigger()
            assert str(new_id) in provider.forgotten
            took = time.monotonic() - registered
            print(f"machine {new_id} registered → user data dropped (second try): {took:.3f} s")

            # Dropped once: later reconciles leave the machines alone (no watch, no call).
            calls = provider.forget_calls
            await agent.trigger()
            assert provider.forget_calls == calls and agent._awaited == {}
        finally:
            for client in sessions:
                await client.close()
