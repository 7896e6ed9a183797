"""``ensemble-orchestra commission`` and ``ensemble-orchestra systems``: the hardware inventory of a Cobbler.

Both act on the Cobbler and storage of an environment in environments.yaml (``-e``), with its credentials:
commissioning is an administrator's job, and the environment already says where Cobbler and the storage
are. ``commission`` boots systems into the commissioning image and records their hardware
(``commissioning/commissioner.py``); ``systems`` lists every system with its class, owner, power and
commissioned hardware.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import DeferredList, DeferredSemaphore

from ..cobbler import CobblerError, SystemRecord
from ..commissioning.commissioner import Commissioner, Outcome, commissioned
from ..commissioning.enlistment import accept, enlist
from ..commissioning.record import hardware_fields
from ..errors import UsageError
from ..storage import open_webdav_storage
from .environment import select_environment
from .progress import Progress
from .reactor_run import run_on_reactor

__all__ = ["add_commands", "run"]

PROG = "ensemble-orchestra"
POWER_QUERIES = 8  # status calls at once (each runs a fence agent on the Cobbler server)


def add_commands(commands: Any) -> None:
    env_help = "the environment whose Cobbler and storage to use (default: $ENSEMBLE_ENV or the default one)"
    commission = commands.add_parser(
        "commission",
        help="boot systems into the commissioning image and record their hardware in Cobbler",
        description="Boot each system (never one an environment owns) into the commissioning image, wait for"
        " its hardware report, and record it on the system in Cobbler (ensemble_hardware), so that mem and cpu"
        " constraints can match it. Exit 1 if any system failed.",
    )
    commission.add_argument("systems", nargs="*", metavar="SYSTEM", help="Cobbler system names")
    commission.add_argument(
        "--all", action="store_true", help="every system of the environment's available class not owned by anyone"
    )
    commission.add_argument("-e", "--environment", help=env_help)
    commission.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for each system's report (default %(default)s)"
    )
    commission.add_argument(
        "--concurrency", type=int, help="systems commissioned at once (default: the environment's launch-concurrency)"
    )
    enlist_command = commands.add_parser(
        "enlist",
        help="make a Cobbler system (class orchestra-ensemble-enlisted) of each unknown server that reported",
        description="Servers Cobbler does not know boot the commissioning image from the PXE menu when"
        " setup-server ran with --enlist; each reports its hardware. This makes each report a Cobbler system in"
        " the enlisted class only (never claimed by an environment until accepted).",
    )
    enlist_command.add_argument("-e", "--environment", help=env_help)
    accept_command = commands.add_parser(
        "accept", help="move enlisted systems (with power settings) into the environment's available class"
    )
    accept_command.add_argument("systems", nargs="+", metavar="SYSTEM")
    accept_command.add_argument("-e", "--environment", help=env_help)
    build = commands.add_parser(
        "build-commissioning-image",
        help="build the commissioning image (kernel + busybox initramfs) into a directory",
        description="Download Debian's kernel (apt-get download, never installed) and build the commissioning"
        " initramfs with busybox-static, then copy both to DIR as vmlinuz and initrd.gz; copy DIR to the Cobbler"
        " server and give its paths to setup-server (--commissioning-kernel, --commissioning-initrd).",
    )
    build.add_argument("--output", required=True, type=Path, metavar="DIR")
    systems = commands.add_parser("systems", help="every Cobbler system: class, owner, power, commissioned hardware")
    systems.add_argument("-e", "--environment", help=env_help)
    systems.add_argument("--format", choices=("table", "json"), default="table")
    systems.add_argument("--no-power", action="store_true", help="do not ask the BMCs (one fence agent run each)")


def build_image(output: Path) -> int:
    from ..commissioning.image import build_commissioning_image
    from ..lab.vm_image import ImageError

    try:
        kernel, initrd = build_commissioning_image()
    except ImageError as error:
        raise UsageError(f"cannot build the commissioning image: {error}") from None
    output.mkdir(parents=True, exist_ok=True)
    for source, name in ((kernel, "vmlinuz"), (initrd, "initrd.gz")):
        shutil.copyfile(source, output / name)
        print(output.resolve() / name)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "build-commissioning-image":
        return build_image(args.output)
    if args.command == "commission":
        if bool(args.systems) == bool(args.all):
            raise UsageError("name the systems to commission, or give --all (not both)")
        if not 1 <= args.timeout <= 86400:
            raise UsageError("--timeout must be between 1 and 86400 seconds")
        if args.concurrency is not None and not 1 <= args.concurrency <= 100:
            raise UsageError("--concurrency must be between 1 and 100")
    from twisted.internet import reactor

    selected = select_environment(args.environment)
    provider = selected.create_provider(reactor)
    config = provider.config
    progress = Progress(sys.stderr)

    async def body(reactor: Any) -> int:
        area = open_webdav_storage(
            reactor,
            config.storage_url,
            "commissioning",
            config.storage_user,
            config.storage_pass,
            ca_bundle=config.ca_bundle,
        )
        try:
            for warning in selected.warnings:
                print(f"{PROG}: warning: {warning}", file=sys.stderr)
            if args.command == "systems":
                return await _systems(provider, args)
            if args.command == "enlist":
                return await _enlist(provider, area, reactor)
            if args.command == "accept":
                return await _accept(provider, args.systems)
            commissioner = Commissioner(
                provider.client,
                provider.claims,
                area,
                reactor,
                acquired_class=config.acquired_mgmt_class,
                concurrency=args.concurrency or config.launch_concurrency,
                timeout=args.timeout,
                progress=progress,
            )
            names = list(dict.fromkeys(args.systems)) or await _pool(provider)
            if not names:
                print(f"commission: no system in class {config.available_mgmt_class} is free to commission")
                return 0
            progress("commissioning", f"{len(names)} system(s)")
            outcomes = await commissioner.commission(names)
            progress.done()
            print(_format_outcomes(outcomes))
            return 0 if all(o.ok for o in outcomes) else 1
        finally:
            progress.done()
            await area.close()
            await provider.close()

    return int(run_on_reactor(body, reactor, prog=PROG))


async def _pool(provider: Any) -> list[str]:
    """--all: the available class's systems no environment owns."""
    records = await provider.client.find_systems_expanded({"mgmt_classes": provider.config.available_mgmt_class})
    return sorted(r.name for r in records if provider.pool.is_available(r))


