"""Whether a valid report belongs to the system being commissioned.

The report area is writable with a credential every commissioning image carries, so a report proves
nothing by where it lies. It is accepted for system S only if:

- its token is the one this run gave S (on S's kernel command line): a report left from an earlier run,
  or written before S was booted for this run with a guessed name, is refused;
- it lists a MAC Cobbler records for S (what S PXE-booted by);
- none of its MACs is recorded for another Cobbler system: a report claiming another system's NIC is forged.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from .report import HardwareReport, MalformedReport

__all__ = ["ForgedReport", "check_belongs"]


class ForgedReport(MalformedReport):
    """A well-formed report that is not this system's (wrong token or MACs)."""


def check_belongs(
    report: HardwareReport, system: str, token: str, system_macs: Iterable[str], macs_elsewhere: Mapping[str, str]
) -> None:
    """ForgedReport unless *report* is *system*'s answer to *token* (see the module docstring).

    *macs_elsewhere* maps each MAC Cobbler records for any other system to that system's name.
    """
    if not hmac.compare_digest(report.token.encode(), token.encode()):
        raise ForgedReport(f"the report for {system} does not carry the token of this run (stale or forged)")
    own = {m.lower() for m in system_macs if m}
    elsewhere = {mac.lower(): name for mac, name in macs_elsewhere.items()}
    if not own:
        raise ForgedReport(f"Cobbler records no MAC for {system}, so no report can be matched to it")
    if not own & report.macs:
        raise ForgedReport(f"the report for {system} lists none of its MACs ({', '.join(sorted(own))})")
    for mac in sorted(report.macs):
        other = elsewhere.get(mac)
        if other and other != system:
            raise ForgedReport(f"the report for {system} lists {mac}, which Cobbler records for {other}")
