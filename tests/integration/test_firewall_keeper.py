"""The machine agent's firewall keeper against a real ZooKeeper: the policy it applies follows the topology
(relations added and removed, expose, unexpose), a unit's open ports (written by the unit agent's session, with
its machine's credential) and the machines' addresses (the provider's record, an agent's presence), and while an
address is unknown it looks again on its own. nft is not run here: a recording stand-in takes the policies
(agents/firewall.py is tested on a real nft in tests/integration/test_firewall.py).

Each test deploys its own services and reads their machines from the topology (the suite's workers may run them
in either order); machine N's address is 10.9.0.N.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ensemble_orchestra.agents import firewall_keeper
from ensemble_orchestra.agents.firewall import Firewall
from ensemble_orchestra.agents.firewall_keeper import FirewallKeeper
from ensemble_orchestra.agents.firewall_rules import FirewallPolicy
from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer
from ensemble_orchestra.state.acl import Credential, machine_user, new_credential
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.machines import AgentPresence, MachineRecord, MachinesState
from ensemble_orchestra.state.relations import RelationsState
from ensemble_orchestra.state.services import ServiceRecord, ServicesState
from ensemble_orchestra.state.testing import Roles, initialized_zookeeper, session
from ensemble_orchestra.state.topology import Endpoint
from ensemble_orchestra.state.topology_node import TopologyNode
from ensemble_orchestra.state.units import UnitRecord, UnitsState
from ensemble_orchestra.state.watch import NodeWatch

ROLES = Roles.make()
IDENTITIES = ROLES.identities
DB = (Endpoint("mysql", "db", "server"), Endpoint("wordpress", "db", "client"))
BOUND = 10.0  # s for the keeper to apply after a change (measured: a few ms to tens of ms, printed by each test)
RETRY = 0.2  # s: UNKNOWN_RETRY here (5 s in the agent)


def address(machine: int) -> str:
    return f"10.9.0.{machine}"


@pytest.fixture(scope="module")
def keeper_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    with initialized_zookeeper(Path(tmp_path_factory.mktemp("firewall-keeper-zookeeper")), ROLES) as server:
        yield server


@dataclass
class RecordingFirewall:
    """Firewall's contract without nft: each policy applied, and when; True when it differs from the last."""

    applied: list[tuple[float, FirewallPolicy]] = field(default_factory=list)

    async def apply(self, policy: FirewallPolicy) -> bool:
        changed = not self.applied or self.applied[-1][1] != policy
        self.applied.append((time.monotonic(), policy))
        return changed

    async def until(self, expected: FirewallPolicy, since: float, what: str) -> float:
        """Seconds from *since* (time.monotonic) to the first apply of *expected* at or after it."""
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            for at, policy in self.applied:
                if at >= since and policy == expected:
                    return at - since
            await deferLater(reactor, 0.002, lambda: None)
        last = self.applied[-1][1] if self.applied else None
        raise AssertionError(f"{what}: {expected} not applied within {BOUND} s (last: {last})")

    def changes(self) -> int:
        policies = [policy for _, policy in self.applied]
        return sum(1 for i, policy in enumerate(policies) if i == 0 or policies[i - 1] != policy)


@dataclass
class Env:
    server: ZooKeeperServer
    admin: StateClient
    provisioning: StateClient
    clients: list[StateClient] = field(default_factory=list)
    credentials: dict[int, Credential] = field(default_factory=dict)

    def credential(self, machine: int) -> Credential:
        return self.credentials.setdefault(machine, new_credential(machine_user(machine)))

    async def machine_session(self, machine: int) -> StateClient:
        """A session as machine *machine*'s agents have: its own credential and the machine agents' shared one."""
        client = await session(reactor, self.server.hosts, self.credential(machine), ROLES.machine_agents)
        self.clients.append(client)
        return client

    async def launched(self, machine: int, known: str | None) -> None:
        """What the provisioning agent records when it launches *machine*: the provider's address, if any."""
        record = MachineRecord(
            machine, f"uid-{machine}", f"node{machine}", self.credential(machine).identity, address=known
        )
        await MachinesState(self.provisioning, IDENTITIES).record_instance(record)

    async def machines_of(self, service: str) -> dict[str, int]:
        topology = await TopologyNode(self.admin).read()
        return {name: cast(int, unit.machine) for name, unit in topology.service(service).units.items()}

    async def keeper(self, machine: int, zookeeper_port: int | None = None) -> tuple[FirewallKeeper, Any, Any]:
        """Machine *machine*'s keeper on its agent's session, fed by the topology's watch as MachineAgent feeds it."""
        agent = await self.machine_session(machine)
        recorder = RecordingFirewall()
        keeper = FirewallKeeper(
            reactor,
            agent,
            MachinesState(agent, IDENTITIES),
            machine,
            cast(Firewall, recorder),
            zookeeper_port,
        )
        watch: NodeWatch[Any] = await TopologyNode(agent).watch(keeper.topology_changed)
        return keeper, recorder, watch


