"""Giving systems back to the pool: power off and confirm, then the available class, then the marker.

The order is what keeps every system visible: a system is returned to the pool only once it is
confirmed off (a running installer must never carry a released environment's user data into the
next claimer's hands), and its claim marker is dropped only once Cobbler shows it available.
A failure at any step leaves it recorded as owned, so destroy-environment finds it and retries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twisted.internet.defer import DeferredSemaphore, gatherResults
from twisted.logger import Logger

from ..cobbler import CobblerClient, CobblerNotFound
from ..deferreds import run_holding
from ..errors import EnsembleError
from .claims import ClaimRegistry
from .errors import ReleaseFailed
from .ownership import OrchestraMachine, Pool
from .power import PowerController

__all__ = ["Releaser"]

_log = Logger()


class Releaser:
    def __init__(
        self,
        client: CobblerClient,
        claims: ClaimRegistry,
        pool: Pool,
        power: PowerController,
        limit: DeferredSemaphore,
        progress: Callable[[str, str], None],
    ) -> None:
        self._client = client
        self._claims = claims
        self._pool = pool
        self._power = power
        self._limit = limit
        self._progress = progress

    async def return_to_pool(self, name: str) -> None:
        """Cobbler shows *name* available again (no owner, netboot off). Its power is not touched."""
        record = await self._client.get_system(name)
        await self._client.edit_system(name, self._pool.release_fields(record))

    async def free(self, name: str, *, power_off: bool = True) -> None:
        """Power *name* off and confirm it (unless its power was never touched), then return it to the pool."""
        if power_off:
            self._progress("powering off", name)
            await self._power.power_off(name)
        await self.return_to_pool(name)

    async def release(self, name: str, uid: str) -> None:
        """Free the system, then drop its claim. Raises at the first failed step."""
        await self.free(name)
        await self._claims.release(uid)
        _log.info("released {system}", system=name)

    async def shutdown_machine(self, machine: OrchestraMachine) -> OrchestraMachine:
        """Release one machine. A power failure keeps the system owned (reported)."""
        await self.release(machine.system_name, machine.instance_id)
        self._progress("released", f"machine {machine.machine_id} ({machine.system_name})")
        return machine

    async def shutdown_machines(self, machines: Iterable[OrchestraMachine]) -> list[OrchestraMachine]:
        """Release every machine (bounded by launch-concurrency); every failure is reported at the end."""
        failures: dict[str, BaseException] = {}
        released: list[OrchestraMachine] = []

        async def one(machine: OrchestraMachine) -> None:
            try:
                try:
                    released.append(await self.shutdown_machine(machine))
                except CobblerNotFound:
                    await self._claims.release(machine.instance_id)  # gone from Cobbler: nothing left to hold
            except EnsembleError as error:
                failures[machine.system_name] = error

        await gatherResults([run_holding(self._limit, one, m) for m in machines], consumeErrors=True)
        if failures:
            raise ReleaseFailed(failures)
        return released
