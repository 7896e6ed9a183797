"""The agents as systemd services: restarted when they fail, started at boot, logging to /var/log/ensemble.

The unit runs the agent from the archive ``origin`` unpacked (``INSTALL_DIR``) with the machine's python3.
"""

from __future__ import annotations

from pathlib import Path

from ..origin import INSTALL_DIR
from ..state.layout import unit_key

__all__ = [
    "MACHINE_AGENT",
    "PROVISIONING_AGENT",
    "UNIT_DIR",
    "unit_agent_service",
    "unit_agent_text",
    "unit_name",
    "unit_text",
]

UNIT_DIR = Path("/etc/systemd/system")
MACHINE_AGENT = "machine-agent"
PROVISIONING_AGENT = "provisioning-agent"

_DESCRIPTIONS = {
    MACHINE_AGENT: "Ensemble machine agent: this machine's presence in the environment",
    PROVISIONING_AGENT: "Ensemble provisioning agent: launches and stops the environment's machines",
}


def unit_name(agent: str) -> str:
    return f"ensemble-{agent}.service"


def unit_text(agent: str, config: Path) -> str:
    after = "network-online.target" + (" zookeeper.service" if agent == PROVISIONING_AGENT else "")
    return f"""[Unit]
Description={_DESCRIPTIONS[agent]}
Wants=network-online.target
After={after}
# No start limit: an agent waiting for ZooKeeper to come back keeps trying.
StartLimitIntervalSec=0

[Service]
Type=simple
Environment=PYTHONPATH={INSTALL_DIR}
ExecStart=/usr/bin/python3 -m ensemble_orchestra.agents.main {agent} --config {config}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def unit_agent_service(unit: str) -> str:
    """``mysql/0`` → ``ensemble-unit-mysql-0.service``."""
    return f"ensemble-unit-{unit_key(unit)}.service"


def unit_agent_text(unit: str, config: Path) -> str:
    """The unit agent's service. KillMode=control-group (systemd's default): when the agent dies, the hook it
    was running dies with it, and the restarted agent runs that hook again (it had not completed)."""
    return f"""[Unit]
Description=Ensemble unit agent of {unit}: runs its charm's hooks
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
Environment=PYTHONPATH={INSTALL_DIR}
ExecStart=/usr/bin/python3 -m ensemble_orchestra.agents.main unit-agent --unit {unit} --config {config}
Restart=always
RestartSec=2
KillMode=control-group

[Install]
WantedBy=multi-user.target
"""
