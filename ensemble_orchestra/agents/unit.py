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

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .. import __version__
from ..charm.bundle import unpack_bundle
from ..charm.config import ConfigSchema
from ..origin import INSTALL_DIR
from ..state.charms import read_charm
from ..state.client import StateClient
from ..state.environment import read_settings, wait_initialized
from ..state.errors import StateError, StateNodeExistsError, StateNotFoundError
from ..state.layout import load_document, service_config_path, unit_agent_path, unit_resolved_path
from ..state.relations import RelationsState
from ..state.services import ServicesState, settings_digest
from ..state.topology import Topology
from ..state.topology_node import TopologyNode
from ..state.units import OUTPUT_LINES, RelationError, UnitPresence, UnitRecord, UnitsState, sort_ports
from ..state.watch import SessionState
from .config import AgentConfig, write_private
from .deployer import fetch_bundle
from .hooks.install import install_tools
from .hooks.runner import HookInvocation, HookResult, HookRunner, hook_environment
from .hooks.server import HookToolServer
from .lifecycle import LocalState, next_step, settle
from .reconciler import Reconciler
from .relation_lifecycle import RelationLocal, RelationStep, RelationView
from .relation_lifecycle import next_step as next_relation_step
from .relation_members import RelationMembers
from .system import global_addresses
from .unit_context import HookRelation, UnitHookContext
from .unit_paths import UNITS_DIR, UnitPaths

__all__ = ["UnitAgent"]

log = Logger()

