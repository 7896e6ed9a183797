"""Commission systems: boot each into the commissioning image, take its report, record it on Cobbler.

Per system (at most ``concurrency`` at once, like launches):

1. refuse a system an environment owns (the acquired class or an ``ensemble_environment`` owner); win its
   claim marker (``claims/<uid>``, the provider's protocol, so no environment claims it meanwhile), re-read it
   and check again;
2. one edit: profile ``ensemble-commissioning``, netboot on, ``ensemble.token=<fresh random>`` added to its
   ``kernel_options`` (the image PUTs ``commissioning/incoming/<token>.json``), and its current profile kept
   in ``autoinstall_meta`` as ``ensemble_commissioning_from`` (so a run that died can be undone by the next);
3. power on (reboot if it runs); the image reports and powers itself off;
4. wait for the report, bounded by ``timeout``: a system that powers off without reporting fails early;
5. validate it (``report.py``) and check it is this system's (``checks.py``: this run's token, its MAC, no
   other system's MAC); one edit records it (``ensemble_hardware``) and restores the profile, netboot off and
   the kernel options; then the power is confirmed off (powered off if the image did not), the report deleted
   and the marker dropped.

Any failure after step 2 (Ctrl-C included) restores the system the same way, powers it off and drops the
marker; a failed system never stops the others. Nothing here reads or writes any secret: the commissioning
credential is on the profile, set up by setup-server.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..cobbler import CobblerClient, CobblerError, SystemRecord
from ..cobbler.records import INHERIT
from ..errors import EnsembleError
from ..interfaces import IFileStorage
from ..storage import FileNotFound, StorageError
from .checks import check_belongs
from .record import Hardware, hardware_meta, hardware_of
from .report import MalformedReport, parse_report
from .setup import COMMISSIONING_NAME

__all__ = ["FROM_KEY", "TOKEN_OPTION", "CommissionFailed", "Commissioner", "Outcome", "commissioned"]

_log = Logger()

FROM_KEY = "ensemble_commissioning_from"  # the profile to go back to, while a run has the system
TOKEN_OPTION = "ensemble.token"
INCOMING = "incoming/"
OWNER_KEY = "ensemble_environment"  # provider.ownership.ENV_KEY (not imported: the provider imports us)


class CommissionFailed(EnsembleError):
    """One system could not be commissioned; the message names it and says why."""


@dataclass(frozen=True)
class Outcome:
    system: str
    hardware: Hardware | None = None
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.hardware is not None


class Commissioner:
    """Commissions systems of one Cobbler server; the claim protocol and storage are the provider's."""

    def __init__(
        self,
        client: CobblerClient,
        claims: Any,  # provider.claims.ClaimRegistry
        area: IFileStorage,  # the storage below commissioning/
        clock: IReactorTime,
        *,
        acquired_class: str,
        concurrency: int = 4,
        timeout: float = 300.0,
        off_timeout: float = 60.0,
        poll: float = 1.0,
        progress: Callable[[str, str], None] = lambda phase, detail: None,
    ) -> None:
        self._client = client
        self._claims = claims
        self._area = area
        self._clock = clock
        self._acquired = acquired_class
        self._limit = DeferredSemaphore(concurrency)
        self.timeout = timeout
        self._off_timeout = off_timeout
        self._poll = poll
        self._progress = progress

    def _owner(self, record: SystemRecord) -> str | None:
        """Who owns *record*: an environment's name, the acquired class, or None."""
        owner = record.autoinstall_meta.get(OWNER_KEY)
        if owner:
            return f"environment '{owner}'"
        return f"class {self._acquired}" if self._acquired in record.mgmt_classes else None

    async def commission(self, names: Sequence[str]) -> list[Outcome]:
        """Commission *names* concurrently (bounded); one Outcome per system, in order."""
        everything = await self._client.find_systems_expanded({})
        by_name = {r.name: r for r in everything}
        macs = {i.mac_address.lower(): r.name for r in everything for i in r.interfaces if i.mac_address}
        await self._area.put(INCOMING + "README", b"commissioning reports: see docs/commissioning.md\n")

        async def one(name: str) -> Outcome:
            started = self._clock.seconds()
            await self._limit.acquire()
            try:
                if name not in by_name:
                    raise CommissionFailed(f"{name}: no such system in Cobbler")
                hardware = await self._one(by_name[name], macs)
                return Outcome(name, hardware, seconds=self._clock.seconds() - started)
            except (EnsembleError, CobblerError, StorageError) as error:
                self._progress("failed", str(error))
                return Outcome(name, error=str(error), seconds=self._clock.seconds() - started)
            finally:
                self._limit.release()

        results = await DeferredList([Deferred.fromCoroutine(one(n)) for n in names], consumeErrors=True)
        failures = [r for ok, r in results if isinstance(r, Failure)]
        if failures:
            failures[0].raiseException()  # cancellation, or a bug: every system was restored meanwhile
        return [r for _, r in results]

    async def _one(self, record: SystemRecord, macs: Mapping[str, str]) -> Hardware:
        name = record.name
        owner = self._owner(record)
        if owner:
            raise CommissionFailed(f"{name} is claimed by {owner}: release it before commissioning it")
        if not (record.power_type and record.power_address):
            raise CommissionFailed(f"{name} has no power management: set its power_type and power_address")
        if not record.mac_address:
            raise CommissionFailed(f"{name} has no MAC address in Cobbler: it could not PXE-boot")
        if not await self._claims.try_claim(record.uid):
            raise CommissionFailed(f"{name} is being claimed or commissioned by someone else: try again later")
        try:
            current = await self._client.get_system(name)
            owner = self._owner(current)
            if owner or current.uid != record.uid:
                raise CommissionFailed(f"{name} was claimed by {owner or 'someone'} meanwhile: not commissioned")
            return await self._boot_and_record(current, macs)
        finally:
            await self._claims.release(record.uid)

    async def _boot_and_record(self, record: SystemRecord, macs: Mapping[str, str]) -> Hardware:
        name = record.name
        token = secrets.token_urlsafe(24)
        previous = record.autoinstall_meta.get(FROM_KEY) or record.profile  # a dead run's leftover first
        powered = False
        try:
            self._progress("booting the commissioning image", name)
            await self._client.edit_system(name, self._boot_fields(record, previous, token))
            powered = True  # from here the BMC may have acted, whatever the calls report
            await self._power_on(name)
            data = await self._wait_for_report(name, token)
            report = parse_report(data)
            check_belongs(report, name, token, [i.mac_address for i in record.interfaces], macs)
            meta = hardware_meta(report, datetime.fromtimestamp(self._clock.seconds(), UTC))
            hardware = hardware_of(meta)
            assert hardware is not None  # what hardware_meta writes, hardware_of reads
            self._progress("recording", f"{name}: {hardware.summary()}")
            await self._client.edit_system(name, self._restore_fields(record, previous, meta))
        except BaseException as error:
            await self._undo(record, previous, token, powered, error)
            raise
        await self._settle_power(name)
        await self._drop_report(token)
        return hardware

    @staticmethod
    def _boot_fields(record: SystemRecord, previous: str, token: str) -> dict[str, Any]:
        return {
            "profile": COMMISSIONING_NAME,
            "netboot_enabled": True,
            "kernel_options": {**record.kernel_options, TOKEN_OPTION: token},
            "autoinstall_meta": {**record.autoinstall_meta, FROM_KEY: previous},
        }

    @staticmethod
    def _restore_fields(record: SystemRecord, previous: str, extra_meta: Mapping[str, str]) -> dict[str, Any]:
        meta = {k: v for k, v in record.autoinstall_meta.items() if k != FROM_KEY}
        meta.update(extra_meta)
        options = {k: v for k, v in record.kernel_options.items() if k != TOKEN_OPTION}
        inherited = not options and "kernel_options" in record.inherited
        return {
            "profile": previous,
            "netboot_enabled": False,
            "kernel_options": INHERIT if inherited else options,  # as it was: Cobbler's "<<inherit>>" stays
            "autoinstall_meta": meta,
        }

    async def _power_on(self, name: str) -> None:
        try:
            running = await self._client.power(name, "status")
            await self._client.power(name, "reboot" if running else "on")
        except CobblerError as error:
            raise CommissionFailed(f"could not power on {name}: {error}") from None

    async def _wait_for_report(self, name: str, token: str) -> bytes:
        """The report at incoming/<token>.json, polled; CommissionFailed at the timeout or if the system
        powers off without one."""
        started = self._clock.seconds()
        polls = 0
        while True:
            try:
                return await self._area.get(f"{INCOMING}{token}.json")
            except FileNotFound:
                pass
            waited = self._clock.seconds() - started
            if waited >= self.timeout:
                raise CommissionFailed(
                    f"{name} sent no report within {self.timeout:.0f} s: check that it PXE-boots the"
                    f" {COMMISSIONING_NAME} profile and reaches the storage (its console shows the image's lines)"
                )
            polls += 1
            if polls % 5 == 0:
                self._progress("waiting for the report", f"{name} ({waited:.0f} s)")
                if polls >= 10 and not await self._is_on(name):  # one last look: it may have just reported
                    try:
                        return await self._area.get(f"{INCOMING}{token}.json")
                    except FileNotFound:
                        raise CommissionFailed(
                            f"{name} powered off after {waited:.0f} s without reporting: check its console"
                        ) from None
            await deferLater(self._clock, self._poll)

    async def _is_on(self, name: str) -> bool:
        try:
            return bool(await self._client.power(name, "status"))
        except CobblerError:
            return True  # unknown: keep waiting for the report until the timeout

    async def _settle_power(self, name: str) -> None:
        """The image powers itself off once it reported: wait for that, else power it off."""
        deadline = self._clock.seconds() + self._off_timeout
        while self._clock.seconds() < deadline:
            if not await self._is_on(name):
                return
            await deferLater(self._clock, self._poll)
        _log.warn("{name} did not power itself off after reporting: powering it off", name=name)
        try:
            await self._client.power(name, "off")
        except CobblerError as error:  # recorded already; an image left running is idle and harmless
            _log.warn("could not power {name} off after commissioning: {error}", name=name, error=str(error))

    async def _undo(self, record: SystemRecord, previous: str, token: str, powered: bool, error: BaseException) -> None:
        """Put a system whose commissioning failed back as it was (power off first); never raises."""
        name = record.name
        reason = "interrupted" if isinstance(error, CancelledError) else str(error) or type(error).__name__
        _log.warn("commissioning {name} failed ({reason}); restoring it", name=name, reason=reason)
        try:
            if powered:
                await self._client.power(name, "off")
            await self._client.edit_system(name, self._restore_fields(record, previous, {}))
        except (CobblerError, EnsembleError) as failure:
            _log.error(
                "could not restore {name} after a failed commissioning ({failure}): run commission on it again",
                name=name,
                failure=str(failure),
            )
        await self._drop_report(token)

    async def _drop_report(self, token: str) -> None:
        try:
            await self._area.delete(f"{INCOMING}{token}.json")
        except StorageError as error:
            _log.warn("could not delete report {token}.json: {error}", token=token, error=str(error))


def commissioned(records: Iterable[SystemRecord]) -> dict[str, Hardware | None]:
    """Each system's recorded hardware (None if none or unreadable), by name."""
    out: dict[str, Hardware | None] = {}
    for record in records:
        try:
            out[record.name] = hardware_of(record.autoinstall_meta)
        except MalformedReport:
            out[record.name] = None
    return out
