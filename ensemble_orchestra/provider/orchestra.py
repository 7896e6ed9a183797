"""The orchestra machine provider: Cobbler's pool of physical systems as Ensemble machines.

This module is the ``IMachineProvider`` face; each job lives in its own module:
matching.py (what constraints mean), claims.py + claiming.py (atomic claims on the storage),
launching.py (launch and rollback), releasing.py (power off, back to the pool), ownership.py
(how a system records its owner), state.py (provider state and ports), power.py (verified power).
Launch = claim (atomic marker) → one Cobbler edit that records ownership and the install → power
on/reboot → confirm; any failure after the claim is rolled back, and the owner written on the system
itself is what makes every owned system findable, so no path leaves a system claimed and unrecorded.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..charm.bundle import BUNDLE_PREFIX
from ..cobbler import CobblerClient, CobblerError, SystemRecord
from ..config import OrchestraConfig
from ..deferreds import deferred
from ..http.agent import read_ca_bundle
from ..interfaces import IFileStorage, IMachineProvider, IProviderMachine
from ..origin import TOOLS_DIR, Tools, pack_tools, upload_tools
from ..schedule import Schedule
from ..storage import StorageError
from .claiming import Claimer
from .claims import ClaimRegistry
from .errors import EnvironmentAlreadyBootstrapped, MachinesNotFound, PowerError, ProviderError, RollbackFailed
from .launching import BeforePower, Launcher
from .matching import CONSTRAINTS, Constraints
from .ownership import ENV_KEY, META_KEYS, USER_DATA_KEY, OrchestraMachine, Pool
from .power import DEFAULT_POWER_SCHEDULE, PowerController
from .releasing import Releaser
from .state import STATE_FILE, ProviderState

__all__ = ["ENV_KEY", "META_KEYS", "USER_DATA_KEY", "OrchestraMachine", "OrchestraProvider"]

_log = Logger()


def _ours(machine: IProviderMachine) -> OrchestraMachine:
    """*machine* as this provider's own kind; another provider's machine is a programming error."""
    if not isinstance(machine, OrchestraMachine):
        raise ProviderError(f"not an orchestra machine: {machine!r}")
    return machine


@implementer(IMachineProvider)
class OrchestraProvider:
    """One orchestra environment. Every method that waits returns a Deferred (see interfaces.py)."""

    provider_type = "orchestra"

    def __init__(
        self,
        config: OrchestraConfig,
        reactor: IReactorTime,
        client: CobblerClient,
        storage: IFileStorage,
        *,
        claims: ClaimRegistry | None = None,
        power_schedule: Schedule | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.environment_name = config.environment
        self.client = client
        self.storage = storage
        self.claims = claims or ClaimRegistry(storage)
        self.pool = Pool(config)
        schedule = power_schedule or dataclasses.replace(DEFAULT_POWER_SCHEDULE, timeout=config.power_timeout)
        self.power = PowerController(client, reactor, schedule)
        # Told each phase of long work as (phase, detail): the CLI shows it to the person waiting.
        self.progress: Callable[[str, str], None] = lambda phase, detail: None
        limit = DeferredSemaphore(config.launch_concurrency)
        claimer = Claimer(client, self.claims, self.pool, limit, rng or random.SystemRandom())
        self._state = ProviderState(storage)
        self._releaser = Releaser(client, self.claims, self.pool, self.power, limit, self._tell)
        self._launcher = Launcher(
            config, client, self.claims, self.pool, claimer, self.power, self._releaser, limit, self._tell
        )

    @functools.cached_property
    def tools(self) -> Tools:
        """This very ensemble-orchestra, packed for the machines (ensemble-origin: upload)."""
        return pack_tools()

    def _tell(self, phase: str, detail: str) -> None:
        self.progress(phase, detail)

    # -- finding -------------------------------------------------------------------------------

    async def _owned_records(self) -> list[SystemRecord]:
        """This environment's systems: one expanded find, whatever the pool size."""
        records = await self.client.find_systems_expanded(self.pool.owner_criteria())
        return [r for r in records if self.pool.is_ours(r)]  # the match is a substring match: check exactly

    @deferred
    async def get_machines(self, instance_ids: Iterable[str] = ()) -> list[IProviderMachine]:
        machines: list[IProviderMachine] = [OrchestraMachine.from_record(r) for r in await self._owned_records()]
        wanted = list(instance_ids)
        if not wanted:
            return machines
        by_id = {m.instance_id: m for m in machines}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise MachinesNotFound(missing)
        return [by_id[i] for i in wanted]

    @deferred
    async def get_machine(self, instance_id: str) -> IProviderMachine:
        return (await self.get_machines([instance_id]))[0]

    # -- launching -----------------------------------------------------------------------------

    @deferred
    async def start_machines(
        self, machines: Sequence[Mapping[str, Any]], master: bool = False, before_power: BeforePower | None = None
    ) -> list[IProviderMachine]:
        """Launch several machines concurrently; see ``Launcher.start_machines``."""
        return [*await self._launcher.start_machines(machines, master, before_power)]

    @deferred
    async def start_machine(self, machine_data: Mapping[str, Any], master: bool = False) -> list[IProviderMachine]:
        return [*await self._launcher.start_machines([machine_data], master)]

    @deferred
    async def bootstrap(self, constraints: Mapping[str, str] | None = None) -> list[IProviderMachine]:
        """Launch machine 0 (ZooKeeper); provider state is saved before it is powered on."""
        wanted = dict(constraints or {})
        Constraints.parse(wanted)  # a constraint value that cannot be checked stops us before anything is touched
        self.progress("checking storage", self.config.storage_url)
        await self.storage.check_writable()
        state = await self._state.load()
        if isinstance(state, dict) and state.get("zookeeper-instances"):
            raise EnvironmentAlreadyBootstrapped(
                f"environment '{self.environment_name}' is already bootstrapped "
                f"(machine {', '.join(state['zookeeper-instances'])}); destroy-environment first"
            )

        self.progress("uploading ensemble-orchestra", f"{len(self.tools.data) // 1024} KiB")
        tools = {"url": await upload_tools(self.storage, self.tools), "sha256": self.tools.sha256}
        saved: list[str] = []

        async def record_state(record: SystemRecord) -> None:
            await self._state.save({"zookeeper-instances": [record.uid]})
            saved.append(record.uid)

        try:
            return [
                *await self._launcher.start_machines(
                    [{"machine-id": "0", "constraints": wanted, "tools": tools}],
                    master=True,
                    before_power=record_state,
                )
            ]
        except RollbackFailed:
            raise  # machine 0 stays owned: the state naming it stays too, so status shows it
        except BaseException:  # the launch was rolled back: so are the state naming its machine and the tools
            for name in ([STATE_FILE] if saved else []) + [self.tools.name]:
                try:
                    await self.storage.delete(name)
                except StorageError as error:
                    _log.warn(
                        "could not delete {name} of {env} after a failed bootstrap: {error};"
                        " 'destroy-environment' clears it",
                        name=name,
                        env=self.environment_name,
                        error=str(error),
                    )
            raise

    @deferred
    async def resume_launch(self, machine: IProviderMachine) -> bool:
        """Finish a launch whose launcher died between the ownership edit and the power-on: a system of ours
        still set to netboot (its installer has not run) and powered off is powered on and confirmed.

        True if it was powered on; False if there was nothing to do (it runs, or it is installed).
        """
        ours = _ours(machine)
        if ours.state != "pending":
            return False
        try:
            running = await self.client.power(ours.system_name, "status")
        except CobblerError as error:
            message = f"could not ask {ours.system_name}'s BMC for its power: {error}"
            raise PowerError(message, ours.system_name, retryable=error.retryable) from None
        if running:
            return False
        _log.info("{name}: owned and set to install but powered off: powering it on", name=ours.system_name)
        await self.power.boot_for_install(ours.system_name)
        return True

    @deferred
    async def forget_user_data(self, machine: IProviderMachine) -> bool:
        """Drop an installed machine's user data from its Cobbler record, which every user of that Cobbler can
        read: it carries the machine agent's secrets, needed only by the install. Call it once the machine's
        agent has registered (the secrets reached it). A machine still set to install keeps it.

        True if it was dropped now; False if there was nothing to drop (or the system is no longer this machine).
        """
        ours = _ours(machine)
        record = await self.client.get_system(ours.system_name)
        if not self.pool.is_ours(record) or record.uid != ours.instance_id or record.netboot_enabled:
            return False
        if USER_DATA_KEY not in record.autoinstall_meta:
            return False
        # Cobbler has no compare-and-set: a release between this read and the edit would get the owner keys back
        # (the system then reads as owned, and destroy-environment releases it again). Only the provisioning
        # agent calls this, and the releases it makes itself come after its own reconcile's calls.
        await self.client.edit_system(record.name, self.pool.forget_user_data_fields(record))
        _log.info("{name}: dropped its user data (the agent's secrets) from its Cobbler record", name=record.name)
        return True

    # -- releasing -----------------------------------------------------------------------------

    @deferred
    async def shutdown_machine(self, machine: IProviderMachine) -> IProviderMachine:
        """Power off, return to the pool, drop the claim. A power failure keeps the system owned (reported)."""
        return await self._releaser.shutdown_machine(_ours(machine))

    @deferred
    async def shutdown_machines(self, machines: Iterable[IProviderMachine]) -> list[IProviderMachine]:
        return [*await self._releaser.shutdown_machines([_ours(m) for m in machines])]

    @deferred
    async def destroy_environment(self) -> list[IProviderMachine]:
        """Release only this environment's machines; then clear only its state, its tools and its charms."""
        owned = [OrchestraMachine.from_record(r) for r in await self._owned_records()]
        released = await self._releaser.shutdown_machines(owned)
        await self._state.clear()
        for directory in (TOOLS_DIR, BUNDLE_PREFIX):  # the uploaded ensemble-orchestra and charm bundles go too
            for name in await self.storage.list(directory + "/"):
                await self.storage.delete(name)
        return [*released]

    @deferred
    async def close(self) -> None:
        """Close the Cobbler and storage connections (before the reactor stops)."""
        await self.client.close()
        await self.storage.close()

    # -- state and ports -----------------------------------------------------------------------

    def get_file_storage(self) -> IFileStorage:
        return self.storage

    @deferred
    async def save_state(self, state: Mapping[str, Any]) -> None:
        await self._state.save(state)

    @deferred
    async def load_state(self) -> dict[str, Any] | bool:
        return await self._state.load()

    @deferred
    async def open_port(self, machine: Any, machine_id: str, port: int, protocol: str = "tcp") -> None:
        """Bare metal has no security groups: record the port so status shows it (a firewall may apply it)."""
        await self._state.set_port(machine_id, port, protocol, is_open=True)

    @deferred
    async def close_port(self, machine: Any, machine_id: str, port: int, protocol: str = "tcp") -> None:
        await self._state.set_port(machine_id, port, protocol, is_open=False)

    @deferred
    async def get_opened_ports(self, machine: Any, machine_id: str) -> set[tuple[int, str]]:
        return await self._state.ports(machine_id)

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
            # What the provisioning agent's copy (/environment) needs besides: never the admin secret, and no
            # path of the workstation's (the keys themselves instead of authorized-keys-path).
            "authorized-keys": c.authorized_keys,
            "placement": c.placement,
            "power-timeout": c.power_timeout,
            "launch-concurrency": c.launch_concurrency,
            "ensemble-origin": c.ensemble_origin,
            "ssh-user": c.ssh_user,
            # The certificates themselves: a ca-bundle path names a file of the workstation's.
            **({"ca-certificates": b"\n".join(read_ca_bundle(c.ca_bundle)).decode() + "\n"} if c.ca_bundle else {}),
        }

    @deferred
    async def get_constraint_set(self) -> tuple[str, ...]:
        """The names ``--constraints`` may use; ``mem`` and ``cpu`` match commissioned hardware only."""
        return CONSTRAINTS
