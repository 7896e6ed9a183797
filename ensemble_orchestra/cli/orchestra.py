"""``ensemble-orchestra``: the lab and the Orchestra server-kit commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import __version__
from ..kit import KitNotFound
from ..lab.envfile import EnvironmentsFileError
from ..lab.lab import Lab, LabError, LabStatus
from ..lab.layout import DEFAULT_BASE_PORT, DEFAULT_SYSTEMS, LabSpec, default_lab_dir
from ..lab.processes import ProcessStartError
from ._run import UsageError, run_command

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ensemble-orchestra", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    lab = commands.add_parser("lab", help="a lab of real Cobbler, IPMI BMCs and WebDAV on this machine")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True)
    dir_help = "the lab directory (default: $ENSEMBLE_LAB_DIR or ~/.ensemble/lab)"

    up = lab_commands.add_parser("up", help="start the lab (creating and seeding it the first time)")
    up.add_argument("--dir", type=Path, default=None, help=dir_help)
    up.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help="XML-RPC on base+1, Cobbler HTTP base+2, WebDAV base+3, BMCs from base+10 (default %(default)s)",
    )
    up.add_argument("--systems", type=int, default=DEFAULT_SYSTEMS, help="systems in the pool (default %(default)s)")
    up.add_argument("--env-name", default="lab", help="environment written to environments.yaml (default %(default)s)")
    up.add_argument("--no-env", action="store_true", help="do not write environments.yaml")

    for name, text in (
        ("down", "stop every process the lab started"),
        ("reset", "back to the seeded state: power off, re-seed Cobbler, empty the storage"),
    ):
        sub = lab_commands.add_parser(name, help=text)
        sub.add_argument("--dir", type=Path, default=None, help=dir_help)

    status = lab_commands.add_parser("status", help="servers, systems, power and logs")
    status.add_argument("--dir", type=Path, default=None, help=dir_help)
    status.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _format_status(status: LabStatus) -> str:
    lines = [f"lab {status.root}: {'running' if status.running else 'NOT fully running'}", ""]
    lines.append(f"{'SERVER':<16} {'PID':>7}  {'ADDRESS':<40} LOG")
    for s in status.servers:
        pid = str(s.pid) if s.pid else "-"
        lines.append(f"{s.name:<16} {pid:>7}  {s.address:<40} {s.log}")
    lines.append("")
    if status.cobbler_error:
        lines.append(f"cobbler: could not list systems ({status.cobbler_error})")
    lines.append(f"{'SYSTEM':<10} {'POWER':<6} {'BMC':<16} {'PROFILE':<16} {'NETBOOT':<8} MGMT CLASSES")
    for system in status.systems:
        row = system.cobbler
        profile = row.profile if row else "(not in Cobbler)"
        netboot = ("on" if row.netboot_enabled else "off") if row else "-"
        classes = ",".join(row.mgmt_classes) if row else "-"
        power = "on" if system.power_on else "off"
        lines.append(f"{system.name:<10} {power:<6} {system.bmc:<16} {profile:<16} {netboot:<8} {classes}")
    return "\n".join(lines)


def _status_json(status: LabStatus) -> str:
    return json.dumps(
        {
            "root": str(status.root),
            "running": status.running,
            "servers": [
                {"name": s.name, "pid": s.pid, "address": s.address, "log": str(s.log)} for s in status.servers
            ],
            "systems": [
                {
                    "name": s.name,
                    "power": "on" if s.power_on else "off",
                    "bmc": s.bmc,
                    "profile": s.cobbler.profile if s.cobbler else None,
                    "netboot_enabled": s.cobbler.netboot_enabled if s.cobbler else None,
                    "mgmt_classes": list(s.cobbler.mgmt_classes) if s.cobbler else None,
                }
                for s in status.systems
            ],
        },
        indent=2,
    )


def _lab(args: argparse.Namespace) -> int:
    lab = Lab(args.dir or default_lab_dir())
    if args.lab_command == "up":
        if not 1 <= args.systems <= 1000:
            raise UsageError("--systems must be between 1 and 1000")
        if not 1024 <= args.base_port <= 65535 - 10 - args.systems:
            raise UsageError(f"--base-port must leave room for {args.systems + 10} ports below 65536")
        spec = lab.up(
            LabSpec(base_port=args.base_port, systems=args.systems), env_name=None if args.no_env else args.env_name
        )
        print(
            f"lab up in {lab.layout.root}: {spec.systems} systems, Cobbler at http://127.0.0.1:{spec.xmlrpc_port}/RPC2"
        )
        if not args.no_env:
            print(f"environment '{args.env_name}' written to environments.yaml")
    elif args.lab_command == "down":
        stopped = lab.down()
        print(f"lab down: stopped {len(stopped)} process(es)" if stopped else "lab down: nothing was running")
    elif args.lab_command == "reset":
        lab.reset()
        print("lab reset to its seeded state")
    elif args.lab_command == "status":
        status = lab.status()
        print(_status_json(status) if args.format == "json" else _format_status(status))
        return 0 if status.running else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    expected = (LabError, ProcessStartError, EnvironmentsFileError, KitNotFound, OSError)
    return run_command("ensemble-orchestra", lambda: _lab(args), verbose=args.verbose, expected=expected)


if __name__ == "__main__":
    sys.exit(main())
