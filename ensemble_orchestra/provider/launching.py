"""Launching claimed systems, and rolling a failed launch back so nothing is left behind.

Launch = one Cobbler edit that records ownership and the install (ownership.py) → power on/reboot →
confirm. A launch that fails is undone as far as it got: once power may have been touched the system
is released exactly as ``shutdown_machine`` does it (powered off and confirmed, then returned to the
pool, then the marker dropped) — never handed back while an installer may still run with this
environment's user data. If the rollback itself fails, the system stays recorded as owned and the
error says so (``RollbackFailed``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredSemaphore
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..cloudinit import MachineUserData, render_user_data
from ..cobbler import CobblerClient, CobblerInvalidRequest, SystemRecord
from ..config import OrchestraConfig
from ..storage import StorageError
from .claiming import Claimer
from .claims import ClaimRegistry
from .errors import MissingProfile, NoMatchingSystems, ProviderError, RollbackFailed
from .matching import Constraints
from .ownership import OrchestraMachine, Pool
from .power import PowerController
from .releasing import Releaser

__all__ = ["BeforePower", "Launcher"]

_log = Logger()

BeforePower = Callable[[SystemRecord], Awaitable[None]]


class _Stage(enum.IntEnum):
    """How far a launch got: what its rollback must undo."""

    CLAIMED = 1  # the marker is ours; Cobbler untouched
    WRITTEN = 2  # the ownership edit went out: Cobbler may record the system as ours
    POWERED = 3  # an on/reboot went out: the system may be running the installer


class Launcher:
    def __init__(
        self,
        config: OrchestraConfig,
        client: CobblerClient,
        claims: ClaimRegistry,
        pool: Pool,
        claimer: Claimer,
        power: PowerController,
        releaser: Releaser,
        limit: DeferredSemaphore,
        progress: Callable[[str, str], None],
    ) -> None:
        self._config = config
        self._client = client
        self._claims = claims
        self._pool = pool
        self._claimer = claimer
        self._power = power
        self._releaser = releaser
        self._limit = limit
        self._progress = progress

    def _user_data(self, record: SystemRecord, machine_data: Mapping[str, Any], master: bool) -> str:
        if not master and not machine_data.get("zookeeper-hosts"):
            raise ProviderError(f"machine {machine_data['machine-id']}: machine data has no zookeeper-hosts")
        tools = machine_data.get("tools") or {}
        return render_user_data(
            MachineUserData(
                machine_id=str(machine_data["machine-id"]),
                provider_type="orchestra",
                authorized_keys=[self._config.authorized_keys],
                instance_id=record.uid,
                zookeeper_hosts=() if master else tuple(machine_data.get("zookeeper-hosts") or ()),
                admin_secret=self._config.admin_secret if master else None,
                instance_name=record.name,
                tools_url=str(tools.get("url", "")),
                tools_sha256=str(tools.get("sha256", "")),
                agent_credentials=tuple(machine_data.get("agent-credentials") or ()),
            )
        )

    async def _write(self, record: SystemRecord, fields: Mapping[str, Any]) -> None:
        try:
            await self._client.edit_system(record.name, fields)
        except CobblerInvalidRequest as error:
            if fields["profile"] not in str(error):
                raise
            raise MissingProfile(
                f"Cobbler has no profile '{fields['profile']}' (<series>-<arch>) for {record.name}: import that"
                " series' distro and run 'ensemble-orchestra setup-server', or choose another default-series or"
                " series constraint"
            ) from None

    async def launch(
        self,
        record: SystemRecord,
        machine_data: Mapping[str, Any],
        constraints: Constraints,
        master: bool,
        before_power: BeforePower | None = None,
    ) -> OrchestraMachine:
        """Install a claimed system: one edit (ownership + install), power, confirm; rollback on failure."""
        machine_id = str(machine_data["machine-id"])
        stage = _Stage.CLAIMED

        def power_sent() -> None:
            nonlocal stage
            stage = _Stage.POWERED

        try:
            user_data = self._user_data(record, machine_data, master)
            profile = constraints.profile_for(record, self._config.default_series)
            self._progress("writing user data", record.name)
            # From here Cobbler may record us as owner, even if the call then fails or is cancelled.
            stage = _Stage.WRITTEN
            fields = self._pool.claim_fields(record, machine_id, profile, user_data)
            await self._write(record, fields)
            _log.info(
                "claimed {system} ({uid}) as machine {machine}", system=record.name, uid=record.uid, machine=machine_id
            )
            if before_power is not None:
                await before_power(record)
            self._progress("powering on", record.name)
            await self._power.boot_for_install(record.name, power_sent)
            self._progress("power confirmed", record.name)
        except BaseException as error:  # including cancellation (Ctrl-C): never strand the system
            await self._rollback(record, stage, error)
            raise
        # The record as the edit left it: its interfaces (the address the firewalls need) and its user data.
        claimed = dataclasses.replace(
            record,
            netboot_enabled=True,
            autoinstall_meta=fields["autoinstall_meta"],
            mgmt_classes=tuple(fields["mgmt_classes"]),
            profile=profile,
        )
        return OrchestraMachine.from_record(claimed)

    async def _rollback(self, record: SystemRecord, stage: _Stage, error: BaseException) -> None:
        """Undo a failed launch as far as it got; RollbackFailed if the system must stay owned."""
        reason = "interrupted" if isinstance(error, CancelledError) else str(error) or type(error).__name__
        _log.warn("launch on {system} failed ({error}); releasing it", system=record.name, error=reason)
        try:
            if stage >= _Stage.WRITTEN:
                await self._releaser.free(record.name, power_off=stage is _Stage.POWERED)
        except Exception as failure:
            powered = " and may still be powered on" if stage is _Stage.POWERED else ""
            _log.failure(
                "rollback of {system} failed: it stays recorded as owned by {env}",
                system=record.name,
                env=self._pool.environment,
            )
            raise RollbackFailed(
                f"launch on {record.name} failed ({reason}), and so did its rollback ({failure}): {record.name}"
                f" stays recorded as owned by environment '{self._pool.environment}'{powered};"
                " 'ensemble destroy-environment' retries releasing it",
                record.name,
                interrupted=isinstance(error, CancelledError),
            ) from failure
        await self._drop_marker(record)

    async def _drop_marker(self, record: SystemRecord) -> None:
        try:
            await self._claims.release(record.uid)
        except StorageError as error:  # Cobbler shows it available: the lease reaps the marker later
            _log.warn("could not drop the claim marker of {system}: {error}", system=record.name, error=str(error))

    async def start_machines(
        self, machines: Sequence[Mapping[str, Any]], master: bool = False, before_power: BeforePower | None = None
    ) -> list[OrchestraMachine]:
        """Launch several machines concurrently (bounded by launch-concurrency).

        Constraints are checked before anything is claimed. Cobbler calls: one find and one re-read
        for the whole batch, then per machine one edit and two power calls (status, on/reboot) plus
        confirmation polls. Each failed launch is rolled back and the first failure raised; machines
        launched meanwhile stay owned and recorded (get_machines finds them).
        """
        wanted = [Constraints.parse(m.get("constraints")) for m in machines]
        self._progress("claiming", f"{len(machines)} system(s) from {self._config.available_mgmt_class}")
        found = await self._client.find_systems_expanded({"mgmt_classes": self._config.available_mgmt_class})
        claimed = await self._claimer.claim_batch(found, wanted)
        stopping = False  # set by the first cancelled launch: no queued launch of this batch may begin

        async def one(i: int, record: SystemRecord | NoMatchingSystems) -> OrchestraMachine:
            nonlocal stopping
            if isinstance(record, NoMatchingSystems):
                raise record
            try:
                await self._limit.acquire()
            except CancelledError:  # Ctrl-C while queued: only the marker is ours, drop it at once
                await self._drop_marker(record)
                raise
            try:
                if stopping:
                    await self._drop_marker(record)
                    raise CancelledError()
                return await self.launch(record, machines[i], wanted[i], master, before_power)
            except CancelledError:
                stopping = True
                raise
            except RollbackFailed as error:
                stopping = stopping or error.interrupted  # cancelled, even though its rollback then failed
                raise
            finally:
                self._limit.release()

        launches = [Deferred.fromCoroutine(one(i, r)) for i, r in enumerate(claimed)]
        results = await DeferredList(launches, consumeErrors=True)
        failures = [r for _, r in results if isinstance(r, Failure)]
        # A system left owned (and maybe running) matters more than the others' errors: say it first.
        failures.sort(key=lambda f: not f.check(RollbackFailed))
        if failures:
            for extra in failures[1:]:
                _log.warn("another launch failed too: {error}", error=str(extra.value))
            failures[0].raiseException()
        return [r for _, r in results if not isinstance(r, Failure)]
