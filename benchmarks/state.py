"""The environment's state at scale: ``ensemble status`` of 1,000 machines, and the provisioning agent's reaction.

Usage: .venv/bin/python benchmarks/state.py [--machines 1000] [--units 2000] [--runs 7] [--additions 10]
       .venv/bin/python benchmarks/state.py --lab ENSEMBLE_HOME   # also times a real bootstrap of env "lab"
Starts its own ZooKeeper (Debian's 3.8, loopback), builds a synthetic environment in it and prints one JSON
object as its last line:

- status_s: wall time of one full ``environment_status`` (what ``ensemble status`` computes once it is
  connected) over ``--machines`` machines with ``--units`` units (each with its node, its agent's presence and
  its open ports, as a deployed unit has) and as many provider instances; median of
  ``--runs``. zk_round_trips: the ZooKeeper requests one status makes, counted on the way out of our
  StateClient (every request goes through its ``_call`` or ``commit``); zk_server_packets: the same seen by the
  server (``srvr``'s Received counter; it includes any ping of the benchmark's idle sessions).
- provision_reaction_s: from a machine being added to the topology (the admin's ``add_machine`` called) to the
  provisioning agent calling ``start_machine`` on its provider (a fake recording the time), in the same big
  environment; median of ``--additions``.
- bootstrap_to_initialized_s (``--lab`` only): ``ensemble destroy-environment -e lab -y`` (idempotent: nothing to
  release when it is not bootstrapped), then ``ensemble bootstrap -e lab --wait`` timed as a subprocess.

The tree: ``initialize_tree`` as ``ensemble-admin initialize`` makes it, machines added by the admin in a few
multi-transactions (topology + their ``/machines`` nodes, as ``MachinesState.add_machine`` does one at a time),
instance ids recorded with ``MachinesState.record_instance`` (the provisioning agent's call), 90% of the machines
with a presence node registered (ephemeral) from a second session holding one machine credential that every
machine node's ACL names (real agents each have their own; ZooKeeper's work per node is the same).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer, task

from ensemble_orchestra.agents.config import AgentConfig
from ensemble_orchestra.agents.provisioning import ProvisioningAgent
from ensemble_orchestra.deferreds import gather
from ensemble_orchestra.lab.zookeeper_server import ZooKeeperServer, four_letter_word, free_port
from ensemble_orchestra.secret import Secret
from ensemble_orchestra.state.acl import (
    ADMIN_USER,
    MACHINE_AGENTS_USER,
    PROVISIONING_USER,
    Credential,
    Identities,
    new_credential,
)
from ensemble_orchestra.state.client import StateClient
from ensemble_orchestra.state.environment import EnvironmentSettings, initialize_tree, store_environment
from ensemble_orchestra.state.layout import dump_document, machine_path, service_path, unit_path
from ensemble_orchestra.state.machines import AgentPresence, MachineRecord, MachinesState
from ensemble_orchestra.state.services import ServiceRecord
from ensemble_orchestra.state.status import environment_status
from ensemble_orchestra.state.topology import Topology
from ensemble_orchestra.state.topology_node import TopologyNode
from ensemble_orchestra.state.transaction import Create, Operation
from ensemble_orchestra.state.units import UnitPresence, UnitRecord, UnitsState

ADMIN = Credential(ADMIN_USER, Secret(secrets.token_urlsafe(32)))  # the environment's admin-secret
PROVISIONING = new_credential(PROVISIONING_USER)
SHARED = new_credential(MACHINE_AGENTS_USER)
AGENT = new_credential("machine-bench")  # every machine's agent identity here (see the module's docstring)
IDENTITIES = Identities(ADMIN.identity, PROVISIONING.identity, SHARED.identity)
BATCH = 250  # machines per multi-transaction (~100 KB of requests each; ZooKeeper takes up to 1 MB)
SERVICES = 20
PRESENT = 0.9  # the share of machines whose agent is connected
REACTION_TIMEOUT = 30.0


class CountingClient(StateClient):
    """A StateClient that counts the requests it sends: every one goes through ``_call`` or ``commit``."""

    requests = 0

    async def _call(self, path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return await super()._call(path, method, *args, **kwargs)

    async def commit(self, operations: Sequence[Operation], where: str) -> None:
        self.requests += 1
        await super().commit(operations, where)


@dataclass(frozen=True)
class Instance:
    """A provider instance as status reads it (and as the provisioning agent reads ``get_machines``)."""

    machine_id: str
    instance_id: str
    system_name: str
    dns_name: str
    state: str = "provisioned"


def _instance(machine_id: int) -> Instance:
    return Instance(str(machine_id), f"uid-{machine_id}", f"node{machine_id:04d}", f"node{machine_id:04d}.lab")


class FakeProvider:
    """The provisioning agent's provider: knows every machine already launched, records each start's time."""

    def __init__(self, machines: int) -> None:
        self.machines = {i: _instance(i) for i in range(machines)}
        self.started: dict[int, float] = {}
        self.waiting: dict[int, defer.Deferred[float]] = {}

    def expect(self, machine_id: int) -> defer.Deferred[float]:
        self.waiting[machine_id] = defer.Deferred()
        return self.waiting[machine_id]

    async def get_machines(self) -> list[Instance]:
        return list(self.machines.values())

    async def start_machine(self, machine_data: dict[str, Any]) -> list[Instance]:
        now = time.monotonic()
        machine_id = int(machine_data["machine-id"])
        self.started[machine_id] = now
        instance = self.machines[machine_id] = _instance(machine_id)
        if machine_id in self.waiting:
            self.waiting.pop(machine_id).callback(now)
        return [instance]

    async def shutdown_machines(self, machines: Sequence[Instance]) -> list[Instance]:
        for machine in machines:
            self.machines.pop(int(machine.machine_id), None)
        return list(machines)

    async def close(self) -> None:
        pass


def _received(server: ZooKeeperServer) -> int:
    """The server's count of packets received (``srvr``), all sessions together."""
    answer = four_letter_word(server.host, server.port, "srvr") or ""
    for line in answer.splitlines():
        if line.startswith("Received:"):
            return int(line.split(":")[1])
    raise RuntimeError(f"ZooKeeper on {server.hosts} gave no Received count: {answer!r}")


