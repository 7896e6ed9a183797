"""Prepare a Cobbler server for Ensemble from the Orchestra kit (``ensemble-orchestra setup-server``).

The kit (``providers/orchestra``, shipped inside the package; found by `kit.kit_dir`) holds the Ensemble
preseed and the Cobbler snippets it includes. `setup_server` makes a Cobbler 3 server ready for the
orchestra provider:

- the preseed template and the snippets are uploaded (compared first, written only when they differ);
- the two management classes the provider claims systems by exist;
- every imported debian-installer distro has a ``<series>-<arch>`` profile (series = the distro's
  ``os_version``) that installs with the Ensemble preseed;
- every system's power settings are checked, read-only, and the gaps reported.

It reads everything first and writes only what differs, so a second run changes nothing. The
report says what was created, updated or left unchanged. The client's password never reaches the
report: it holds names, Cobbler's field values and which power fields are missing, never their values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .cobbler import CobblerClient, DistroRecord, ProfileRecord, SystemRecord
from .commissioning.setup import COMMISSIONING_NAME, DEFAULT_SYSTEM, CommissioningSetup, ensure_commissioning
from .errors import EnsembleError
from .kit import kit_dir

__all__ = [
    "CREATED",
    "DEFAULT_ACQUIRED_CLASS",
    "DEFAULT_AVAILABLE_CLASS",
    "INSTALLER_BREEDS",
    "POWER_FIELDS",
    "PRESEED_NAME",
    "UNCHANGED",
    "UPDATED",
    "Change",
    "Kit",
    "PowerGap",
    "ProfilePlan",
    "ServerKitError",
    "SetupReport",
    "format_report",
    "load_kit",
    "plan_profiles",
    "power_gaps",
    "setup_server",
]

DEFAULT_AVAILABLE_CLASS = "orchestra-ensemble-available"
DEFAULT_ACQUIRED_CLASS = "orchestra-ensemble-acquired"
PRESEED_NAME = "ensemble.preseed"
# Breeds installed by debian-installer, the only installer the Ensemble preseed speaks to.
INSTALLER_BREEDS = frozenset({"ubuntu", "debian"})
POWER_FIELDS = ("power_type", "power_address", "power_user", "power_pass")

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


class ServerKitError(EnsembleError):
    """The kit is unusable or the server cannot take it; str() is one line."""


@dataclass(frozen=True)
class Kit:
    """The files uploaded to Cobbler: the preseed template and its snippets (name -> text)."""

    directory: Path
    preseed: str
    snippets: Mapping[str, str]
    preseed_name: str = PRESEED_NAME


def load_kit(directory: Path | None = None) -> Kit:
    """The kit in *directory* (default `kit_dir()`): ``preseed/ensemble.preseed`` and ``snippets/*``."""
    directory = directory or kit_dir()
    preseed_file = directory / "preseed" / PRESEED_NAME
    snippet_dir = directory / "snippets"
    try:
        preseed = preseed_file.read_text()
        snippets = {p.name: p.read_text() for p in sorted(snippet_dir.iterdir()) if p.is_file()}
    except OSError as exc:
        raise ServerKitError(f"the server kit in {directory} is incomplete: {exc.strerror}: {exc.filename}") from None
    if not snippets:
        raise ServerKitError(f"the server kit in {directory} has no snippets in {snippet_dir}")
    return Kit(directory=directory, preseed=preseed, snippets=snippets)


@dataclass(frozen=True)
class Change:
    """One object setup-server looked after: what it did (created/updated/unchanged) and why."""

    kind: str
    name: str
    action: str
    detail: str = ""


@dataclass(frozen=True)
class ProfilePlan:
    """The profile a distro gets: ``<series>-<arch>`` on *distro*, with the Ensemble preseed."""

    profile: str
    distro: str


@dataclass(frozen=True)
class PowerGap:
    """A system the provider cannot power: which of POWER_FIELDS it lacks (names only, never values)."""

    system: str
    power_type: str
    power_address: str
    missing: tuple[str, ...]


@dataclass
class SetupReport:
    url: str
    version: str
    kit: Path
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    power_gaps: list[PowerGap] = field(default_factory=list)
    systems: int = 0

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def changed(self) -> bool:
        return any(c.action != UNCHANGED for c in self.changes)


# -- planning (pure) -------------------------------------------------------------------------


def plan_profiles(
    distros: Iterable[DistroRecord], profiles: Mapping[str, ProfileRecord]
) -> tuple[list[ProfilePlan], list[str]]:
    """One plan per (series, arch) among the debian-installer distros, and notes on what was left out.

    Distros without an os_version, or of another breed, are skipped. When several distros share a
    series and arch, the pick is deterministic: the one the existing profile already uses, else the
    one named like the profile, else the first by name; the others are named in a note.
    """
    notes: list[str] = []
    groups: dict[str, list[DistroRecord]] = {}
    for distro in sorted(distros, key=lambda d: d.name):
        if distro.name == COMMISSIONING_NAME:
            continue  # the commissioning image: its own profile (commissioning/setup.py), nothing to install
        if not distro.os_version:
            notes.append(f"distro {distro.name} skipped: it has no os_version (the series names the profile)")
        elif distro.breed not in INSTALLER_BREEDS:
            notes.append(f"distro {distro.name} skipped: breed {distro.breed or '(none)'} is not debian-installer")
        elif not distro.arch:
            notes.append(f"distro {distro.name} skipped: it has no arch")
        else:
            groups.setdefault(f"{distro.os_version}-{distro.arch}", []).append(distro)
    plans = []
    for profile, candidates in sorted(groups.items()):
        current = profiles.get(profile)
        chosen = min(
            candidates,
            key=lambda d: (current is None or d.name != current.distro, d.name != profile, d.name),
        )
        plans.append(ProfilePlan(profile=profile, distro=chosen.name))
        if len(candidates) > 1:
            others = ", ".join(d.name for d in candidates if d is not chosen)
            notes.append(f"profile {profile}: distros {others} have the same series and arch; using {chosen.name}")
    return plans, notes


def power_gaps(systems: Iterable[SystemRecord]) -> list[PowerGap]:
    """The systems lacking any of POWER_FIELDS, by name."""
    gaps = []
    for system in sorted(systems, key=lambda s: s.name):
        if system.name == DEFAULT_SYSTEM:
            continue  # Cobbler's stand-in for unknown servers (enlistment): nothing to power
        present = {
            "power_type": bool(system.power_type),
            "power_address": bool(system.power_address),
            "power_user": bool(system.power_user),
            "power_pass": system.has_power_pass,
        }
        missing = tuple(f for f in POWER_FIELDS if not present[f])
        if missing:
            gaps.append(PowerGap(system.name, system.power_type, system.power_address, missing))
    return gaps


def _profile_changes(plan: ProfilePlan, current: ProfileRecord, preseed_name: str) -> dict[str, str]:
    wanted = {"distro": plan.distro, "autoinstall": preseed_name}
    have = {"distro": current.distro, "autoinstall": current.autoinstall}
    return {k: v for k, v in wanted.items() if have[k] != v}


def _describe(current: ProfileRecord, changes: Mapping[str, str]) -> str:
    have = {"distro": current.distro, "autoinstall": current.autoinstall}
    return ", ".join(f"{k} {have[k] or '(inherited)'} -> {v}" for k, v in changes.items())


# -- applying --------------------------------------------------------------------------------


async def setup_server(
    client: CobblerClient,
    kit: Kit,
    *,
    available_class: str = DEFAULT_AVAILABLE_CLASS,
    acquired_class: str = DEFAULT_ACQUIRED_CLASS,
    commissioning: CommissioningSetup | None = None,
) -> SetupReport:
    """Make the server behind *client* ready for Ensemble; idempotent.

    Calls: 1 version + 1 login, 2 listings + 1 read per existing kit file, 1 ``get_item_names``,
    ``get_distros`` + ``get_profiles`` + ``get_systems`` (1 each), then 1 write per difference.
    Templates and snippets are written before the profiles that name them. With *commissioning*, the
    commissioning image's distro and profile too (2 more reads, ``commissioning/setup.py``).
    """
    version = await client.server_version()
    if version.major < 3:
        raise ServerKitError(
            f"Cobbler at {client.url} is version {version}: setup-server needs Cobbler 3 (autoinstall templates)"
        )
    report = SetupReport(url=client.url, version=str(version), kit=kit.directory)
    await _upload_files(client, kit, report)
    await _ensure_classes(client, (available_class, acquired_class), report)
    await _ensure_profiles(client, kit.preseed_name, report)
    if commissioning is not None:
        for change in await ensure_commissioning(client, commissioning):
            report.changes.append(Change(change.kind, change.name, change.action, change.detail))
    systems = await client.find_systems_expanded({})
    report.systems = len(systems)
    report.power_gaps = power_gaps(systems)
    return report


async def _upload_files(client: CobblerClient, kit: Kit, report: SetupReport) -> None:
    existing_snippets = set(await client.list_autoinstall_snippets())
    for name, text in kit.snippets.items():
        current = await client.read_autoinstall_snippet(name) if name in existing_snippets else None
        if current != text:
            await client.write_autoinstall_snippet(name, text)
        report.changes.append(_file_change("snippet", name, current, text))
    existing_templates = set(await client.list_autoinstall_templates())
    name = kit.preseed_name
    current = await client.read_autoinstall_template(name) if name in existing_templates else None
    if current != kit.preseed:
        await client.write_autoinstall_template(name, kit.preseed)
    report.changes.append(_file_change("template", name, current, kit.preseed))


def _file_change(kind: str, name: str, current: str | None, text: str) -> Change:
    if current is None:
        return Change(kind, name, CREATED)
    if current != text:
        return Change(kind, name, UPDATED, "content differed from the kit's")
    return Change(kind, name, UNCHANGED)


async def _ensure_classes(client: CobblerClient, names: Iterable[str], report: SetupReport) -> None:
    existing = set(await client.get_item_names("mgmtclass"))
    for name in dict.fromkeys(names):  # the same name given twice is one class
        if name in existing:
            report.changes.append(Change("mgmtclass", name, UNCHANGED))
        else:
            await client.add_object("mgmtclass", name, {"comment": "Ensemble (orchestra provider)"})
            report.changes.append(Change("mgmtclass", name, CREATED))


async def _ensure_profiles(client: CobblerClient, preseed_name: str, report: SetupReport) -> None:
    profiles = {p.name: p for p in await client.list_profiles()}
    plans, notes = plan_profiles(await client.list_distros(), profiles)
    report.notes.extend(notes)
    if not plans:
        report.notes.append("no debian-installer distro with an os_version: import one (cobbler import), run again")
    for plan in plans:
        current = profiles.get(plan.profile)
        if current is None:
            await client.add_object("profile", plan.profile, {"distro": plan.distro, "autoinstall": preseed_name})
            report.changes.append(Change("profile", plan.profile, CREATED, f"distro {plan.distro}"))
            continue
        if current.parent:
            report.notes.append(f"profile {plan.profile} is a sub-profile of {current.parent}: left as it is")
            continue
        changes = _profile_changes(plan, current, preseed_name)
        if changes:
            await client.edit_object("profile", plan.profile, changes)
            report.changes.append(Change("profile", plan.profile, UPDATED, _describe(current, changes)))
        else:
            report.changes.append(Change("profile", plan.profile, UNCHANGED))


# -- the report ------------------------------------------------------------------------------


def format_report(report: SetupReport) -> str:
    """What a person reads: every object and its action, notes, the power table, one summary line."""
    lines = [f"Cobbler {report.version} at {report.url}; kit {report.kit}", ""]
    width = max([len(c.name) for c in report.changes] + [4])
    lines.append(f"{'ACTION':<10} {'KIND':<10} {'NAME':<{width}}  DETAIL")
    for c in report.changes:
        lines.append(f"{c.action:<10} {c.kind:<10} {c.name:<{width}}  {c.detail}".rstrip())
    if report.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in report.notes)
    lines.append("")
    if report.power_gaps:
        lines.append(
            f"power: {len(report.power_gaps)} of {report.systems} systems lack power settings"
            " (the provider cannot power them on):"
        )
        lines.extend(_power_table(report.power_gaps))
    else:
        lines.append(f"power: all {report.systems} systems have {', '.join(POWER_FIELDS)}")
    lines.append("")
    created, updated, unchanged = report.count(CREATED), report.count(UPDATED), report.count(UNCHANGED)
    if report.changed:
        lines.append(f"setup-server: {created} created, {updated} updated, {unchanged} unchanged")
    else:
        lines.append(f"setup-server: nothing to change ({unchanged} unchanged)")
    return "\n".join(lines)


def _power_table(gaps: list[PowerGap]) -> list[str]:
    rows = [(g.system, g.power_type or "-", g.power_address or "-", ", ".join(g.missing)) for g in gaps]
    widths = [max(len(r[i]) for r in [("SYSTEM", "POWER TYPE", "ADDRESS", ""), *rows]) for i in range(3)]
    header = ("SYSTEM", "POWER TYPE", "ADDRESS", "MISSING")
    return [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in [header, *rows]]
