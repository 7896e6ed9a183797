"""Power through Cobbler's fence agents: one system at a time (verified by the agent), or many in a task.

Mixed into ``CobblerClient`` (like ``admin.AdminCalls``); relies on its transport, token session, clock and
settings. Task state alone never proves success: Cobbler 3.3 completes a power task whose systems failed, so
the event log is always read, parsed and redacted (see tasks.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..schedule import Schedule
from ..secret import Secret
from .errors import CobblerInvalidRequest, CobblerPowerError, redact
from .records import CobblerVersion, PowerTask
from .tasks import failed_systems, wait_for_task
from .transport import XmlRpcTransport

__all__ = ["POWER_OPERATIONS", "PowerCalls"]

log = Logger()

POWER_OPERATIONS = frozenset({"on", "off", "reboot", "status"})


class PowerCalls:
    """Mixed into CobblerClient; relies on its transport, session and settings (declared here for typing)."""

    transport: XmlRpcTransport
    power_timeout: float
    task_polling: Schedule
    _clock: IReactorTime
    _password: Secret
    _token: str | None

    async def _call_authed(self, method: str, *args: Any, **options: Any) -> Any:  # pragma: no cover - see client
        raise NotImplementedError

    async def server_version(self) -> CobblerVersion:  # pragma: no cover - see client
        raise NotImplementedError

    async def power(self, name: str, operation: str) -> bool:
        """Run *operation* (on/off/reboot/status) on *name* through Cobbler's fence agent; 1 call on 3.x.

        Returns whether the system is powered on afterwards: the status Cobbler read for "status";
        for on/off/reboot, the state Cobbler's fence agent reached (it exits 0 only after seeing
        it). A failure raises CobblerPowerError naming the system. Power calls are slow and not
        retried unless the request never reached Cobbler.
        """
        if operation not in POWER_OPERATIONS:
            raise CobblerInvalidRequest(f"power operation must be one of {sorted(POWER_OPERATIONS)}, not {operation!r}")
        handle = await self._system_handle(name)
        try:
            result = await self._call_authed(
                "power_system", handle, operation, timeout=self.power_timeout, idempotent=False
            )
        except CobblerPowerError as error:
            raise CobblerPowerError(
                f"Cobbler could not power {operation} {name}: {error.message}", systems=(name,), method="power_system"
            ) from None
        if operation == "status":
            if not isinstance(result, bool):
                raise CobblerPowerError(f"Cobbler returned no power status for {name}: {result!r}", systems=(name,))
            return result
        return operation != "off"

    async def _system_handle(self, name: str) -> str:
        """The handle power_system takes. Cobbler 3 handles are the stateless string ``system::<name>``
        (``get_item_handle`` only formats it), so on 3.x it costs no call; 2.x keeps handles in a
        server-side cache and needs ``get_system_handle``."""
        if (await self.server_version()).major >= 3:
            return f"system::{name}"
        return str(await self._call_authed("get_system_handle", name))

    async def background_power(
        self, names: Iterable[str], operation: str, *, polling: Schedule | None = None
    ) -> PowerTask:
        """Power many systems in one Cobbler task and wait for it (polling on the injected clock).

        Calls: 1 (start) + one ``get_task_status`` per poll + 1 ``get_event_log``. The log is read
        even when the task is "complete", because Cobbler 3.3 completes the task when systems fail;
        any failure raises CobblerPowerError with the failed systems and the redacted log.
        """
        systems = tuple(names)
        if operation not in POWER_OPERATIONS - {"status"}:
            raise CobblerInvalidRequest(f"background power operation must be on/off/reboot, not {operation!r}")
        if not systems:
            raise CobblerInvalidRequest("background power needs at least one system")
        polling = polling or self.task_polling
        task_id = str(
            await self._call_authed(
                "background_power_system", {"systems": list(systems), "power": operation}, idempotent=False
            )
        )
        log.info(
            "Cobbler power task {task_id} started: {operation} {systems}",
            task_id=task_id,
            operation=operation,
            systems=systems,
        )

        async def status(task: str) -> Any:
            return await self.transport.call("get_task_status", task)

        state = await wait_for_task(status, task_id, self._clock, polling)
        task_log = redact(
            str(await self.transport.call("get_event_log", task_id)), (self._password.reveal(), self._token or "")
        )
        failures = failed_systems(task_log)
        if state != "complete" or failures:
            failed = tuple(failures) or systems
            detail = "; ".join(f"{k}: {v}" for k, v in failures.items()) or f"task {state}"
            raise CobblerPowerError(
                f"Cobbler power {operation} failed for {', '.join(failed)}: {detail}",
                systems=failed,
                log=task_log,
                method="background_power_system",
            )
        return PowerTask(task_id=task_id, state=state, systems=systems, operation=operation, log=task_log)
