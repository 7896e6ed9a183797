"""The orchestra machine provider: Cobbler's pool of physical systems as Ensemble machines.

Launch = claim (atomic marker on the storage, see claims.py) → one Cobbler edit
that records ownership and the install (acquired class, owner and user data in
the autoinstall metadata, profile, netboot on) → power on/reboot → confirm.
Any failure after the claim releases the system again; the owner written on
the system itself is what makes every owned system findable, so no path leaves
a system claimed and unrecorded.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredSemaphore, fail, gatherResults
from twisted.logger import Logger
from zope.interface import implementer

from ..cloudinit import MachineUserData, render_user_data
from ..cobbler import CobblerClient, CobblerError, CobblerInvalidRequest, CobblerNotFound, SystemRecord
from ..config import OrchestraConfig
from ..interfaces import IFileStorage, IMachineProvider, IProviderMachine
from ..schedule import Schedule
from ..storage import FileNotFound, StorageError
from .claims import ClaimRegistry
from .errors import (
    EnvironmentAlreadyBootstrapped,
    MachinesNotFound,
    MissingProfile,
    NoMatchingSystems,
    ProviderError,
    ReleaseFailed,
)
from .power import DEFAULT_POWER_SCHEDULE, PowerController

__all__ = ["OrchestraMachine", "OrchestraProvider", "META_KEYS"]

_log = Logger()

ENV_KEY = "ensemble_environment"
MACHINE_KEY = "ensemble_machine_id"
USER_DATA_KEY = "ensemble_user_data"
INSTANCE_KEY = "ensemble_instance_id"
META_KEYS = (ENV_KEY, MACHINE_KEY, USER_DATA_KEY, INSTANCE_KEY)
STATE_FILE = "provider-state"
PORTS_DIR = "ports"
ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "i386": "i386", "i686": "i386", "arm": "arm"}
CONSTRAINTS = ("arch", "mem", "cpu", "orchestra-classes", "orchestra-name", "series")


@implementer(IProviderMachine)
@dataclass(frozen=True)
class OrchestraMachine:
    """A claimed Cobbler system, as Ensemble sees it."""

    instance_id: str
    dns_name: str
    private_dns_name: str
    state: str
    system_name: str
    machine_id: str

    @classmethod
    def from_record(cls, record: SystemRecord) -> OrchestraMachine:
        name = record.hostname or record.name
        return cls(
            instance_id=record.uid,
            dns_name=name,
            private_dns_name=name,
            # The installer's nopxe turns netboot off: until then the system is installing.
            state="pending" if record.netboot_enabled else "provisioned",
            system_name=record.name,
            machine_id=str(record.autoinstall_meta.get(MACHINE_KEY, "")),
        )


def _profile_arch(profile: str) -> str | None:
    """The arch of a profile named by the kit's convention ``<series>-<arch>``."""
    _, _, arch = profile.rpartition("-")
    return arch if arch in ARCH_ALIASES.values() else None