async def _enlist(provider: Any, area: Any, reactor: Any) -> int:
    results = await enlist(provider.client, area, reactor)
    for r in results:
        print(f"{r.report}: enlisted as {r.system}" if r.system else f"{r.report}: refused: {r.error}")
    made = sum(1 for r in results if r.system)
    print(f"enlist: {made} system(s) enlisted, {len(results) - made} report(s) refused")
    return 0 if made == len(results) else 1


async def _accept(provider: Any, names: list[str]) -> int:
    results = await accept(provider.client, list(dict.fromkeys(names)), provider.config.available_mgmt_class)
    for name, error in results.items():
        print(f"{name}: accepted into {provider.config.available_mgmt_class}" if not error else error)
    return 0 if not any(results.values()) else 1


def _format_outcomes(outcomes: list[Outcome]) -> str:
    width = max([len(o.system) for o in outcomes] + [6])
    lines = [f"{'SYSTEM':<{width}}  {'RESULT':<12}  HARDWARE / ERROR"]
    for o in outcomes:
        if o.hardware is not None:
            lines.append(f"{o.system:<{width}}  {'commissioned':<12}  {o.hardware.summary()} ({o.seconds:.1f} s)")
        else:
            lines.append(f"{o.system:<{width}}  {'failed':<12}  {o.error}")
    done = sum(1 for o in outcomes if o.ok)
    lines.append(f"commission: {done} commissioned, {len(outcomes) - done} failed")
    return "\n".join(lines)


async def _systems(provider: Any, args: argparse.Namespace) -> int:
    records = sorted(await provider.client.find_systems_expanded({}), key=lambda r: r.name)
    hardware = commissioned(records)
    power: dict[str, str] = {}
    if not args.no_power:
        limit = DeferredSemaphore(POWER_QUERIES)

        async def status(name: str) -> None:
            try:
                power[name] = "on" if await provider.client.power(name, "status") else "off"
            except CobblerError:
                power[name] = "unknown"

        await DeferredList([limit.run(status, r.name) for r in records if r.power_type], consumeErrors=True)
    rows = [_row(provider, r, hardware[r.name], power.get(r.name, "-")) for r in records]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(_systems_table(rows))
    return 0


def _row(provider: Any, record: SystemRecord, hw: Any, power: str) -> dict[str, Any]:
    config = provider.config
    if config.acquired_mgmt_class in record.mgmt_classes or record.autoinstall_meta.get("ensemble_environment"):
        klass = "acquired"
    elif config.available_mgmt_class in record.mgmt_classes:
        klass = "available"
    else:
        klass = "-"
    row: dict[str, Any] = {
        "name": record.name,
        "class": klass,
        "owner": record.autoinstall_meta.get("ensemble_environment") or None,
        "power": power,
        "commissioned": hw.commissioned if hw else None,
    }
    if hw:
        row["hardware"] = hardware_fields(hw)
    elif record.autoinstall_meta.get("ensemble_hardware"):
        row["hardware"] = "unreadable"
    return row


def _systems_table(rows: list[dict[str, Any]]) -> str:
    header = ("SYSTEM", "CLASS", "OWNER", "POWER", "HARDWARE", "COMMISSIONED")
    body = []
    for r in rows:
        hw = r.get("hardware")
        if isinstance(hw, dict):
            disks = sum(d["size_bytes"] for d in hw["disks"])
            text = f"{hw['arch']} {hw['cpus']} CPU {hw['memory_mb']} MiB, {len(hw['disks'])} disk(s) {disks >> 20} MiB"
        else:
            text = "(unreadable record)" if hw == "unreadable" else "(not commissioned)"
        body.append((r["name"], r["class"], r["owner"] or "-", r["power"], text, r["commissioned"] or "-"))
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(f"{c:<{widths[i]}}" for i, c in enumerate(row)).rstrip() for row in [header, *body]]
    done = sum(1 for r in rows if r["commissioned"])
    lines.append(f"{len(rows)} systems, {done} commissioned")
    return "\n".join(lines)
