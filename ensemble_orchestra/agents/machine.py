"""The machine agent: this machine's presence in the environment (units come with the next milestone).

It waits for ``/initialized``, then registers an ephemeral ``/machines/machine-N/agent`` with the machine's
addresses. ZooKeeper's session survives a ZooKeeper restart (kazoo reconnects: nothing to do); when the
session expires, ZooKeeper drops the presence node and kazoo opens a new session: the agent registers again.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .. import __version__
from ..state.client import StateClient
from ..state.environment import read_settings, wait_initialized
from ..state.errors import StateError, StateNodeExistsError
from ..state.layout import machine_agent_path
from ..state.machines import AgentPresence, MachinesState
from ..state.watch import SessionState
from .config import AgentConfig
from .system import global_addresses

__all__ = ["MachineAgent"]

log = Logger()

CONNECT_TIMEOUT = 60.0  # then the process exits and systemd starts it again
INITIALIZED_TIMEOUT = 600.0


class MachineAgent:
    def __init__(self, reactor: Any, config: AgentConfig) -> None:
        if config.machine_id is None:
            raise StateError("the machine agent's config has no machine-id: reinstall the machine")
        self.reactor = reactor
        self.config = config
        self.machine_id = config.machine_id
        self.owner = config.credentials[0].identity
        self.client: StateClient | None = None
        self.machines: MachinesState | None = None
        self.stopped: Deferred[None] = Deferred()

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
        await self.stopped

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
