"""``python3 -m ensemble_orchestra.agents.main``: the commands machines run (cloud-init and systemd call them).

- ``initialize``: machine 0, once (see ``initialize``).
- ``install-agent machine-agent --config F``: any other machine: installs and starts the machine agent's service.
- ``machine-agent --config F`` / ``provisioning-agent --config F``: the services themselves.
- ``unit-agent --unit NAME --config F``: one unit's agent (the machine agent installs its service).

An agent that fails exits non-zero with one line in its log; systemd starts it again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import Logger

from ..errors import EnsembleError
from .config import CONFIG_DIR, LOG_DIR, AgentConfig
from .firewall import install_service as install_firewall_service
from .initialize import InitializeOptions, initialize
from .logfile import start_logging
from .services import MACHINE_AGENT, PROVISIONING_AGENT, UNIT_DIR, unit_name, unit_text
from .system import run

__all__ = ["main"]

log = Logger()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ensemble-agent", description="Ensemble's programs on a managed machine")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug events too")
    parser.add_argument("--log-dir", type=Path, default=LOG_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("initialize", help="machine 0: start ZooKeeper and create the environment's tree")
    init.add_argument("--instance-id", required=True)
    init.add_argument("--instance-name", default="")
    init.add_argument("--admin-identity", required=True)
    init.add_argument("--provider-type", required=True)
    init.add_argument("--address", default="", help="ZooKeeper's address (default: the first global IPv4 one)")
    init.add_argument("--tools-url", default="")
    init.add_argument("--tools-sha256", default="")
    for agent in (MACHINE_AGENT, PROVISIONING_AGENT):
        sub = commands.add_parser(agent, help=f"run the {agent.replace('-', ' ')}")
        sub.add_argument("--config", type=Path, default=CONFIG_DIR / f"{agent}.yaml")
    unit = commands.add_parser("unit-agent", help="run a unit's agent (its charm's hooks)")
    unit.add_argument("--unit", required=True, help="the unit's name, e.g. mysql/0")
    unit.add_argument("--config", type=Path, default=CONFIG_DIR / f"{MACHINE_AGENT}.yaml")
    install = commands.add_parser("install-agent", help="install and start an agent's systemd service")
    install.add_argument("agent", choices=(MACHINE_AGENT,))
    install.add_argument("--config", type=Path, default=CONFIG_DIR / f"{MACHINE_AGENT}.yaml")
    return parser


async def _run(reactor: Any, args: argparse.Namespace) -> None:
    if args.command == "initialize":
        await initialize(
            reactor,
            InitializeOptions(
                instance_id=args.instance_id,
                admin_identity=args.admin_identity,
                provider_type=args.provider_type,
                instance_name=args.instance_name,
                address=args.address,
                tools_url=args.tools_url,
                tools_sha256=args.tools_sha256,
            ),
        )
    elif args.command == "install-agent":
        AgentConfig.load(args.config)  # refuse to install a service that could not start
        (UNIT_DIR / unit_name(args.agent)).write_text(unit_text(args.agent, args.config))
        await install_firewall_service(reactor)  # loads the agent's last rules at boot (agents/firewall.py)
        await run(reactor, ["systemctl", "daemon-reload"])
        await run(reactor, ["systemctl", "enable", "--now", unit_name(args.agent)])
    elif args.command == "unit-agent":
        from .unit import UnitAgent

        unit_agent = UnitAgent(reactor, AgentConfig.load(args.config), args.unit)
        try:
            await unit_agent.run()
        finally:
            await unit_agent.close()
    elif args.command == MACHINE_AGENT:
        from .firewall import Firewall
        from .machine import MachineAgent

        await MachineAgent(reactor, AgentConfig.load(args.config), firewall=Firewall(reactor)).run()
    else:
        from .provisioning import ProvisioningAgent

        agent = ProvisioningAgent(reactor, AgentConfig.load(args.config))
        try:
            await agent.run()
        finally:
            await agent.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    name = "ensemble-admin" if args.command in ("initialize", "install-agent") else args.command
    if args.command == "unit-agent":
        name = "unit-" + args.unit.replace("/", "-")
    start_logging(name, args.log_dir, args.verbose)

    def work(reactor: Any) -> Deferred[None]:
        async def guarded() -> None:
            try:
                await _run(reactor, args)
            except EnsembleError as error:
                log.error("{error}", error=str(error))
                raise SystemExit(1) from None
            except Exception:
                log.failure("{command} failed", command=args.command)
                raise SystemExit(1) from None

        return Deferred.fromCoroutine(guarded())

    react(work)


if __name__ == "__main__":
    main(sys.argv[1:])