CONNECT_TIMEOUT = 60.0
INITIALIZED_TIMEOUT = 600.0
RECONCILE_INTERVAL = 30.0


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
        self.resolved: ResolvedRequest | None = None
        self.topology: Topology | None = None
        self.service_charm: str | None = None  # the service's charm in the topology (upgrade-charm changes it)
        self.force_upgrade = False
        self.relations: dict[int, RelationLocal] = {}  # the relations this unit entered, by id (persisted)
        self.relations_state: RelationsState | None = None
        self.members = RelationMembers(None, unit_name, lambda: self._reconciler.trigger())
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
        self.relations_state = RelationsState(client, identities)
        self.members.client = client
        record = await self.units.read(self.unit_name)
        service = await ServicesState(client, identities).read(self.service_name)
        self.charm_id = record.charm or service.charm
        self.hook_timeout = service.hook_timeout
        charm = await read_charm(client, self.charm_id)
        self.schema = ConfigSchema.from_dict(charm.config, f"charm {self.charm_id}")
        self._recover_swap()
        self.local, self.relations = self._load_local()
        if self.local.charm is None:  # a state written before upgrades were known, or a new unit
            self.local = dataclasses.replace(self.local, charm=self.charm_id)
        self.charm_id = self.local.charm
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
            self.members.stop()
            await self.server.stop()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    # -- watches (reactor thread) ---------------------------------------------------------------------------

    def _topology_changed(self, topology: Topology | None) -> None:
        self.topology = topology
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
        assert service is not None
        self.service_charm, self.force_upgrade = service.charm, service.force_upgrade
        self._reconciler.trigger()

    def _settings_changed(self, settings: dict[str, Any] | None) -> None:
        self.settings = settings or {}
        self._reconciler.trigger()

    def _resolved_changed(self, request: ResolvedRequest | None) -> None:
        self.resolved = request if request is not None and request.czxid != self._handled_resolved else None
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
        """Run the unit's and its relations' steps until none is left (the reconciler runs this one at a time).

        The unit's own hooks come first; a relation's hooks run once the unit is started and not in error. A
        dying unit leaves its relations (departed, broken) before its stop hook.
        """
        assert self.units is not None
        while not self.gone:
            if self.topology is not None:
                await self.members.update(self.topology)
            request = self.resolved
            unit_retry = None if request is None or request.relation is not None else request.retry
            digest = settings_digest(self.effective_settings())
            charm, force = self.service_charm, self.force_upgrade
            step = None if self.dying else next_step(self.local, False, unit_retry, digest, charm, force)
            if step is None:
                relations_run = self.dying or (self.local.state == "started" and not self.local.in_error)
                # A `resolved UNIT RELATION` is acted on whatever the unit's state (only that relation moves).
                if await self._relation_step(only_resolved=not relations_run):
                    continue
            if step is None:
                step = next_step(self.local, self.dying, unit_retry, digest, charm, force)
            if step is None:
                if request is not None and request.relation is not None:
                    await self._clear_resolved()  # names no relation in error: nothing to do
                    continue
                return
            if step.upgrade is not None:
                await self._swap_charm(step.upgrade)
            ok = True
            if step.hook is not None:
                ok = await self._run_unit_hook(step.hook)
            self.local = settle(self.local, step, ok)
            self._save_local()
            if step.clears_resolved and self.resolved is not None:
                await self._clear_resolved()
            await self._report()

    async def _swap_charm(self, charm_id: str) -> None:
        """Put charm *charm_id*'s files in place of the unit's (fetched and checked first: a failed fetch
        leaves the unit as it was, and the reconciler tries again)."""
        assert self.client is not None
        charm = await read_charm(self.client, charm_id)
        log.info("unit {unit}: upgrading its charm to {charm}", unit=self.unit_name, charm=charm_id)
        data = await fetch_bundle(self.reactor, charm.url)
        fresh = self.paths.root / "charm.new"
        old = self.paths.root / "charm.old"
        for leftover in (fresh, old):
            shutil.rmtree(leftover, ignore_errors=True)
        unpack_bundle(data, fresh, charm.sha256, charm.url)
        self.paths.charm.rename(old)
        fresh.rename(self.paths.charm)
        shutil.rmtree(old, ignore_errors=True)
        self.schema = ConfigSchema.from_dict(charm.config, f"charm {charm_id}")
        self.charm_id = charm_id
        self.local = dataclasses.replace(self.local, charm=charm_id)
        self._save_local()  # the files are the new charm's from now on, whatever the hook does

    def _recover_swap(self) -> None:
        """A swap interrupted between its two renames left the old charm aside: put it back (the upgrade,
        not recorded yet, runs again)."""
        old = self.paths.root / "charm.old"
        if not self.paths.charm.exists() and old.exists():
            old.rename(self.paths.charm)

    async def _clear_resolved(self) -> None:
        assert self.units is not None and self.resolved is not None
        self._handled_resolved = self.resolved.czxid
        self.resolved = None
        await self.units.clear_resolved(self.unit_name)

    def _relation_views(self) -> dict[int, RelationView]:
        views: dict[int, RelationView] = {}
        if self.topology is None:
            return views
        for relation in self.topology.relations_of(self.service_name):
            views[relation.id] = RelationView(
                relation.id,
                relation.endpoint(self.service_name).name,
                relation.remote_service(self.service_name),
                not self.dying,
                self.members.members(relation.id),
            )
        return views

    async def _relation_step(self, only_resolved: bool = False) -> bool:
        """Take the first relation step there is (*only_resolved*: only the one a pending ``resolved UNIT
        RELATION`` asks for); False when there is none."""
        if self.topology is None:
            return False
        views = self._relation_views()
        request = self.resolved
        for relation_id in sorted(set(views) | set(self.relations)):
            local = self.relations.get(relation_id)
            resolved = None
            if request is not None and request.relation is not None and local is not None:
                if local.failed is not None and request.relation in (local.name, local.key):
                    resolved = request.retry
            if only_resolved and resolved is None:
                continue
            step = next_relation_step(local, views.get(relation_id), resolved)
            if step is not None:
                await self._take(relation_id, step)
                return True
        return False

    async def _take(self, relation_id: int, step: RelationStep) -> None:
        assert self.relations_state is not None
        after: RelationLocal | None = step.success
        if step.action == "enter":
            settings = {"private-address": self.address} if self.address else {}
            await self.relations_state.enter(self.unit_name, relation_id, settings, self.owner)
            log.info("unit {unit} entered relation {key}", unit=self.unit_name, key=step.failure.key)
        elif step.action == "leave":
            await self.relations_state.leave(self.unit_name, relation_id)
            log.info("unit {unit} left relation {key}", unit=self.unit_name, key=step.failure.key)
        elif step.action == "hook":
            after = await self._run_relation_hook(step)
        if after is None:
            self.relations.pop(relation_id, None)
            log.info("unit {unit}: relation {key} is gone", unit=self.unit_name, key=step.failure.key)
        else:
            self.relations[relation_id] = after
            self.members.forget(relation_id, set(after.joined))
        self._save_local()
        if step.clears_resolved and self.resolved is not None:
            await self._clear_resolved()
        await self._report()

    async def _run_relation_hook(self, step: RelationStep) -> RelationLocal | None:
        assert self.relations_state is not None and step.kind is not None
        relation = dataclasses.replace(step.failure, failed=None)  # as before the hook: failure only adds it
        hook = f"{relation.name}-relation-{step.kind}"
        extra = {"ENSEMBLE_RELATION": relation.name, "JUJU_RELATION": relation.name}
        extra |= {"ENSEMBLE_RELATION_ID": relation.key, "JUJU_RELATION_ID": relation.key}
        if step.remote is not None:
            extra |= {"ENSEMBLE_REMOTE_UNIT": step.remote, "JUJU_REMOTE_UNIT": step.remote}
        context = UnitHookContext(self, hook, HookRelation(relation, step.kind, step.remote))
        result = await self._run_hook(hook, context, extra)
        if not result.ok:
            assert step.failure.failed is not None
            failed = dataclasses.replace(step.failure.failed, output=self._failure_output(result))
            return dataclasses.replace(step.failure, failed=failed)
        for relation_id, changes in sorted(context.relation_writes.items()):
            target = self.relations.get(relation_id)
            if target is not None and not target.left and changes:
                await self.relations_state.write(self.unit_name, relation_id, changes)
        self.ports = context.ports
        return step.success

    async def own_relation_settings(self, relation_id: int) -> dict[str, str]:
        """This unit's settings in a relation, as stored (a hook's own unwritten changes are its context's)."""
        assert self.relations_state is not None
        settings = await self.relations_state.read(self.unit_name, relation_id)
        return dict(settings.values) if settings else {}

    async def _run_unit_hook(self, hook: str) -> bool:
        context = UnitHookContext(self, hook)
        result = await self._run_hook(hook, context, {})
        if result.missing:
            return True
        self.last_output = self._failure_output(result) if not result.ok else tuple(result.output_tail)
        if result.ok:
            self.ports = context.ports  # stored with the state the step reports next
        return result.ok

    def _failure_output(self, result: HookResult) -> tuple[str, ...]:
        """A failing hook's last lines and how it ended (exit code, signal, timeout), for status."""
        return tuple(result.output_tail)[-(OUTPUT_LINES - 1) :] + (result.summary(),)

    async def _run_hook(self, hook: str, context: UnitHookContext, extra: dict[str, str]) -> HookResult:
        assert self.server is not None
        client_id = self.server.open_context(context)
        env = hook_environment(
            self.unit_name, self.paths.charm, self.paths.socket, client_id, self.paths.tools, hook, extra
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
        elif not result.ok:
            log.error("unit {unit}: {summary}", unit=self.unit_name, summary=result.summary())
        else:
            log.info(
                "unit {unit}: hook {hook} done in {seconds:.1f} s",
                unit=self.unit_name,
                hook=hook,
                seconds=result.duration,
            )
        return result

    # -- records --------------------------------------------------------------------------------------------

    async def _report(self) -> None:
        assert self.units is not None
        failed = self.local.in_error
        relation_errors = {
            relation.key: RelationError(
                relation.name,
                relation.remote_service,
                f"{relation.name}-relation-{relation.failed.kind}",
                relation.failed.remote,
                relation.failed.output,
            )
            for _, relation in sorted(self.relations.items())
            if relation.failed is not None
        }
        record = UnitRecord(
            self.unit_name,
            self.local.reported,
            self.charm_id,
            self.local.failed_hook if failed else None,
            self.last_output if failed else (),
            self.address,
            self.address,
            sort_ports(self.ports),
            relation_errors,
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

    def _load_local(self) -> tuple[LocalState, dict[int, RelationLocal]]:
        try:
            document = yaml.safe_load(self.paths.state.read_text()) or {}
            relations = {
                int(k): RelationLocal.from_document(int(k), v) for k, v in (document.get("relations") or {}).items()
            }
        except FileNotFoundError:
            return LocalState(), {}
        except (OSError, yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{self.paths.state}: cannot read the unit's state ({exc}): repair or remove it") from None
        return LocalState.from_document(document), relations

    def _save_local(self) -> None:
        document = self.local.to_document()
        document["relations"] = {k: r.to_document() for k, r in sorted(self.relations.items())}
        write_private(self.paths.state, yaml.safe_dump(document, default_flow_style=False))


def _settings(data: bytes, stat: Any) -> dict[str, Any]:
    return load_document(data, "service settings")


class ResolvedRequest(NamedTuple):
    """A pending ``resolved`` request: retry the failed hook?, for which relation (None: the unit's own hook),
    and the node's czxid (a request is handled once)."""

    retry: bool
    relation: str | None
    czxid: int


def _resolved(data: bytes, stat: Any) -> ResolvedRequest:
    document = load_document(data, "resolved request")
    relation = document.get("relation")
    return ResolvedRequest(bool(document.get("retry", False)), None if relation is None else str(relation), stat.czxid)
