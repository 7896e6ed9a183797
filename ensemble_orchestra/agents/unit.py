"""The unit agent: runs one unit's charm hooks, one at a time, and reports the unit's state in ZooKeeper.

The machine agent deploys it (``deployer.py``) as the systemd service ``ensemble-unit-<service>-<n>``; it runs
with its machine's credential, which the provisioning agent allowed on this unit's nodes. It watches three
things — the topology (is the unit dying?), the service's settings (config-changed) and the unit's
``resolved`` node — and after each change asks ``lifecycle.next_step`` what to do, until nothing is left.
Hooks run with the charm's directory as working directory, the hook tools first on PATH, and both Ensemble's
and its successor's environment names; each line of their output goes to the unit's log (``debug-log``), and a
failing hook's last lines to the unit's node (``status``). The state is persisted after every hook.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from .. import __version__
from ..charm.config import ConfigSchema
from ..origin import INSTALL_DIR
from ..state.charms import read_charm
from ..state.client import StateClient
from ..state.environment import read_settings, wait_initialized
from ..state.errors import StateError, StateNodeExistsError, StateNotFoundError
from ..state.layout import load_document, service_config_path, unit_agent_path, unit_resolved_path
from ..state.services import ServicesState, settings_digest
from ..state.topology import Topology
from ..state.topology_node import TopologyNode
from ..state.units import OUTPUT_LINES, UnitPresence, UnitRecord, UnitsState, format_port, sort_ports
from ..state.watch import SessionState
from .config import AgentConfig, write_private
from .hooks.context import IHookContext
from .hooks.install import install_tools
from .hooks.protocol import HookToolError
from .hooks.runner import HookInvocation, HookRunner, hook_environment
from .hooks.server import HookToolServer
from .lifecycle import LocalState, next_step, settle
from .reconciler import Reconciler
from .system import global_addresses
from .unit_paths import UNITS_DIR, UnitPaths

__all__ = ["UnitAgent", "UnitHookContext"]

log = Logger()

CONNECT_TIMEOUT = 60.0
INITIALIZED_TIMEOUT = 600.0
RECONCILE_INTERVAL = 30.0
_LEVELS = {"DEBUG": log.debug, "INFO": log.info, "WARNING": log.warn, "ERROR": log.error, "CRITICAL": log.critical}


@implementer(IHookContext)
class UnitHookContext:
    """What one hook run's tools see. Port changes are kept until the hook ends and stored only if it worked
    (a failed hook leaves no half-made change behind: the same rule relation writes will follow)."""

    def __init__(self, agent: UnitAgent, hook: str) -> None:
        self.agent = agent
        self.hook = hook
        self.ports = set(agent.ports)

    def config_get(self, key: str | None) -> Any:
        settings = self.agent.effective_settings()
        return dict(settings) if key is None else settings.get(key)

    def unit_get(self, name: str) -> str:
        address = self.agent.address
        if address is None:
            raise HookToolError(f"{name}: this machine has no global IPv4 address yet")
        return address

    def open_port(self, port: int, protocol: str) -> None:
        self.ports.add(format_port(port, protocol))

    def close_port(self, port: int, protocol: str) -> None:
        self.ports.discard(format_port(port, protocol))

    def log(self, level: str, message: str) -> None:
        _LEVELS.get(level, log.info)(
            "{unit} {hook}: {message}", unit=self.agent.unit_name, hook=self.hook, message=message
        )


class UnitAgent:
    def __init__(
        self,
        reactor: Any,
        config: AgentConfig,
        unit_name: str,
        units_dir: Path = UNITS_DIR,
        runner: HookRunner | None = None,
        tools_pythonpath: str = INSTALL_DIR,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.unit_name = unit_name
        self.service_name = unit_name.partition("/")[0]
        self.paths = UnitPaths.of(unit_name, units_dir)
        self.owner = config.credentials[0].identity
        self.runner = runner or HookRunner(reactor)
        self.tools_pythonpath = tools_pythonpath
        self.client: StateClient | None = None
        self.units: UnitsState | None = None
        self.server: HookToolServer | None = None
        self.schema: ConfigSchema | None = None
        self.charm_id: str | None = None
        self.hook_timeout = 1800.0
        self.address: str | None = None
        self.local = LocalState()
        self.ports: set[str] = set()
        self.settings: dict[str, Any] = {}
        self.dying = False
        self.gone = False  # the unit left the topology: the machine agent stops us
        self.resolved: tuple[bool, int] | None = None  # the request's retry flag and the node's czxid
        self._handled_resolved: int | None = None
        self.last_output: tuple[str, ...] = ()
        self.hooks_run: list[str] = []  # every hook run by this process, in order (tests read it)
        self.stopped: Deferred[None] = Deferred()
        self._reconciler = Reconciler(self._advance, f"unit {unit_name}")
        self._lost = False

    # -- life ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.client = client = await StateClient.connect(
            self.reactor, self.config.zookeeper_servers, credentials=self.config.credentials, timeout=CONNECT_TIMEOUT
        )
        await wait_initialized(client, INITIALIZED_TIMEOUT)
        identities = (await read_settings(client)).identities
        self.units = UnitsState(client, identities)
        record = await self.units.read(self.unit_name)
        service = await ServicesState(client, identities).read(self.service_name)
        self.charm_id = record.charm or service.charm
        self.hook_timeout = service.hook_timeout
        charm = await read_charm(client, self.charm_id)
        self.schema = ConfigSchema.from_dict(charm.config, f"charm {self.charm_id}")
        self.local = self._load_local()
        self.ports = set(record.open_ports)
        addresses = await global_addresses(self.reactor)
        self.address = addresses[0] if addresses else None
        install_tools(self.paths.tools, sys.executable or "/usr/bin/python3", self.tools_pythonpath)
        self.server = HookToolServer(self.reactor, self.paths.socket)
        self.server.start()
        try:
            await self._register()
            client.on_session(self._session_changed)
            await self._report()
            await TopologyNode(client).watch(self._topology_changed)
            await client.watch_data(service_config_path(self.service_name), self._settings_changed, _settings)
            await client.watch_data(unit_resolved_path(self.unit_name), self._resolved_changed, _resolved)
            log.info(
                "unit {unit} agent running (charm {charm}, state {state})",
                unit=self.unit_name,
                charm=self.charm_id,
                state=self.local.reported,
            )
            self._reconciler.trigger()
            loop = LoopingCall(self._reconciler.trigger)  # a step that failed (ZooKeeper away) is tried again
            loop.clock = self.reactor
            loop.start(RECONCILE_INTERVAL, now=False)
            try:
                await self.stopped
            finally:
                loop.stop()
        finally:
            await self.server.stop()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    # -- watches (reactor thread) ---------------------------------------------------------------------------

    def _topology_changed(self, topology: Topology | None) -> None:
        service = topology.services.get(self.service_name) if topology else None
        unit = service.units.get(self.unit_name) if service else None
        if unit is None:
            if not self.gone:
                log.info(
                    "unit {unit} left the environment: waiting for the machine agent to stop it", unit=self.unit_name
                )
            self.gone = True
            return
        if unit.dying and not self.dying:
            log.info("unit {unit} is to be removed: running its stop hook", unit=self.unit_name)
        self.dying = unit.dying
        self._reconciler.trigger()

    def _settings_changed(self, settings: dict[str, Any] | None) -> None:
        self.settings = settings or {}
        self._reconciler.trigger()

    def _resolved_changed(self, request: tuple[bool, int] | None) -> None:
        self.resolved = request if request is not None and request[1] != self._handled_resolved else None
        self._reconciler.trigger()

    def _session_changed(self, state: SessionState) -> None:
        log.info("ZooKeeper session {state}", state=state.name)
        if state is SessionState.LOST:
            self._lost = True
        elif state is SessionState.CONNECTED and self._lost:
            self._lost = False
            Deferred.fromCoroutine(self._register()).addErrback(self._fail)

    def _fail(self, failure: Any) -> None:
        log.failure("could not register again after the session was lost", failure)
        if not self.stopped.called:
            self.stopped.errback(failure)

    # -- the lifecycle -------------------------------------------------------------------------------------

    def effective_settings(self) -> dict[str, Any]:
        assert self.schema is not None
        return {**self.schema.defaults(), **self.settings}

    async def _advance(self) -> None:
        """Run the lifecycle's steps until none is left (the reconciler runs this one at a time)."""
        assert self.units is not None
        while not self.gone:
            digest = settings_digest(self.effective_settings())
            retry = None if self.resolved is None else self.resolved[0]
            step = next_step(self.local, self.dying, retry, digest)
            if step is None:
                return
            ok = True
            if step.hook is not None:
                ok = await self._run_hook(step.hook)
            self.local = settle(self.local, step, ok)
            self._save_local()
            if step.clears_resolved and self.resolved is not None:
                self._handled_resolved = self.resolved[1]
                self.resolved = None
                await self.units.clear_resolved(self.unit_name)
            await self._report()

    async def _run_hook(self, hook: str) -> bool:
        assert self.server is not None and self.units is not None
        context = UnitHookContext(self, hook)
        client_id = self.server.open_context(context)
        env = hook_environment(
            self.unit_name, self.paths.charm, self.paths.socket, client_id, self.paths.tools, hook, {}
        )
        log.info("unit {unit}: running hook {hook}", unit=self.unit_name, hook=hook)
        self.hooks_run.append(hook)
        try:
            result = await self.runner.run(
                HookInvocation(
                    hook,
                    self.paths.charm,
                    env,
                    self.hook_timeout,
                    lambda line: log.info("{unit} {hook}| {line}", unit=self.unit_name, hook=hook, line=line),
                )
            )
        finally:
            self.server.close_context(client_id)
        if result.missing:
            log.info("unit {unit}: the charm has no hooks/{hook}: nothing to run", unit=self.unit_name, hook=hook)
            return True
        self.last_output = tuple(result.output_tail)[-(OUTPUT_LINES - 1) :]
        if not result.ok:
            self.last_output += (result.summary(),)  # how it ended: exit code, signal, timeout
            log.error("unit {unit}: {summary}", unit=self.unit_name, summary=result.summary())
            return False
        log.info(
            "unit {unit}: hook {hook} done in {seconds:.1f} s", unit=self.unit_name, hook=hook, seconds=result.duration
        )
        self.ports = context.ports  # stored with the state the step reports next
        return True

    # -- records --------------------------------------------------------------------------------------------

    async def _report(self) -> None:
        assert self.units is not None
        failed = self.local.in_error
        record = UnitRecord(
            self.unit_name,
            self.local.reported,
            self.charm_id,
            self.local.failed_hook if failed else None,
            self.last_output if failed else (),
            self.address,
            self.address,
            sort_ports(self.ports),
        )
        try:
            await self.units.report(record)
        except StateNotFoundError:
            self.gone = True

    async def _register(self) -> None:
        assert self.units is not None and self.client is not None
        presence = UnitPresence(os.getpid(), __version__)
        try:
            await self.units.register(self.unit_name, presence, self.owner)
        except StateNodeExistsError:  # our previous process's node, not yet expired: replace it
            await self.client.delete(unit_agent_path(self.unit_name))
            await self.units.register(self.unit_name, presence, self.owner)

    def _load_local(self) -> LocalState:
        try:
            document = yaml.safe_load(self.paths.state.read_text()) or {}
        except FileNotFoundError:
            return LocalState()
        except (OSError, yaml.YAMLError) as exc:
            raise StateError(f"{self.paths.state}: cannot read the unit's state ({exc}): repair or remove it") from None
        return LocalState.from_document(document)

    def _save_local(self) -> None:
        write_private(self.paths.state, yaml.safe_dump(self.local.to_document(), default_flow_style=False))


def _settings(data: bytes, stat: Any) -> dict[str, Any]:
    return load_document(data, "service settings")


def _resolved(data: bytes, stat: Any) -> tuple[bool, int]:
    return bool(load_document(data, "resolved request").get("retry", False)), int(stat.czxid)
