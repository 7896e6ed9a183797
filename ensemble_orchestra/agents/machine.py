"""The machine agent: this machine's presence in the environment, and the units placed on it.

It waits for ``/initialized``, then registers an ephemeral ``/machines/machine-N/agent`` with the machine's
addresses, and watches the topology: units placed on this machine are deployed, units that left it removed
(``deployer.py``), on every change and every ``RECONCILE_INTERVAL`` seconds (a failed fetch is tried again).
ZooKeeper's session survives a ZooKeeper restart (kazoo reconnects: nothing to do); when the session expires,
ZooKeeper drops the presence node and kazoo opens a new session: the agent registers again.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .. import __version__
from ..state.client import StateClient
from ..state.environment import read_settings, wait_initialized
from ..state.errors import StateError, StateNodeExistsError
from ..state.layout import machine_agent_path
from ..state.machines import AgentPresence, MachinesState
from ..state.topology import Topology
from ..state.topology_node import TopologyNode
from ..state.units import UnitsState
from ..state.watch import SessionState
from .config import AgentConfig
from .deployer import UnitDeployer
from .firewall import Firewall
from .firewall_keeper import FirewallKeeper
from .reconciler import Reconciler
from .system import global_addresses

__all__ = ["MachineAgent"]

log = Logger()

CONNECT_TIMEOUT = 60.0  # then the process exits and systemd starts it again
INITIALIZED_TIMEOUT = 600.0
RECONCILE_INTERVAL = 30.0


class MachineAgent:
    def __init__(
        self, reactor: Any, config: AgentConfig, make_deployer: Any = None, firewall: Firewall | None = None
    ) -> None:
        """*firewall*: this machine's (None: the agent keeps no firewall, e.g. a test on a workstation)."""
        if config.machine_id is None:
            raise StateError("the machine agent's config has no machine-id: reinstall the machine")
        self.reactor = reactor
        self.config = config
        self.machine_id = config.machine_id
        self.owner = config.credentials[0].identity
        self.client: StateClient | None = None
        self.machines: MachinesState | None = None
        self.stopped: Deferred[None] = Deferred()
        self.make_deployer = make_deployer or UnitDeployer
        self.deployer: UnitDeployer | None = None
        self.firewall = firewall
        self.topology: Topology | None = None
        self.firewall_keeper: FirewallKeeper | None = None
        self._reconciler = Reconciler(self._reconcile, "deploying units")

    async def run(self) -> None:
        """Register and stay (until the session can no longer be restored, then fail: systemd restarts us)."""
        self.client = await StateClient.connect(
            self.reactor, self.config.zookeeper_servers, credentials=self.config.credentials, timeout=CONNECT_TIMEOUT
        )
        await wait_initialized(self.client, INITIALIZED_TIMEOUT)
        settings = await read_settings(self.client)
        self.machines = MachinesState(self.client, settings.identities)
        await self.register()
        self.client.on_session(self._session_changed)
        log.info("machine {id} agent running (ensemble-orchestra {version})", id=self.machine_id, version=__version__)
        self.deployer = self.make_deployer(
            self.reactor, self.client, UnitsState(self.client, settings.identities), self.machine_id
        )
        if self.firewall is not None:
            self.firewall_keeper = FirewallKeeper(
                self.reactor, self.client, self.machines, self.machine_id, self.firewall, self._zookeeper_port()
            )
        await TopologyNode(self.client).watch(self._topology_changed)
        loop = LoopingCall(self._tick)
        loop.clock = self.reactor
        loop.start(RECONCILE_INTERVAL, now=False)
        try:
            await self.stopped
        finally:
            if loop.running:
                loop.stop()
            if self.firewall_keeper is not None:
                self.firewall_keeper.stop()

    def _topology_changed(self, topology: Topology | None) -> None:
        self.topology = topology
        self._reconciler.trigger()
        if self.firewall_keeper is not None:
            self.firewall_keeper.topology_changed(topology)

    def _tick(self) -> None:
        self._reconciler.trigger()
        if self.firewall_keeper is not None:
            self.firewall_keeper.trigger()

    def _zookeeper_port(self) -> int | None:
        """The port of this machine's ZooKeeper (machine 0 runs it; the agents' config names it)."""
        if self.machine_id != 0 or not self.config.zookeeper_servers:
            return None
        _, _, port = self.config.zookeeper_servers.split(",")[0].rpartition(":")
        return int(port) if port.isdigit() else 2181

    async def _reconcile(self) -> None:
        assert self.client is not None and self.deployer is not None
        topology = self.topology  # the watch's latest: it delivers every change
        if topology is None:
            topology = await TopologyNode(self.client).read()
        await self.deployer.reconcile(topology)

    async def register(self) -> None:
        assert self.machines is not None and self.client is not None
        presence = AgentPresence(
            tuple(await global_addresses(self.reactor)), socket.gethostname(), __version__, os.getpid()
        )
        path = machine_agent_path(self.machine_id)
        try:
            await self.machines.register(self.machine_id, presence, self.owner)
        except StateNodeExistsError:
            # Our previous session's node, not yet expired (a restart within the session timeout): replace it.
            await self.client.delete(path)
            await self.machines.register(self.machine_id, presence, self.owner)
        log.info("registered {path} with addresses {addresses}", path=path, addresses=", ".join(presence.addresses))

    def _session_changed(self, state: SessionState) -> None:
        log.info("ZooKeeper session {state}", state=state.name)
        if state is SessionState.CONNECTED and self._lost:
            self._lost = False
            Deferred.fromCoroutine(self.register()).addErrback(self._fail)
        elif state is SessionState.LOST:
            self._lost = True

    _lost = False

    def _fail(self, failure: Any) -> None:
        log.failure("could not register again after the session was lost", failure)
        if not self.stopped.called:
            self.stopped.errback(failure)
