"""``setup-server``'s part for commissioning: the image as its own Cobbler distro and profile.

- distro ``ensemble-commissioning``: the image's kernel and initrd (paths on the Cobbler server: Cobbler copies
  them into its TFTP tree), breed ``generic`` (so Cobbler adds no installer options), arch ``x86_64``;
  its ``kernel_options`` are the administrator's (a serial console, say) and are left alone;
- profile ``ensemble-commissioning`` on it, whose ``kernel_options`` carry where reports go and the
  commissioning credential: ``ensemble.report`` (the report area's URL as the systems reach it),
  ``ensemble.report_user``, ``ensemble.report_pass`` (other keys there are kept); out of the PXE menu
  (``enable_menu`` off: only systems the command points at it boot it) unless enlistment is on: then it is
  in the menu, Cobbler's system ``default`` is on it (servers Cobbler does not know boot it when the menu
  times out) and the class ``orchestra-ensemble-enlisted`` exists (``enlistment.py``).

The credential is the one that may only PUT into ``commissioning/incoming/`` (docs/commissioning.md). Like
the rest of setup-server, this reads first and writes only what differs; the report names changed keys,
never a value of ``ensemble.report_pass``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..cobbler import CobblerClient, CobblerError, DistroRecord, ProfileRecord
from ..errors import UsageError
from ..secret import Secret

__all__ = [
    "COMMISSIONING_NAME",
    "DEFAULT_SYSTEM",
    "ENLISTED_CLASS",
    "REPORT_AREA",
    "CommissioningSetup",
    "SetupChange",
    "distro_fields",
    "ensure_commissioning",
    "profile_changes",
]

COMMISSIONING_NAME = "ensemble-commissioning"  # the distro's and the profile's name
ENLISTED_CLASS = "orchestra-ensemble-enlisted"  # where enlisted systems wait for an admin's accept
DEFAULT_SYSTEM = "default"  # Cobbler's name for what a server it does not know boots
REPORT_AREA = "commissioning/incoming/"  # below the storage URL
_SAFE = re.compile(r"[A-Za-z0-9._~:/@%+=-]+")  # one kernel command-line word, no quoting needed


@dataclass(frozen=True)
class CommissioningSetup:
    """Where the image is on the Cobbler server, and where and as whom it reports."""

    kernel: str
    initrd: str
    report_url: str  # the report area, as the booted systems reach it; ends with /
    user: str
    password: Secret
    enlist: bool = False  # unknown servers that PXE-boot take the image from the PXE menu (enlistment.py)

    def __post_init__(self) -> None:
        for what, path in (("kernel", self.kernel), ("initrd", self.initrd)):
            if not path.startswith("/"):
                raise UsageError(f"--commissioning-{what} must be an absolute path on the Cobbler server")
        url = urlsplit(self.report_url)
        if url.scheme != "http" or not url.hostname or "@" in url.netloc or not self.report_url.endswith("/"):
            raise UsageError(
                "--commissioning-url must be the report area as systems reach it, http://HOST[:PORT]/PATH/ ending"
                f" in /, e.g. http://orchestra/webdav/{REPORT_AREA} (the image's HTTP client speaks http only)"
            )
        for what, value in (("url", self.report_url), ("user", self.user), ("password", self.password.reveal())):
            if not _SAFE.fullmatch(value):
                raise UsageError(
                    f"the commissioning {what} must be one word of letters, digits and ._~:/@%+=- (it goes on a"
                    " kernel command line)"
                )

    def kernel_options(self) -> dict[str, str]:
        return {
            "ensemble.report": self.report_url,
            "ensemble.report_user": self.user,
            "ensemble.report_pass": self.password.reveal(),
        }


@dataclass(frozen=True)
class SetupChange:
    kind: str
    name: str
    action: str  # created, updated, unchanged
    detail: str = ""


def distro_fields(setup: CommissioningSetup) -> dict[str, str]:
    """The distro's fields, breed before os_version (Cobbler drops an os_version given first)."""
    return {
        "breed": "generic",
        "os_version": "generic26",
        "arch": "x86_64",
        "kernel": setup.kernel,
        "initrd": setup.initrd,
    }


def _distro_changes(current: DistroRecord, wanted: Mapping[str, str]) -> dict[str, str]:
    have = {
        "breed": current.breed,
        "os_version": current.os_version,
        "arch": current.arch,
        "kernel": current.kernel,
        "initrd": current.initrd,
    }
    return {k: v for k, v in wanted.items() if have[k] != v}