async def build(
    reactor: Any, server: ZooKeeperServer, admin: StateClient, machines: int, units: int
) -> tuple[float, StateClient]:
    """The synthetic environment (machines 0..machines-1, *units* units); its setup seconds, and the session
    holding the agents' presences (close it last)."""
    start = time.monotonic()
    settings = EnvironmentSettings("orchestra", "0-bench", IDENTITIES, server.hosts, "http://bench/tools", "00")
    if not await initialize_tree(admin, settings, _record(0)):
        raise RuntimeError(f"ZooKeeper on {server.hosts} was initialized already")
    node = TopologyNode(admin)

    def nodes(old: Topology, new: Topology) -> list[Operation]:
        acl = tuple(IDENTITIES.machine())
        added = sorted(set(new.machines) - set(old.machines))
        return [Create(machine_path(i), dump_document(MachineRecord(i).to_document()), acl) for i in added]

    def add_machines(count: int) -> Callable[[Topology], Topology]:
        def change(topology: Topology) -> Topology:
            for _ in range(count):
                topology = topology.add_machine()
            return topology

        return change

    remaining = machines - 1  # machine 0 came with the tree
    while remaining:
        count = min(BATCH, remaining)
        await node.change(add_machines(count), also=nodes)
        remaining -= count

    def add_units(topology: Topology) -> Topology:
        for s in range(SERVICES):
            topology = topology.add_service(f"service-{s}", f"cs:bench/charm-{s}")
        for u in range(units):
            topology = topology.add_unit(f"service-{u % SERVICES}", 1 + u % (machines - 1) if machines > 1 else 0)
        return topology

    topology = await node.change(add_units)
    shared = IDENTITIES.shared()
    await gather(
        [
            admin.create(
                service_path(name), dump_document(ServiceRecord(name, service.charm).to_document()), acl=shared
            )
            for name, service in topology.services.items()
        ]
    )
    unit_acl = UnitsState(admin, IDENTITIES).unit_acl(AGENT.identity)
    await gather([admin.create(unit_path(u.name), _unit_record(u.name), acl=unit_acl) for u in topology.units()])
    state = MachinesState(admin, IDENTITIES)
    await gather([state.record_instance(_record(i)) for i in range(machines)])
    agent = await StateClient.connect(reactor, server.hosts, credentials=[AGENT, SHARED])
    present = MachinesState(agent, IDENTITIES)
    await gather([present.register(i, _presence(i), AGENT.identity) for i in range(machines) if _is_present(i)])
    unit_agents = UnitsState(agent, IDENTITIES)
    await gather([unit_agents.register(u.name, UnitPresence(1, "0-bench"), AGENT.identity) for u in topology.units()])
    return time.monotonic() - start, agent


