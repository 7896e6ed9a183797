"""An agent's own config file (``/etc/ensemble/<agent>.yaml``, root-only): where ZooKeeper is, who it is.

Written by ``initialize`` on machine 0 and by cloud-init (from the machine's user data) elsewhere; nothing on
a machine reads the user's environments.yaml.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import EnsembleError
from ..state.acl import Credential

__all__ = ["CONFIG_DIR", "LOG_DIR", "AgentConfig", "AgentConfigError", "write_private"]

CONFIG_DIR = Path("/etc/ensemble")
LOG_DIR = Path("/var/log/ensemble")


class AgentConfigError(EnsembleError):
    """An agent's config file is missing or unreadable: the message names the file."""


@dataclass(frozen=True)
class AgentConfig:
    zookeeper_servers: str
    credentials: Sequence[Credential]
    machine_id: int | None = None
    # The provisioning agent hands this one to the machines it launches (their shared read role).
    machine_agents: Credential | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "zookeeper-servers": self.zookeeper_servers,
            "credentials": [c.to_dict() for c in self.credentials],
            **self.extra,
        }
        if self.machine_id is not None:
            document["machine-id"] = self.machine_id
        if self.machine_agents is not None:
            document["machine-agents"] = self.machine_agents.to_dict()
        return document

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        try:
            document = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise AgentConfigError(f"{path}: cannot read the agent's config ({exc.strerror})") from None
        except yaml.YAMLError:
            raise AgentConfigError(f"{path}: not YAML; reinstall the machine or rewrite the file") from None
        try:
            machine_agents = document.get("machine-agents")
            machine_id = document.get("machine-id")
            known = {"zookeeper-servers", "credentials", "machine-agents", "machine-id"}
            return cls(
                str(document["zookeeper-servers"]),
                tuple(Credential.from_dict(c) for c in document["credentials"]),
                None if machine_id is None else int(machine_id),
                Credential.from_dict(machine_agents) if machine_agents else None,
                {k: v for k, v in document.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AgentConfigError(f"{path}: missing or bad key {exc}; reinstall the machine") from None

    def write(self, path: Path) -> None:
        write_private(path, yaml.safe_dump(self.to_document(), default_flow_style=False))


def write_private(path: Path, text: str) -> None:
    """Write *text* readable by root only (it holds secrets), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    temporary.replace(path)