@pytest_twisted.async_yield_fixture
async def env(keeper_zookeeper: ZooKeeperServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    monkeypatch.setattr(firewall_keeper, "UNKNOWN_RETRY", RETRY)
    admin = await session(reactor, keeper_zookeeper.hosts, ROLES.admin)
    provisioning = await session(reactor, keeper_zookeeper.hosts, ROLES.provisioning)
    environment = Env(keeper_zookeeper, admin, provisioning)
    try:
        yield environment
    finally:
        for client in (*environment.clients, provisioning, admin):
            await client.close()


def _peers(ports: str | tuple[str, ...], *machines: int) -> FirewallPolicy:
    ports = (ports,) if isinstance(ports, str) else ports
    return FirewallPolicy(frozenset(), {port: frozenset(map(address, machines)) for port in ports})


async def _timed(
    change: Callable[[], Awaitable[Any]], recorder: RecordingFirewall, expected: FirewallPolicy, what: str
) -> float:
    """Seconds from the start of *change* to the keeper's apply of *expected*."""
    started = time.monotonic()
    await change()
    return await recorder.until(expected, started, what)


async def _until_unknown(keeper: FirewallKeeper, expected: list[int]) -> None:
    for _ in range(int(BOUND / 0.01)):
        if keeper._unknown == expected:
            return
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"the keeper's unknown machines: {keeper._unknown}, not {expected}")


