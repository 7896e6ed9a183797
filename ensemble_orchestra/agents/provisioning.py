"""The provisioning agent (machine 0): keeps the provider's machines equal to the topology's.

- Exactly one runs per environment: it holds the ephemeral ``/agents/provisioning`` node; a second one waits
  for it to go.
- It builds the provider from ``/environment`` (written by the CLI; readable by it and the admin only).
- On every topology change, and every ``reconcile_interval`` seconds (a watch may merge or miss states; a
  launch may fail), it reconciles: topology machines with no provider machine are launched, concurrently; a
  provider machine whose machine id the topology no longer has is shut down.
- Units placed on a machine may be written by that machine's agent: once a machine's agent identity is on record,
  its units' nodes get it in their ACL (``UnitsState.grant``), before the launch.
- A launch that fails is recorded on the machine's node (``launch-error``: ``ensemble status`` shows it) and
  tried again at the next reconcile.
- Restart-safe: the provider records the owner and the machine id on every system it launches, so a machine
  launched just before a crash is found and adopted, never launched twice; the new machine's agent identity
  is recorded (and allowed in its node's ACL) BEFORE the launch, so an adopted machine's agent can register.
- A machine's user data (its agent's secrets) waits in its Cobbler record, which every user of that Cobbler can
  read, until the machine's agent registers: then the secrets have arrived and the provider drops it
  (``forget_user_data``). The agent's presence is watched meanwhile, so this happens at once.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .. import __version__
from ..errors import EnsembleError
from ..state.acl import machine_user, new_credential
from ..state.client import StateClient
from ..state.environment import EnvironmentSettings, read_environment, read_settings, wait_initialized
from ..state.errors import StateNodeExistsError, StateNotFoundError
from ..state.layout import ENVIRONMENT, PROVISIONING_LOCK, dump_document, machine_agent_path
from ..state.machines import MachineRecord, MachinesState
from ..state.topology import Topology
from ..state.topology_node import TopologyNode
from ..state.units import UnitsState
from ..state.watch import NodeWatch, SessionState
from .config import AgentConfig
from .reconciler import Reconciler

__all__ = ["ProvisioningAgent"]

log = Logger()

CONNECT_TIMEOUT = 60.0
INITIALIZED_TIMEOUT = 600.0
RECONCILE_INTERVAL = 60.0

ProviderFactory = Callable[[str, dict[str, Any]], Any]


def _default_provider(reactor: Any) -> ProviderFactory:
    def make(name: str, config: dict[str, Any]) -> Any:
        from ..provider import create_orchestra_provider

        return create_orchestra_provider(name, config, reactor, on_machine=True)

    return make


class ProvisioningAgent:
    def __init__(
        self,
        reactor: Any,
        config: AgentConfig,
        make_provider: ProviderFactory | None = None,
        reconcile_interval: float = RECONCILE_INTERVAL,
    ) -> None:
        if config.machine_agents is None:
            raise EnsembleError("the provisioning agent's config lacks the machine-agents credential: re-initialize")
        self.reactor = reactor
        self.config = config
        self.make_provider = make_provider or _default_provider(reactor)
        self.reconcile_interval = reconcile_interval
        self.client: StateClient | None = None
        self.settings: EnvironmentSettings | None = None
        self.machines: MachinesState | None = None
        self.units: UnitsState | None = None
        self._granted: set[tuple[str, str]] = set()
        # Machines whose user data waits for their agent: a watch on each one's presence node.
        self._awaited: dict[int, NodeWatch[bool]] = {}
        self.provider: Any = None
        self.stopped: Deferred[None] = Deferred()
        self._reconciler = Reconciler(self.reconcile, "reconcile")
        self.reconciled = 0  # completed reconciles (tests and the benchmark wait on it)
        self.launched: list[int] = []

    # -- life ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.client = client = await StateClient.connect(
            self.reactor, self.config.zookeeper_servers, credentials=self.config.credentials, timeout=CONNECT_TIMEOUT
        )
        await wait_initialized(client, INITIALIZED_TIMEOUT)
        self.settings = await read_settings(client)
        self.machines = MachinesState(client, self.settings.identities)
        self.units = UnitsState(client, self.settings.identities)
        await self._lock()
        client.on_session(self._session_changed)
        environment = await self._environment()
        self.provider = self.make_provider(str(environment["name"]), dict(environment["config"]))
        log.info("provisioning agent running for environment {name}", name=environment["name"])
        await TopologyNode(client).watch(lambda topology: self.trigger())
        loop = LoopingCall(self.trigger)
        loop.clock = self.reactor
        loop.start(self.reconcile_interval, now=False)
        try:
            await self.stopped
        finally:
            if loop.running:
                loop.stop()

    async def close(self) -> None:
        for machine_id in list(self._awaited):
            self._stop_awaiting(machine_id)
        if self.provider is not None:
            await self.provider.close()
        if self.client is not None:
            await self.client.close()

    async def _lock(self) -> None:
        """Hold the environment's one provisioning lock (ephemeral); wait while another agent holds it."""
        assert self.client is not None and self.settings is not None
        me = dump_document({"host": socket.gethostname(), "pid": os.getpid(), "version": __version__})
        acl = self.settings.identities.provisioning_owned()
        while True:
            try:
                await self.client.create(PROVISIONING_LOCK, me, ephemeral=True, acl=acl)
                return
            except StateNodeExistsError:
                pass
            log.info("another provisioning agent holds {lock}: waiting for it to go", lock=PROVISIONING_LOCK)
            await self.client.wait_for(PROVISIONING_LOCK, present=False)

    async def _environment(self) -> dict[str, Any]:
        """``/environment`` as the CLI stored it: waits (unbounded, logged) until the CLI has connected once."""
        assert self.client is not None
        if await self.client.exists(ENVIRONMENT) is None:
            log.info("waiting for the CLI to store the environment's config ({path})", path=ENVIRONMENT)
            await self.client.wait_for(ENVIRONMENT, present=True)
        return await read_environment(self.client)

    def _session_changed(self, state: SessionState) -> None:
        log.info("ZooKeeper session {state}", state=state.name)
        if state is SessionState.LOST and not self.stopped.called:
            # Our lock went with the session; another agent may hold it now. Start over (systemd restarts us).
            self.stopped.errback(EnsembleError("the ZooKeeper session expired: the provisioning lock is lost"))

    # -- reconciling --------------------------------------------------------------------------------------

    def trigger(self) -> Deferred[None]:
        """Reconcile now, or once more right after the one running (changes during it are not missed)."""
        return self._reconciler.trigger()

    async def reconcile(self) -> None:
        assert self.client is not None and self.machines is not None and self.provider is not None
        topology: Topology = await TopologyNode(self.client).read()
        records = await self.machines.read_all()
        provided = {str(m.machine_id): m for m in await self.provider.get_machines()}
        launches: list[Deferred[None]] = []
        try:
            for machine_id in sorted(topology.machines):
                record = records.get(machine_id, MachineRecord(machine_id))
                found = provided.get(str(machine_id))
                if found is not None:
                    await self._keep(topology, record, found)
                elif machine_id != 0:
                    launches.append(Deferred.fromCoroutine(self._launch_or_log(topology, record)))
        finally:
            # All at once: a deploy -n 5 powers its fifth machine on as soon as its first (the provider bounds
            # how many launches are in flight: launch-concurrency); each failure is the machine's own. The
            # reconcile ends only once its launches have, even when it fails: the next one must see them, or it
            # would launch the same machine again.
            await DeferredList(launches, consumeErrors=True)
        for machine_id in [i for i in self._awaited if i not in topology.machines]:
            self._stop_awaiting(machine_id)
        for machine_id_text, machine in provided.items():
            known = machine_id_text.isdigit() and int(machine_id_text) in topology.machines
            if not known:
                log.info(
                    "shutting down {name}: machine {id} is no longer in the topology",
                    name=machine.system_name,
                    id=machine_id_text or "?",
                )
                await self.provider.shutdown_machines([machine])
        self.reconciled += 1

    async def _keep(self, topology: Topology, record: MachineRecord, found: Any) -> None:
        """A topology machine the provider has: adopt it if its node does not name it yet (a launcher died after
        the ownership edit), grant its units, and drop its user data once its agent is up."""
        machine_id = record.id
        if record.provider_machine_id != found.instance_id:
            log.info(
                "machine {id}: adopting {name} ({instance})",
                id=machine_id,
                name=found.system_name,
                instance=found.instance_id,
            )
            record = dataclasses.replace(
                record,
                provider_machine_id=found.instance_id,
                instance_name=found.system_name,
                address=_address(found),
            )
            assert self.machines is not None
            await self.machines.record_instance(record)
            # Its launcher may have died between the ownership edit and the power-on.
            resume = getattr(self.provider, "resume_launch", None)
            if resume is not None and await resume(found):
                name = found.system_name
                log.info("machine {id}: {name} was never powered on: powered it on", id=machine_id, name=name)
        await self._grant_units(topology, record)
        await self._forget_user_data(machine_id, found)

    async def _grant_units(self, topology: Topology, record: MachineRecord) -> None:
        """Let machine *record.id*'s agent write the nodes of the units placed on it (once per unit)."""
        assert self.units is not None
        if record.agent_identity is None:
            return
        for unit in topology.units_on(record.id):
            if (unit.name, record.agent_identity) in self._granted:
                continue
            try:
                if await self.units.grant(unit.name, record.agent_identity):
                    log.info("unit {unit}: machine {id}'s agent may write it", unit=unit.name, id=record.id)
            except StateNotFoundError:  # removed meanwhile
                continue
            self._granted.add((unit.name, record.agent_identity))

    async def _forget_user_data(self, machine_id: int, machine: Any) -> None:
        """Once machine *machine_id*'s agent has registered, drop its user data from the provider's record;
        until then, watch its presence so that the drop follows the registration at once. Never fails the
        reconcile: a failure is logged and the next reconcile tries again."""
        assert self.client is not None
        forget = getattr(self.provider, "forget_user_data", None)
        if forget is None or not getattr(machine, "holds_user_data", False):
            self._stop_awaiting(machine_id)
            return
        try:
            if await self.client.exists(machine_agent_path(machine_id)) is None:
                await self._await_agent(machine_id)
                return
            if await forget(machine):
                log.info("machine {id}: its user data left {name}'s record", id=machine_id, name=machine.system_name)
        except Exception as error:
            log.warn(
                "machine {id}: could not drop its user data from the provider's record (tried again): {error}",
                id=machine_id,
                error=str(error) if isinstance(error, EnsembleError) else repr(error),
            )
            return
        self._stop_awaiting(machine_id)

    def _stop_awaiting(self, machine_id: int) -> None:
        watch = self._awaited.pop(machine_id, None)
        if watch is not None:
            watch.stop()

    async def _await_agent(self, machine_id: int) -> None:
        """Reconcile as soon as machine *machine_id*'s agent registers (its presence node appears)."""
        assert self.client is not None
        if machine_id not in self._awaited:
            self._awaited[machine_id] = await self.client.watch_data(
                machine_agent_path(machine_id), lambda present: present and self.trigger(), lambda data, stat: True
            )

    async def _launch_or_log(self, topology: Topology, record: MachineRecord) -> None:
        try:
            await self._launch(topology, record)
        except Exception as error:  # recorded on the machine's node; the others are launched still
            log.error(
                "machine {id}: launch failed: {error}",
                id=record.id,
                error=str(error) if isinstance(error, EnsembleError) else repr(error),
            )

    async def _launch(self, topology: Topology, record: MachineRecord) -> None:
        assert self.machines is not None and self.settings is not None and self.config.machine_agents is not None
        machine_id = record.id
        credential = new_credential(machine_user(machine_id))
        # The identity goes on record (and into the node's ACL) before the launch: see the module's docstring.
        record = dataclasses.replace(
            record, provider_machine_id=None, instance_name=None, agent_identity=credential.identity
        )
        await self.machines.record_instance(record)
        await self._grant_units(topology, record)
        machine_data = {
            "machine-id": str(machine_id),
            "zookeeper-hosts": [self.settings.zookeeper_servers],
            "agent-credentials": [credential.to_dict(), self.config.machine_agents.to_dict()],
            "tools": {"url": self.settings.tools_url, "sha256": self.settings.tools_sha256},
            "constraints": dict(record.constraints),
        }
        log.info("machine {id}: launching", id=machine_id)
        try:
            [machine] = await self.provider.start_machine(machine_data)
        except Exception as error:
            reason = str(error) if isinstance(error, EnsembleError) else repr(error)
            try:
                await self.machines.record_instance(dataclasses.replace(record, launch_error=reason))
            except StateNotFoundError:  # the machine was removed meanwhile
                pass
            raise
        await self.machines.record_instance(
            dataclasses.replace(
                record,
                provider_machine_id=machine.instance_id,
                instance_name=machine.system_name,
                launch_error=None,
                address=_address(machine),
            )
        )
        self.launched.append(machine_id)
        if getattr(self.provider, "forget_user_data", None) is not None:
            try:
                await self._await_agent(machine_id)  # its user data is dropped once it registers
            except Exception as error:  # launched all the same: the next reconcile watches it
                log.warn("machine {id}: cannot watch for its agent: {error}", id=machine_id, error=str(error))
        log.info(
            "machine {id}: launched {name} ({instance})",
            id=machine_id,
            name=machine.system_name,
            instance=machine.instance_id,
        )


def _address(machine: Any) -> str | None:
    """The address the provider recorded for *machine* (an Orchestra machine's Cobbler interface IP), if any."""
    return getattr(machine, "address", "") or None
