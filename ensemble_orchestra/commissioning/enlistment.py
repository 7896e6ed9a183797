"""Enlistment: servers Cobbler does not know PXE-boot the commissioning image and become systems an admin accepts.

With ``setup-server --enlist``, Cobbler's system ``default`` boots the commissioning profile: a server whose MAC
Cobbler does not know gets the PXE menu, and when it times out, the image. Given no token, the image reports as
``enlist-<boot MAC without colons>`` (``image.py``). ``ensemble-orchestra enlist`` then turns each such report
into a Cobbler system:

- named ``enlisted-<MAC>``, with the boot MAC on ``eth0``, the commissioned hardware recorded
  (``ensemble_hardware``), in the class ``orchestra-ensemble-enlisted`` **only** — never the available class, so no
  environment can claim it — netboot off, and a comment saying what to do;
- a report naming a MAC that Cobbler already records, or malformed, is refused (and deleted).

An admin then adds the power settings and runs ``ensemble-orchestra accept SYSTEM…``, which moves a system from
the enlisted class to the available class, refusing one without power management (nothing could boot it).
The commissioning credential lets anyone on the provisioning network write enlistment reports; what that buys is
a system in the enlisted class, which nothing uses until an admin accepts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.internet.interfaces import IReactorTime

from ..cobbler import CobblerClient
from ..interfaces import IFileStorage
from ..storage import StorageError
from .record import hardware_meta
from .report import MalformedReport, parse_report
from .setup import COMMISSIONING_NAME, ENLISTED_CLASS

__all__ = ["Enlisted", "accept", "enlist"]

_REPORT = re.compile(r"^incoming/(enlist-(?P<mac>[0-9a-f]{12}))\.json$")


@dataclass(frozen=True)
class Enlisted:
    """One enlistment report and what became of it."""

    report: str  # its name in the report area
    system: str = ""  # the Cobbler system made of it ("" if refused)
    error: str = ""


def _mac(compact: str) -> str:
    return ":".join(compact[i : i + 2] for i in range(0, 12, 2))


async def enlist(client: CobblerClient, area: IFileStorage, clock: IReactorTime) -> list[Enlisted]:
    """A Cobbler system in the enlisted class for each enlistment report in the area; the reports are deleted."""
    names = [n for n in await area.list("incoming/") if _REPORT.match(n)]
    if not names:
        return []
    known = {
        i.mac_address.lower(): r.name
        for r in await client.find_systems_expanded({})
        for i in r.interfaces
        if i.mac_address
    }
    out = []
    for name in sorted(names):
        match = _REPORT.match(name)
        assert match is not None
        mac = _mac(match.group("mac"))
        try:
            report = parse_report(await area.get(name))
            if report.token != match.group(1) or mac not in report.macs:
                raise MalformedReport("the report's token or interfaces do not name the MAC it was filed under")
            taken = sorted({known[m] for m in report.macs if m in known})
            if taken:
                raise MalformedReport(f"its MACs are already Cobbler's, on {', '.join(taken)}: not a new server")
            system = f"enlisted-{match.group('mac')}"
            when = datetime.fromtimestamp(clock.seconds(), UTC)
            await client.add_system(
                system,
                {
                    "profile": COMMISSIONING_NAME,
                    "mgmt_classes": [ENLISTED_CLASS],
                    "netboot_enabled": False,
                    "autoinstall_meta": hardware_meta(report, when),
                    "comment": "enlisted by ensemble-orchestra: add its power settings, then"
                    f" 'ensemble-orchestra accept {system}'",
                    "mac_address": mac,
                },
                interface="eth0",
            )
            known.update({m: system for m in report.macs})
            out.append(Enlisted(name, system=system))
        except (MalformedReport, StorageError) as error:
            out.append(Enlisted(name, error=str(error)))
        try:
            await area.delete(name)
        except StorageError as error:
            out.append(Enlisted(name, error=f"could not delete it: {error}"))
    return out


async def accept(client: CobblerClient, names: list[str], available_class: str) -> dict[str, str]:
    """Move each enlisted system to *available_class*; name -> "" if accepted, else why not."""
    found = await client.get_systems(names)
    out: dict[str, str] = {}
    for name in names:
        record = found.get(name)
        if record is None:
            out[name] = f"{name}: no such system in Cobbler"
        elif ENLISTED_CLASS not in record.mgmt_classes:
            out[name] = f"{name} is not in {ENLISTED_CLASS}: only enlisted systems are accepted"
        elif not (record.power_type and record.power_address):
            out[name] = (
                f"{name} has no power management: set its power_type and power_address (cobbler system edit"
                f" --name {name} --power-type ipmilan --power-address …), then accept it"
            )
        else:
            classes = [c for c in record.mgmt_classes if c != ENLISTED_CLASS]
            await client.edit_system(name, {"mgmt_classes": [available_class, *classes], "comment": ""})
            out[name] = ""
    return out