def _unit_record(name: str) -> bytes:
    number = int(name.rpartition("/")[2])
    address = f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"
    return dump_document(
        UnitRecord(name, "started", "cs:bench/charm", None, (), address, address, ("80/tcp",)).to_document()
    )


def _record(machine_id: int) -> MachineRecord:
    instance = _instance(machine_id)
    return MachineRecord(machine_id, instance.instance_id, instance.system_name, AGENT.identity)


def _presence(machine_id: int) -> AgentPresence:
    address = f"10.{machine_id // 65536}.{machine_id // 256 % 256}.{machine_id % 256}"
    return AgentPresence((address,), _instance(machine_id).system_name, "0-bench", 1000 + machine_id)


def _is_present(machine_id: int) -> bool:
    return machine_id % 10 < PRESENT * 10


async def measure_status(server: ZooKeeperServer, admin: CountingClient, machines: int, runs: int) -> dict[str, Any]:
    instances = [_instance(i) for i in range(machines)]
    state = MachinesState(admin, IDENTITIES)
    times, requests, packets = [], [], []
    document: dict[str, Any] = {}
    first = _received(server)
    probe = _received(server) - first  # what asking costs: the srvr request itself counts
    for _ in range(runs):
        before, received = admin.requests, _received(server)
        start = time.monotonic()
        document = await environment_status(admin, state, instances)
        times.append(time.monotonic() - start)
        requests.append(admin.requests - before)
        packets.append(_received(server) - received - probe)
    running = sum(1 for m in document["machines"].values() if m["agent-state"] == "running")
    units = sum(len(s["units"]) for s in document["services"].values())
    started = sum(u["agent-state"] == "started" for s in document["services"].values() for u in s["units"].values())
    if started != units:
        raise RuntimeError(f"status saw {started} of {units} units started: not what was built")
    if len(document["machines"]) != machines or running != sum(map(_is_present, range(machines))):
        raise RuntimeError(f"status saw {len(document['machines'])} machines, {running} running: not what was built")
    return {
        "status_machines": len(document["machines"]),
        "status_units": units,
        "status_agents_running": running,
        "status_s": statistics.median(times),
        "status_s_runs": times,
        "zk_round_trips": statistics.median(requests),
        "zk_server_packets": statistics.median(packets),
    }


