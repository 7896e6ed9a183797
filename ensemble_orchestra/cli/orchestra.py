"""``ensemble-orchestra``: the lab, the Orchestra server-kit command (``setup-server``) and the hardware
inventory (``commission``, ``systems``)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from ..cobbler import CobblerClient
from ..commissioning.setup import CommissioningSetup
from ..http.agent import read_ca_bundle
from ..lab.lab import Lab, LabStatus
from ..lab.layout import DEFAULT_BASE_PORT, DEFAULT_SYSTEMS, LabSpec, default_lab_dir
from ..lab.programs.system_files import SYSTEM_KINDS
from ..secret import Secret
from ..server_kit import (
    DEFAULT_ACQUIRED_CLASS,
    DEFAULT_AVAILABLE_CLASS,
    SetupReport,
    format_report,
    load_kit,
    setup_server,
)
from . import commission
from ._run import UsageError, run_command
from .options import add_global_options
from .reactor_run import run_on_reactor

__all__ = ["COMMISSIONING_PASSWORD_ENV", "PASSWORD_ENV", "main"]

PROG = "ensemble-orchestra"
PASSWORD_ENV = "ENSEMBLE_ORCHESTRA_PASSWORD"
COMMISSIONING_PASSWORD_ENV = "ENSEMBLE_COMMISSIONING_PASSWORD"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
        help="XML-RPC on base+1, Cobbler HTTP base+2, WebDAV base+3, phone home base+4, BMCs from base+10"
        " (default %(default)s)",
    )
    up.add_argument("--systems", type=int, default=DEFAULT_SYSTEMS, help="systems in the pool (default %(default)s)")
    up.add_argument(
        "--system-kind",
        choices=SYSTEM_KINDS,
        default="container",
        help="what a BMC power on starts: a process system, a QEMU VM that PXE-boots, or a container running a"
        " real Debian on the lab bridge (default %(default)s)",
    )
    up.add_argument(
        "--subnet",
        metavar="CIDR",
        help="container systems: the lab bridge's IPv4 subnet, e.g. 10.251.7.0/24 (default: a free /24 in"
        " 10.251.0.0/16; one that overlaps the host's addresses or routes is refused)",
    )
    # Renamed in 0.2 ("machine" means the Ensemble machine); kept hidden so existing scripts keep working.
    up.add_argument("--machines", dest="system_kind", choices=SYSTEM_KINDS, help=argparse.SUPPRESS)
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

    setup = commands.add_parser(
        "setup-server",
        help="prepare a Cobbler server for Ensemble from the Orchestra kit (idempotent)",
        description="Upload the kit's preseed and snippets, create the management classes and a <series>-<arch>"
        " profile per imported distro, and report systems without power settings. Reads first, writes only"
        f" what differs. The password comes from ${PASSWORD_ENV} or a prompt.",
    )
    setup.add_argument("--cobbler", required=True, metavar="URL", help="XML-RPC URL, e.g. http://orchestra/cobbler_api")
    setup.add_argument("--user", required=True, help="Cobbler user")
    setup.add_argument("--available-class", default=DEFAULT_AVAILABLE_CLASS, help="default %(default)s")
    setup.add_argument("--acquired-class", default=DEFAULT_ACQUIRED_CLASS, help="default %(default)s")
    setup.add_argument("--ca-bundle", type=Path, default=None, metavar="FILE", help="PEM CA certificates for https")
    image = setup.add_argument_group(
        "commissioning",
        f"register the commissioning image (docs/commissioning.md); all three paths/URL or none; the"
        f" commissioning user's password comes from ${COMMISSIONING_PASSWORD_ENV} or a prompt",
    )
    image.add_argument("--commissioning-kernel", metavar="PATH", help="the image's kernel, on the Cobbler server")
    image.add_argument("--commissioning-initrd", metavar="PATH", help="the image's initrd, on the Cobbler server")
    image.add_argument(
        "--commissioning-url",
        metavar="URL",
        help="the storage's commissioning/incoming/ as the systems reach it, e.g."
        " http://orchestra/webdav/commissioning/incoming/",
    )
    image.add_argument("--commissioning-user", default="ensemble-commissioning", help="default %(default)s")
    image.add_argument(
        "--enlist",
        action="store_true",
        help="servers Cobbler does not know boot the image from the PXE menu ('ensemble-orchestra enlist')",
    )
    commission.add_commands(commands)
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
    lines.append(f"{'SYSTEM':<10} {'POWER':<6} {'BMC':<16} {'PROFILE':<22} {'NETBOOT':<8} MGMT CLASSES")
    for system in status.systems:
        row = system.cobbler
        profile = row.profile if row else "(not in Cobbler)"
        netboot = ("on" if row.netboot_enabled else "off") if row else "-"
        classes = ",".join(row.mgmt_classes) if row else "-"
        power = "on" if system.power_on else "off"
        lines.append(f"{system.name:<10} {power:<6} {system.bmc:<16} {profile:<22} {netboot:<8} {classes}")
    lines += ["", f"{'SYSTEM':<10} COMMISSIONED HARDWARE"]
    for system in status.systems:
        hardware = system.cobbler.hardware if system.cobbler else ""
        lines.append(f"{system.name:<10} {hardware or '(not commissioned: ensemble-orchestra commission)'}")
    booted = [s for s in status.systems if s.vm_state is not None]
    if booted and booted[0].ip is not None:  # container systems: a real OS with an address and cloud-init
        lines += ["", f"{'SYSTEM':<10} {'STATE':<18} {'IP':<16} CONSOLE / CLOUD-INIT LOG"]
        lines += [f"{s.name:<10} {s.vm_state:<18} {s.ip:<16} {s.console} {s.cloud_init_log}" for s in booted]
    elif booted:
        lines += ["", f"{'VM':<10} {'STATE':<18} CONSOLE"]
        lines += [f"{s.name:<10} {s.vm_state:<18} {s.console}" for s in booted]
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
                    "hardware": (s.cobbler.hardware or None) if s.cobbler else None,
                    **({"vm": s.vm_state, "console": str(s.console)} if s.vm_state is not None else {}),
                    **({"ip": s.ip, "cloud_init_log": str(s.cloud_init_log)} if s.ip is not None else {}),
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
        if args.subnet is not None and args.system_kind != "container":
            raise UsageError("--subnet is the bridge of container systems: use it with --system-kind container")
        spec = lab.up(
            LabSpec(base_port=args.base_port, systems=args.systems, system_kind=args.system_kind, subnet=args.subnet),
            env_name=None if args.no_env else args.env_name,
        )
        kind = " (QEMU VMs)" if spec.system_kind == "qemu" else ""
        print(
            f"lab up in {lab.layout.root}: {spec.systems} systems{kind},"
            f" Cobbler at http://127.0.0.1:{spec.xmlrpc_port}/RPC2"
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


def _password(user: str, variable: str = PASSWORD_ENV, what: str = "Cobbler") -> Secret:
    """A password: from *variable*, else asked on the terminal (never an argument)."""
    value = os.environ.get(variable)
    if value is None:
        if not sys.stdin.isatty():
            raise UsageError(f"no {what} password: set {variable} or run in a terminal to be asked")
        value = getpass.getpass(f"{what} password for {user}: ")
    if not value:
        raise UsageError(f"the {what} password is empty")
    return Secret(value)


def _commissioning_setup(args: argparse.Namespace) -> CommissioningSetup | None:
    given = [args.commissioning_kernel, args.commissioning_initrd, args.commissioning_url]
    if not any(given):
        if args.enlist:
            raise UsageError("--enlist needs the commissioning image: --commissioning-kernel, -initrd and -url")
        return None
    if not all(given):
        raise UsageError("--commissioning-kernel, --commissioning-initrd and --commissioning-url go together")
    password = _password(args.commissioning_user, COMMISSIONING_PASSWORD_ENV, "commissioning")
    return CommissioningSetup(
        args.commissioning_kernel,
        args.commissioning_initrd,
        args.commissioning_url,
        args.commissioning_user,
        password,
        enlist=args.enlist,
    )


def _setup_server(args: argparse.Namespace) -> int:
    cobbler = urlsplit(args.cobbler)
    if cobbler.scheme not in ("http", "https") or not cobbler.hostname or "@" in cobbler.netloc:
        shown = args.cobbler if "@" not in cobbler.netloc else "a URL with user information"
        raise UsageError(f"--cobbler must be an http:// or https:// URL without user or password, not {shown!r}")
    if args.available_class == args.acquired_class:
        raise UsageError("--available-class and --acquired-class must differ")
    if args.ca_bundle is not None:
        read_ca_bundle(args.ca_bundle)  # CABundleError (exit 2) names the file
    kit = load_kit()
    commissioning = _commissioning_setup(args)
    password = _password(args.user)
    from twisted.internet import reactor

    client = CobblerClient(args.cobbler, args.user, password, reactor, ca_bundle=args.ca_bundle)

    async def body(_: Any) -> SetupReport:
        try:
            return await setup_server(
                client,
                kit,
                available_class=args.available_class,
                acquired_class=args.acquired_class,
                commissioning=commissioning,
            )
        finally:
            await client.close()

    report = run_on_reactor(body, reactor, prog=PROG)
    print(format_report(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = add_global_options(_parser()).parse_args(argv)
    if args.command in ("commission", "systems", "build-commissioning-image", "enlist", "accept"):
        return run_command(PROG, lambda: commission.run(args), verbose=args.verbose, log_file=args.log_file)
    body = (lambda: _setup_server(args)) if args.command == "setup-server" else (lambda: _lab(args))
    return run_command(PROG, body, verbose=args.verbose, log_file=args.log_file)


if __name__ == "__main__":
    sys.exit(main())
