"""The agents as systemd services: restarted when they fail, started at boot, logging to /var/log/ensemble.

The unit runs the agent from the archive ``origin`` unpacked (``INSTALL_DIR``) with the machine's python3.
"""

from __future__ import annotations

from pathlib import Path

from ..origin import INSTALL_DIR

__all__ = ["MACHINE_AGENT", "PROVISIONING_AGENT", "UNIT_DIR", "unit_name", "unit_text"]

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