@pytest_twisted.ensureDeferred
async def test_the_keeper_follows_relations_expose_open_ports_and_addresses(env: Env) -> None:
    """mysql (2 units, peers through cluster) and wordpress (1 unit, then 2 more); the keeper is mysql/0's
    machine's. Each step: the exact policy applied after the change, and how long after it."""
    services = ServicesState(env.admin, IDENTITIES)
    cluster = [("mysql-ha", Endpoint("mysql", "cluster", "peer"))]
    await services.deploy(ServiceRecord("mysql", "local:bookworm/mysql-1"), {}, 2, cluster)
    await services.deploy(ServiceRecord("wordpress", "local:bookworm/wordpress-1"), {}, 1)
    mysql, wordpress = await env.machines_of("mysql"), await env.machines_of("wordpress")
    own, peer, blog = mysql["mysql/0"], mysql["mysql/1"], wordpress["wordpress/0"]
    for machine in (own, peer, blog):
        await env.launched(machine, address(machine))
    await UnitsState(env.provisioning, IDENTITIES).grant("mysql/0", env.credential(own).identity)
    unit_agent = UnitsState(await env.machine_session(own), IDENTITIES)  # the unit agent's session
    keeper, recorder, watch = await env.keeper(own)
    timings: dict[str, float] = {}
    try:
        await recorder.until(FirewallPolicy(), 0.0, "no port opened yet")

        # The unit agent reports the port its hook opened: the keeper's watch on the unit node sees it.
        opened = UnitRecord("mysql/0", "started", "local:bookworm/mysql-1", open_ports=("3306/tcp",))
        timings["open-port"] = await _timed(
            lambda: unit_agent.report(opened), recorder, _peers("3306/tcp", peer), "open-port: from the peer's machine"
        )
        relations = RelationsState(env.admin, IDENTITIES)
        added: list[Any] = []

        async def add_relation() -> None:
            added.append(await relations.add("mysql", DB))

        timings["add-relation"] = await _timed(
            add_relation, recorder, _peers("3306/tcp", peer, blog), "add-relation: and from the requirer's machine"
        )
        node = TopologyNode(env.admin)
        timings["expose"] = await _timed(
            lambda: node.change(lambda t: t.set_exposed("mysql", True)),
            recorder,
            FirewallPolicy(frozenset({"3306/tcp"})),
            "expose: from anywhere",
        )
        timings["unexpose"] = await _timed(
            lambda: node.change(lambda t: t.set_exposed("mysql", False)),
            recorder,
            _peers("3306/tcp", peer, blog),
            "unexpose: from the related machines again",
        )
        both = UnitRecord("mysql/0", "started", "local:bookworm/mysql-1", open_ports=("3306/tcp", "4444/udp"))
        timings["second port"] = await _timed(
            lambda: unit_agent.report(both), recorder, _peers(("3306/tcp", "4444/udp"), peer, blog), "a second port"
        )
        timings["close-port"] = await _timed(
            lambda: unit_agent.report(opened), recorder, _peers("3306/tcp", peer, blog), "the second port closed"
        )

        # A unit on a machine the provider has not launched: applied without it; once the provider records the
        # address (no watch of the keeper's fires for that), the retry finds it.
        started = time.monotonic()
        (second,) = await services.add_units("wordpress", 1)
        booting = (await env.machines_of("wordpress"))[second]
        await recorder.until(_peers("3306/tcp", peer, blog), started, f"machine {booting}'s address unknown")
        await _until_unknown(keeper, [booting])
        timings["retry: the provider's record"] = await _timed(
            lambda: env.launched(booting, address(booting)),
            recorder,
            _peers("3306/tcp", peer, blog, booting),
            "the recorded address",
        )
        await _until_unknown(keeper, [])

        # A machine the provider knows no address of: its agent's presence says where it is.
        (third,) = await services.add_units("wordpress", 1)
        silent = (await env.machines_of("wordpress"))[third]
        await env.launched(silent, None)
        await _until_unknown(keeper, [silent])
        assert keeper.policy == _peers("3306/tcp", peer, blog, booting)

        async def register() -> None:
            presence = AgentPresence((address(silent),), f"node{silent}", "0-test", 4242)
            agent = MachinesState(await env.machine_session(silent), IDENTITIES)
            await agent.register(silent, presence, env.credential(silent).identity)

        timings["retry: the agent's presence"] = await _timed(
            register, recorder, _peers("3306/tcp", peer, blog, booting, silent), "the presence's address"
        )
        timings["remove-relation"] = await _timed(
            lambda: relations.remove(added[0].id), recorder, _peers("3306/tcp", peer), "remove-relation: the peer only"
        )
        assert keeper.policy == _peers("3306/tcp", peer)
        assert keeper.applied == recorder.changes()  # nft would have run once per change, not once per look
    finally:
        watch.stop()
        keeper.stop()
    applies = len(recorder.applied)
    await unit_agent.report(both)
    await deferLater(reactor, 0.3, lambda: None)
    assert len(recorder.applied) == applies, "a stopped keeper applied"
    print(
        "firewall keeper: from the change to apply(): "
        + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timings.items())
    )


@pytest_twisted.ensureDeferred
async def test_machine_0_lets_zookeeper_in_from_every_machine_and_from_all_while_one_is_unknown(env: Env) -> None:
    await ServicesState(env.admin, IDENTITIES).deploy(ServiceRecord("probe", "local:bookworm/probe-1"), {}, 2)
    machines = sorted(set((await TopologyNode(env.admin).read()).machines) - {0})
    for machine in machines:
        await env.launched(machine, address(machine))
    zookeeper = f"{env.server.port}/tcp"
    keeper, recorder, watch = await env.keeper(0, env.server.port)
    try:
        await recorder.until(_peers(zookeeper, *machines), 0.0, "ZooKeeper from every machine")
        started = time.monotonic()
        (unit,) = await ServicesState(env.admin, IDENTITIES).add_units("probe", 1)
        new = (await env.machines_of("probe"))[unit]
        opened = await recorder.until(FirewallPolicy(frozenset({zookeeper})), started, "a machine unknown: open to all")
        closed = await _timed(
            lambda: env.launched(new, address(new)),
            recorder,
            _peers(zookeeper, *machines, new),
            "the address recorded: only the machines",
        )
        assert keeper._unknown == []
    finally:
        watch.stop()
        keeper.stop()
    print(
        f"firewall keeper (machine 0): a new machine to apply() {opened * 1000:.1f} ms,"
        f" its address {closed * 1000:.1f} ms"
    )