def profile_changes(current: ProfileRecord, setup: CommissioningSetup) -> dict[str, object]:
    """The profile fields that differ from what commissioning needs (kernel_options merged, others kept)."""
    changes: dict[str, object] = {}
    if current.distro != COMMISSIONING_NAME:
        changes["distro"] = COMMISSIONING_NAME
    options = dict(current.kernel_options)
    wanted = setup.kernel_options()
    if any(options.get(k) != v for k, v in wanted.items()):
        changes["kernel_options"] = {**options, **wanted}
    if current.enable_menu != setup.enlist:
        changes["enable_menu"] = setup.enlist
    return changes


def _describe(current: ProfileRecord, changes: Mapping[str, object], setup: CommissioningSetup) -> str:
    parts = [f"distro -> {COMMISSIONING_NAME}"] if "distro" in changes else []
    if "kernel_options" in changes:
        keys = [k for k, v in setup.kernel_options().items() if current.kernel_options.get(k) != v]
        parts.append(f"kernel_options {', '.join(keys)}")
    if "enable_menu" in changes:
        parts.append("in the PXE menu (enlistment)" if setup.enlist else "out of the PXE menu")
    return "; ".join(parts)


async def ensure_commissioning(client: CobblerClient, setup: CommissioningSetup) -> list[SetupChange]:
    """The commissioning distro and profile as *setup* says; 2 reads, then 1 write per difference."""
    out: list[SetupChange] = []
    distros = {d.name: d for d in await client.list_distros()}
    wanted = distro_fields(setup)
    try:
        current = distros.get(COMMISSIONING_NAME)
        if current is None:
            await client.add_object("distro", COMMISSIONING_NAME, wanted)
            out.append(SetupChange("distro", COMMISSIONING_NAME, "created", f"kernel {setup.kernel}"))
        elif changes := _distro_changes(current, wanted):
            await client.edit_object("distro", COMMISSIONING_NAME, changes)
            out.append(
                SetupChange(
                    "distro", COMMISSIONING_NAME, "updated", ", ".join(f"{k} -> {v}" for k, v in changes.items())
                )
            )
        else:
            out.append(SetupChange("distro", COMMISSIONING_NAME, "unchanged"))
    except CobblerError as error:
        if "kernel" not in str(error) and "initrd" not in str(error):
            raise
        raise UsageError(
            f"Cobbler refused the commissioning image ({error}): copy the kernel and initrd to {setup.kernel} and"
            f" {setup.initrd} on the Cobbler server first, named vmlinuz and initrd.gz"
            " ('ensemble-orchestra build-commissioning-image' makes them)"
        ) from None
    profiles = {p.name: p for p in await client.list_profiles()}
    profile = profiles.get(COMMISSIONING_NAME)
    if profile is None:
        fields = {"distro": COMMISSIONING_NAME, "kernel_options": setup.kernel_options(), "enable_menu": setup.enlist}
        await client.add_object("profile", COMMISSIONING_NAME, fields)
        where = "in the PXE menu (enlistment)" if setup.enlist else "out of the PXE menu"
        out.append(SetupChange("profile", COMMISSIONING_NAME, "created", f"distro {COMMISSIONING_NAME}, {where}"))
    elif edits := profile_changes(profile, setup):
        await client.edit_object("profile", COMMISSIONING_NAME, edits)
        out.append(SetupChange("profile", COMMISSIONING_NAME, "updated", _describe(profile, edits, setup)))
    else:
        out.append(SetupChange("profile", COMMISSIONING_NAME, "unchanged"))
    if setup.enlist:
        out.extend(await _ensure_enlistment(client))
    return out


async def _ensure_enlistment(client: CobblerClient) -> list[SetupChange]:
    """Cobbler's system ``default`` on the commissioning profile: the PXE menu's default (after its timeout)
    for servers Cobbler does not know; and the class enlisted systems wait in."""
    out = []
    if ENLISTED_CLASS in await client.get_item_names("mgmtclass"):
        out.append(SetupChange("mgmtclass", ENLISTED_CLASS, "unchanged"))
    else:
        await client.add_object("mgmtclass", ENLISTED_CLASS, {"comment": "Ensemble: enlisted, not yet accepted"})
        out.append(SetupChange("mgmtclass", ENLISTED_CLASS, "created"))
    if DEFAULT_SYSTEM in await client.get_item_names("system"):
        current = await client.get_system(DEFAULT_SYSTEM)
        if current.profile == COMMISSIONING_NAME:
            out.append(SetupChange("system", DEFAULT_SYSTEM, "unchanged"))
        else:
            await client.edit_system(DEFAULT_SYSTEM, {"profile": COMMISSIONING_NAME})
            out.append(SetupChange("system", DEFAULT_SYSTEM, "updated", f"profile -> {COMMISSIONING_NAME}"))
    else:
        await client.add_system(DEFAULT_SYSTEM, {"profile": COMMISSIONING_NAME, "netboot_enabled": True})
        out.append(SetupChange("system", DEFAULT_SYSTEM, "created", "servers Cobbler does not know boot the image"))
    return out
