"""Power a system through Cobbler and confirm the state it reached: act, then poll on a schedule.

Cobbler's fence agent exits 0 once the BMC reports the state, but a BMC can
accept a command and a server still fail to come up; so every action is
followed by status queries until the wanted state is seen or the timeout
passes. The schedule is data and the clock is injected, so tests never sleep.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..cobbler import CobblerClient, CobblerError, CobblerPowerError, CobblerTimeout, CobblerUnavailable
from ..schedule import Schedule
from .errors import PowerError

__all__ = ["DEFAULT_POWER_SCHEDULE", "PowerController"]

_log = Logger()


# Seconds between status polls (the last repeats) and the overall bound (power-timeout overrides it).
DEFAULT_POWER_SCHEDULE = Schedule((0.5, 1.0, 2.0, 4.0, 8.0), timeout=120.0)


class PowerController:
    def __init__(self, client: CobblerClient, clock: IReactorTime, schedule: Schedule = DEFAULT_POWER_SCHEDULE) -> None:
        self._client = client
        self._clock = clock
        self.schedule = schedule
        self.polls = 0  # confirmation status queries made (benchmarks exclude them from per-launch costs)

    async def boot_for_install(self, name: str, sending: Callable[[], None] = lambda: None) -> str:
        """Make *name* boot now (so it PXE-boots): reboot if on, on if off; returns the action taken.

        *sending* is called just before the on/reboot goes out: from then on the BMC may have acted,
        whatever the call reports, so a caller rolling back must power the system off.
        """
        try:
            running = await self._client.power(name, "status")
            action = "reboot" if running else "on"
            sending()
            await self._client.power(name, action)
        except CobblerError as error:
            why = self._why(error)
            raise PowerError(f"could not power on {name}: {why}", name, retryable=error.retryable) from None
        await self.confirm(name, on=True)
        return action

    async def power_off(self, name: str) -> None:
        try:
            await self._client.power(name, "off")
        except CobblerError as error:
            why = self._why(error)
            raise PowerError(f"could not power off {name}: {why}", name, retryable=error.retryable) from None
        await self.confirm(name, on=False)

    def _why(self, error: CobblerError) -> str:
        if isinstance(error, CobblerTimeout) and error.method == "power_system":
            # Cobbler answers a power call only when its fence agent is done: the BMC is not answering.
            return (
                f"no answer from its BMC within {self._client.power_timeout:g} s (power-timeout);"
                " check the system's power address and that Cobbler can reach it"
            )
        return str(error)

    async def confirm(self, name: str, *, on: bool) -> None:
        """Poll the power status until it is *on*; PowerError after the schedule's timeout."""
        run = self.schedule.start(self._clock)
        while True:
            self.polls += 1
            try:
                if await self._client.power(name, "status") is on:
                    return
            except (CobblerPowerError, CobblerUnavailable) as error:  # the BMC or Cobbler may answer next time
                _log.warn("power status of {name} failed: {error}", name=name, error=str(error))
            except CobblerError as error:  # credentials, a vanished system: polling cannot fix it
                why = self._why(error)
                raise PowerError(f"could not read the power of {name}: {why}", name, retryable=False) from None
            if not await run.wait():
                state = "on" if on else "off"
                raise PowerError(
                    f"{name} was not confirmed powered {state} within {self.schedule.timeout:.0f} s; check its BMC",
                    name,
                    retryable=True,  # a slow BMC or server may still get there
                )