@implementer(IMachineProvider)
class OrchestraProvider:
    provider_type = "orchestra"

    def __init__(
        self,
        config: OrchestraConfig,
        reactor: Any,
        client: CobblerClient,
        storage: IFileStorage,
        *,
        claims: ClaimRegistry | None = None,
        power_schedule: Schedule | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.environment_name = config.environment
        self._reactor = reactor
        self.client = client
        self.storage = storage
        self.claims = claims or ClaimRegistry(storage)
        schedule = power_schedule or dataclasses.replace(DEFAULT_POWER_SCHEDULE, timeout=config.power_timeout)
        self.power = PowerController(client, reactor, schedule)
        self._rng = rng or random.SystemRandom()
        self._limit = DeferredSemaphore(config.launch_concurrency)
        # Told each phase of long work as (phase, detail): the CLI shows it to the person waiting.
        self.progress: Callable[[str, str], None] = lambda phase, detail: None

    # -- finding -------------------------------------------------------------------------------

    def _owner_criteria(self) -> dict[str, str]:
        return {"autoinstall_meta": f"{ENV_KEY}={self.environment_name}"}

    def _is_ours(self, record: SystemRecord) -> bool:
        return record.autoinstall_meta.get(ENV_KEY) == self.environment_name

    def _is_available(self, record: SystemRecord) -> bool:
        return (
            self.config.available_mgmt_class in record.mgmt_classes
            and self.config.acquired_mgmt_class not in record.mgmt_classes
            and not record.autoinstall_meta.get(ENV_KEY)
        )

    async def _owned_records(self) -> list[SystemRecord]:
        """This environment's systems: one expanded find, whatever the pool size."""
        records = await self.client.find_systems_expanded(self._owner_criteria())
        return [r for r in records if self._is_ours(r)]  # the match is a substring match: check exactly

    async def get_machines(self, instance_ids: Iterable[str] = ()) -> list[OrchestraMachine]:
        machines = [OrchestraMachine.from_record(r) for r in await self._owned_records()]
        wanted = list(instance_ids)
        if not wanted:
            return machines
        by_id = {m.instance_id: m for m in machines}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise MachinesNotFound(missing)
        return [by_id[i] for i in wanted]

    async def get_machine(self, instance_id: str) -> OrchestraMachine:
        return (await self.get_machines([instance_id]))[0]

    def _matches(self, record: SystemRecord, constraints: Mapping[str, Any]) -> bool:
        if not (record.power_type and record.power_address):
            return False  # without power management a claimed system could never be booted
        arch = constraints.get("arch")
        if arch and _profile_arch(record.profile) not in (None, ARCH_ALIASES.get(str(arch), str(arch))):
            return False
        classes = constraints.get("orchestra-classes")
        if classes:
            wanted = [c.strip() for c in str(classes).split(",") if c.strip()]
            if not all(c in record.mgmt_classes for c in wanted):
                return False
        pattern = constraints.get("orchestra-name")
        return not (pattern and not fnmatch.fnmatchcase(record.name, str(pattern)))

    # -- claiming ------------------------------------------------------------------------------

    async def _claim_marker(self, candidates: list[SystemRecord], taken: set[str]) -> SystemRecord:
        """Win the claim marker of one of *candidates* (shuffled, so concurrent claimers spread out).

        A lost marker on a system the find saw available may be abandoned (a claimer died): it is
        reaped once older than the lease, and the claim tried again.
        """
        order = list(candidates)
        self._rng.shuffle(order)
        for record in order:
            if record.uid in taken:
                continue
            taken.add(record.uid)
            if await self.claims.try_claim(record.uid):
                return record

            async def still_available(name: str = record.name) -> bool:
                return self._is_available(await self.client.get_system(name))

            if await self.claims.reap_if_stale(record.uid, still_available) and await self.claims.try_claim(record.uid):
                return record
        raise NoMatchingSystems(
            f"no available system in Cobbler class '{self.config.available_mgmt_class}' matches the "
            "constraints (all taken or none has power management): add systems to the class or relax constraints"
        )

    async def _claim_batch(
        self, found: list[SystemRecord], machines: Sequence[Mapping[str, Any]]
    ) -> list[SystemRecord | BaseException]:
        """A claimed, re-verified system for each of *machines* (or the error why there is none).

        Markers are won concurrently (storage only); then ONE re-read of every won system checks
        that nothing outside the claim protocol (an admin, an old provider) took it meanwhile.
        """
        taken: set[str] = set()
        outcome: list[SystemRecord | BaseException | None] = [None] * len(machines)
        pending = list(range(len(machines)))
        held: list[SystemRecord] = []  # markers this call holds but has not handed out
        try:
            while pending:

                def claim(i: int) -> Deferred[SystemRecord]:
                    constraints = machines[i].get("constraints") or {}
                    candidates = [r for r in found if self._is_available(r) and self._matches(r, constraints)]
                    # Bounded like launches: hundreds of simultaneous MKCOLs overrun the storage server.
                    return self._limit.run(lambda: Deferred.fromCoroutine(self._claim_marker(candidates, taken)))

                results = await DeferredList([claim(i) for i in pending], consumeErrors=True)
                won: dict[int, SystemRecord] = {}
                for i, (ok, value) in zip(pending, results, strict=True):
                    if ok:
                        won[i] = value
                        held.append(value)
                    elif value.check(NoMatchingSystems):
                        outcome[i] = value.value
                    else:
                        value.raiseException()
                current = await self.client.get_systems([r.name for r in won.values()]) if won else {}
                pending = []
                for i, record in won.items():
                    now = current.get(record.name)
                    held.remove(record)
                    if now and now.uid == record.uid and self._is_available(now) and self._matches(now, {}):
                        outcome[i] = now
                    else:
                        await self.claims.release(record.uid)
                        pending.append(i)
        except BaseException:
            for record in held + [o for o in outcome if isinstance(o, SystemRecord)]:
                await self.claims.release(record.uid)
            raise
        return [o for o in outcome if o is not None]

    def _launch_fields(
        self, record: SystemRecord, machine_id: str, constraints: Mapping[str, Any], user_data: str
    ) -> dict[str, Any]:
        series = str(constraints.get("series") or self.config.default_series)
        arch = ARCH_ALIASES.get(str(constraints.get("arch") or ""), None) or _profile_arch(record.profile) or "x86_64"
        classes = [c for c in record.mgmt_classes if c != self.config.available_mgmt_class]
        meta = {k: v for k, v in record.autoinstall_meta.items() if k not in META_KEYS}
        meta.update(
            {
                ENV_KEY: self.environment_name,
                MACHINE_KEY: machine_id,
                INSTANCE_KEY: record.uid,
                USER_DATA_KEY: base64.b64encode(user_data.encode()).decode(),
            }
        )
        return {
            "mgmt_classes": [self.config.acquired_mgmt_class, *classes],
            "autoinstall_meta": meta,
            "profile": f"{series}-{arch}",
            "netboot_enabled": True,
            "comment": f"ensemble environment {self.environment_name} machine {machine_id}",
        }

    def _user_data(self, record: SystemRecord, machine_data: Mapping[str, Any], master: bool) -> str:
        if not master and not machine_data.get("zookeeper-hosts"):
            raise ProviderError(f"machine {machine_data['machine-id']}: machine data has no zookeeper-hosts")
        return render_user_data(
            MachineUserData(
                machine_id=str(machine_data["machine-id"]),
                provider_type=self.provider_type,
                authorized_keys=[self.config.authorized_keys],
                instance_id=record.uid,
                zookeeper_hosts=() if master else tuple(machine_data.get("zookeeper-hosts") or ()),
                admin_secret=self.config.admin_secret if master else None,
            )
        )

    async def _launch(
        self,
        record: SystemRecord,
        machine_data: Mapping[str, Any],
        master: bool,
        before_power: Callable[[SystemRecord], Awaitable[None]] | None = None,
    ) -> OrchestraMachine:
        """Install a claimed system: one edit (ownership + install), power, confirm; rollback on failure."""
        machine_id = str(machine_data["machine-id"])
        written = False
        try:
            user_data = self._user_data(record, machine_data, master)
            fields = self._launch_fields(record, machine_id, machine_data.get("constraints") or {}, user_data)
            self.progress("writing user data", record.name)
            try:
                await self.client.edit_system(record.name, fields)
            except CobblerInvalidRequest as error:
                if fields["profile"] not in str(error):
                    raise
                raise MissingProfile(
                    f"Cobbler has no profile '{fields['profile']}' (<series>-<arch>) for {record.name}: import that"
                    " series' distro and run 'ensemble-orchestra setup-server', or choose another default-series or"
                    " series constraint"
                ) from None
            written = True
            _log.info(
                "claimed {system} ({uid}) as machine {machine}", system=record.name, uid=record.uid, machine=machine_id
            )
            if before_power is not None:
                await before_power(record)
            self.progress("powering on", record.name)
            await self.power.boot_for_install(record.name)
            self.progress("power confirmed", record.name)
        except BaseException as error:  # including cancellation (Ctrl-C): never strand the system
            await self._rollback(record, written, error)
            raise
        return OrchestraMachine.from_record(
            SystemRecord(
                name=record.name,
                uid=record.uid,
                hostname=record.hostname,
                netboot_enabled=True,
                autoinstall_meta={MACHINE_KEY: machine_id},
            )
        )

    async def _rollback(self, record: SystemRecord, written: bool, error: BaseException) -> None:
        reason = "interrupted" if isinstance(error, CancelledError) else str(error) or type(error).__name__
        _log.warn("launch on {system} failed ({error}); releasing it", system=record.name, error=reason)
        try:
            if written:
                await self._return_to_pool(record.name)
            await self.claims.release(record.uid)
        except BaseException:  # logged, never raised over the original error
            _log.failure(
                "rollback of {system} failed: it stays recorded as owned by {env}; destroy-environment retries",
                system=record.name,
                env=self.environment_name,
            )

    async def start_machines(
        self,
        machines: Sequence[Mapping[str, Any]],
        master: bool = False,
        before_power: Callable[[SystemRecord], Awaitable[None]] | None = None,
    ) -> list[OrchestraMachine]:
        """Launch several machines concurrently (bounded by launch-concurrency).

        Cobbler calls: one find and one re-read for the whole batch, then per machine one edit and
        two power calls (status, on/reboot) plus confirmation polls. Each failed launch is rolled
        back and the first failure raised; machines launched meanwhile stay owned and recorded
        (get_machines finds them).
        """
        self.progress("claiming", f"{len(machines)} system(s) from {self.config.available_mgmt_class}")
        found = await self.client.find_systems_expanded({"mgmt_classes": self.config.available_mgmt_class})
        claimed = await self._claim_batch(found, machines)
        started: set[str] = set()  # uids whose launch began (and so rolls itself back)

        def one(data: Mapping[str, Any], record: SystemRecord | BaseException) -> Deferred[OrchestraMachine]:
            if isinstance(record, BaseException):
                return fail(record)

            async def launch() -> OrchestraMachine:
                started.add(record.uid)
                return await self._launch(record, data, master, before_power)

            return self._limit.run(lambda: Deferred.fromCoroutine(launch()))

        results = await DeferredList([one(d, r) for d, r in zip(machines, claimed, strict=True)], consumeErrors=True)
        for record, (ok, _) in zip(claimed, results, strict=True):
            # Cancelled (Ctrl-C) while still queued: a launch that never began holds a marker nobody else drops.
            if not ok and isinstance(record, SystemRecord) and record.uid not in started:
                await self._release_marker_quietly(record)
        failures = [r for ok, r in results if not ok]
        if failures:
            for extra in failures[1:]:
                _log.warn("another launch failed too: {error}", error=str(extra.value))
            failures[0].raiseException()
        return [r for _, r in results]

    async def _release_marker_quietly(self, record: SystemRecord) -> None:
        try:
            await self.claims.release(record.uid)
        except StorageError as error:  # the lease reaps it later; the system itself was never written
            _log.warn("could not drop the claim marker of {system}: {error}", system=record.name, error=str(error))

    async def start_machine(self, machine_data: Mapping[str, Any], master: bool = False) -> list[OrchestraMachine]:
        return await self.start_machines([machine_data], master)

    async def bootstrap(self, constraints: Mapping[str, Any] | None = None) -> list[OrchestraMachine]:
        """Launch machine 0 (ZooKeeper); provider state is saved before it is powered on."""
        self.progress("checking storage", self.config.storage_url)
        await self.storage.check_writable()
        state = await self.load_state()
        if state and state.get("zookeeper-instances"):
            raise EnvironmentAlreadyBootstrapped(
                f"environment '{self.environment_name}' is already bootstrapped "
                f"(machine {', '.join(state['zookeeper-instances'])}); destroy-environment first"
            )

        saved: list[str] = []

        async def record_state(record: SystemRecord) -> None:
            await self.save_state({"zookeeper-instances": [record.uid]})
            saved.append(record.uid)

        try:
            return await self.start_machines(
                [{"machine-id": "0", "constraints": dict(constraints or {})}], master=True, before_power=record_state
            )
        except BaseException:  # the launch was rolled back: so is the state naming its machine
            if saved:
                try:
                    await self.storage.delete(STATE_FILE)
                except StorageError as error:
                    _log.warn(
                        "could not clear the provider state of {env} after a failed bootstrap: {error};"
                        " 'destroy-environment' clears it",
                        env=self.environment_name,
                        error=str(error),
                    )
            raise

    # -- releasing -----------------------------------------------------------------------------

    async def _return_to_pool(self, name: str) -> None:
        record = await self.client.get_system(name)
        classes = [
            c
            for c in record.mgmt_classes
            if c not in (self.config.acquired_mgmt_class, self.config.available_mgmt_class)
        ]
        meta = {k: v for k, v in record.autoinstall_meta.items() if k not in META_KEYS}
        await self.client.edit_system(
            name,
            {
                "mgmt_classes": [self.config.available_mgmt_class, *classes],
                "autoinstall_meta": meta,
                "netboot_enabled": False,
                "comment": "",
            },
        )

    async def shutdown_machine(self, machine: OrchestraMachine) -> OrchestraMachine:
        """Power off, return to the pool, drop the claim. A power failure keeps the system owned (reported)."""
        self.progress("powering off", machine.system_name)
        await self.power.power_off(machine.system_name)
        await self._return_to_pool(machine.system_name)
        await self.claims.release(machine.instance_id)
        _log.info("released {system}", system=machine.system_name)
        self.progress("released", f"machine {machine.machine_id} ({machine.system_name})")
        return machine

    async def shutdown_machines(self, machines: Iterable[OrchestraMachine]) -> list[OrchestraMachine]:
        machines = list(machines)
        failures: dict[str, BaseException] = {}
        released: list[OrchestraMachine] = []

        async def one(machine: OrchestraMachine) -> None:
            try:
                released.append(await self.shutdown_machine(machine))
            except CobblerNotFound:
                await self.claims.release(machine.instance_id)  # gone from Cobbler: nothing left to hold
            except (CobblerError, ProviderError, StorageError) as error:
                failures[machine.system_name] = error

        await gatherResults(
            [self._limit.run(lambda m=m: Deferred.fromCoroutine(one(m))) for m in machines], consumeErrors=True
        )
        if failures:
            raise ReleaseFailed(failures)
        return released

    async def destroy_environment(self) -> list[OrchestraMachine]:
        """Release only this environment's machines; then clear only its state."""
        machines = await self.get_machines()
        released = await self.shutdown_machines(machines)
        await self.storage.delete(STATE_FILE)
        for name in await self.storage.list(PORTS_DIR + "/"):
            await self.storage.delete(name)
        return released

    async def close(self) -> None:
        """Close the Cobbler and storage connections (before the reactor stops)."""
        await self.client.close()
        await self.storage.close()

    # -- state and ports -----------------------------------------------------------------------

    def get_file_storage(self) -> IFileStorage:
        return self.storage

    async def save_state(self, state: Mapping[str, Any]) -> None:
        await self.storage.put(STATE_FILE, yaml.safe_dump(dict(state)).encode())

    async def load_state(self) -> dict[str, Any] | bool:
        try:
            data = yaml.safe_load(await self.storage.get(STATE_FILE))
        except FileNotFound:
            return False
        return data if isinstance(data, dict) else False

    async def _ports(self, machine_id: str) -> set[tuple[int, str]]:
        try:
            data = yaml.safe_load(await self.storage.get(f"{PORTS_DIR}/{machine_id}")) or []
        except FileNotFound:
            return set()
        return {(int(p), str(proto)) for p, proto in data}

    async def open_port(self, machine: Any, machine_id: str, port: int, protocol: str = "tcp") -> None:
        """Bare metal has no security groups: record the port so status shows it (a firewall may apply it)."""
        ports = await self._ports(machine_id) | {(int(port), protocol)}
        await self.storage.put(f"{PORTS_DIR}/{machine_id}", yaml.safe_dump(sorted(list(p) for p in ports)).encode())

    async def close_port(self, machine: Any, machine_id: str, port: int, protocol: str = "tcp") -> None:
        ports = await self._ports(machine_id) - {(int(port), protocol)}
        await self.storage.put(f"{PORTS_DIR}/{machine_id}", yaml.safe_dump(sorted(list(p) for p in ports)).encode())

    async def get_opened_ports(self, machine: Any, machine_id: str) -> set[tuple[int, str]]:
        return await self._ports(machine_id)

    def get_serialization_data(self) -> dict[str, Any]:
        """What agents on the machines need to reach Cobbler and the storage (secrets revealed on purpose)."""
        c = self.config
        return {
            "type": self.provider_type,
            "orchestra-server": c.orchestra_server,
            "cobbler-api-url": c.cobbler_api_url,
            "orchestra-user": c.orchestra_user,
            "orchestra-pass": c.orchestra_pass.reveal(),
            "storage-url": c.storage_url,
            "storage-user": c.storage_user,
            "storage-pass": c.storage_pass.reveal(),
            "acquired-mgmt-class": c.acquired_mgmt_class,
            "available-mgmt-class": c.available_mgmt_class,
            "default-series": c.default_series,
        }

    async def get_constraint_set(self) -> tuple[str, ...]:
        """mem and cpu are accepted but Cobbler does not know a physical system's hardware: not matched."""
        return CONSTRAINTS