async def measure_reaction(
    reactor: Any, server: ZooKeeperServer, admin: StateClient, machines: int, additions: int
) -> dict[str, Any]:
    """Median seconds from ``add_machine`` to the agent's ``start_machine``, one addition at a time."""
    await store_environment(admin, IDENTITIES, {"name": "bench", "config": {"type": "orchestra"}})
    provider = FakeProvider(machines)
    config = AgentConfig(server.hosts, (PROVISIONING,), machine_agents=SHARED)
    agent = ProvisioningAgent(reactor, config, make_provider=lambda name, cfg: provider, reconcile_interval=3600)
    running = defer.Deferred.fromCoroutine(agent.run())
    reactions: list[float] = []
    try:
        await _reconciled(reactor, agent, 1, running)
        state = MachinesState(admin, IDENTITIES)
        for _ in range(additions):
            new_id, reconciled = machines + len(reactions), agent.reconciled
            expected = provider.expect(new_id)
            start = time.monotonic()
            if await state.add_machine() != new_id:
                raise RuntimeError(f"add_machine did not give machine {new_id}: is another client changing the tree?")
            started = await expected.addTimeout(REACTION_TIMEOUT, reactor)
            reactions.append(started - start)
            # One topology write, one reconcile: the next addition starts once it has ended.
            await _reconciled(reactor, agent, reconciled + 1, running)
        if agent.launched != list(range(machines, machines + additions)):
            raise RuntimeError(f"the agent launched {agent.launched}: expected only the {additions} new machines")
    finally:
        if not agent.stopped.called:
            agent.stopped.callback(None)
        try:
            await running
        finally:
            await agent.close()
    return {"provision_reaction_s": statistics.median(reactions), "provision_reaction_s_runs": reactions}


async def _reconciled(reactor: Any, agent: ProvisioningAgent, count: int, running: defer.Deferred[None]) -> None:
    """Wait (bounded) until *agent* has completed *count* reconciles; its error if it ended instead."""
    deadline = time.monotonic() + REACTION_TIMEOUT
    while agent.reconciled < count:
        if running.called:
            await running
            raise RuntimeError("the provisioning agent stopped")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the provisioning agent did not complete reconcile {count} in {REACTION_TIMEOUT:g} s")
        await task.deferLater(reactor, 0.005)


async def measure(reactor: Any, server: ZooKeeperServer, args: argparse.Namespace) -> dict[str, Any]:
    admin = cast(CountingClient, await CountingClient.connect(reactor, server.hosts, credentials=[ADMIN]))
    try:
        setup_s, agents = await build(reactor, server, admin, args.machines, args.units)
        try:
            result: dict[str, Any] = {"setup_s": setup_s}
            result.update(await measure_status(server, admin, args.machines, args.runs))
            result.update(await measure_reaction(reactor, server, admin, args.machines, args.additions))
        finally:
            await agents.close()
    finally:
        await admin.close()
    return result


def bootstrap_lab(home: Path) -> dict[str, Any]:
    """Destroy environment ``lab`` (idempotent), then time ``ensemble bootstrap -e lab --wait``."""
    env = {**os.environ, "ENSEMBLE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "ensemble_orchestra.cli.ensemble"]
    destroyed = subprocess.run(
        [*command, "destroy-environment", "-e", "lab", "-y"], capture_output=True, text=True, env=env
    )
    if destroyed.returncode != 0:
        raise RuntimeError(f"destroy-environment failed: {destroyed.stderr.strip()}")
    start = time.monotonic()
    done = subprocess.run([*command, "bootstrap", "-e", "lab", "--wait"], capture_output=True, text=True, env=env)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"bootstrap failed after {seconds:.1f} s: {done.stderr.strip()}")
    return {"bootstrap_to_initialized_s": seconds, "destroyed_first": destroyed.stdout.strip().splitlines()[-1:]}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7, help="status runs (the median is reported)")
    parser.add_argument("--additions", type=int, default=10, help="machines added for the agent's reaction")
    parser.add_argument("--lab", type=Path, metavar="ENSEMBLE_HOME", help="also bootstrap environment 'lab' there")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="ensemble-bench-state-"))
    server = ZooKeeperServer(directory, free_port())
    out: list[dict[str, Any]] = []
    server.start()
    try:
        task.react(lambda reactor: defer.Deferred.fromCoroutine(measure(reactor, server, args)).addCallback(out.append))
    except SystemExit:
        pass
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    if not out:
        print(json.dumps({"error": "benchmark failed, see above"}))
        return
    result = {"cpus": os.cpu_count(), **out[0]}
    if args.lab is not None:
        result.update(bootstrap_lab(args.lab))
    print(json.dumps({k: _rounded(v) for k, v in result.items()}))


if __name__ == "__main__":
    main()
