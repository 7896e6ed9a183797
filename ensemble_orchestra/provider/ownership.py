"""How a Cobbler system records which environment owns it, and the fields that claim or free it.

Ownership lives on the system itself: the acquired mgmt class plus owner keys in its autoinstall
metadata (environment, machine id, instance id, user data). That is what makes every owned system
findable with one query, whatever happened to the process that claimed it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from ..cobbler import SystemRecord
from ..config import OrchestraConfig
from ..interfaces import IProviderMachine

__all__ = ["ENV_KEY", "INSTANCE_KEY", "MACHINE_KEY", "META_KEYS", "USER_DATA_KEY", "OrchestraMachine", "Pool"]

ENV_KEY = "ensemble_environment"
MACHINE_KEY = "ensemble_machine_id"
USER_DATA_KEY = "ensemble_user_data"
INSTANCE_KEY = "ensemble_instance_id"
META_KEYS = (ENV_KEY, MACHINE_KEY, USER_DATA_KEY, INSTANCE_KEY)


@implementer(IProviderMachine)
@dataclass(frozen=True)
class OrchestraMachine:
    """A claimed Cobbler system, as Ensemble sees it."""

    instance_id: str
    dns_name: str
    private_dns_name: str
    state: str
    system_name: str
    machine_id: str
    address: str = ""  # the first interface's IP Cobbler records ("" if none): what SSH reaches when DNS cannot
    holds_user_data: bool = False  # its record still carries the user data (its agent's secrets)

    @property
    def reach(self) -> str:
        """Where to connect to it: its recorded address, else its DNS name."""
        return self.address or self.dns_name

    @classmethod
    def from_record(cls, record: SystemRecord) -> OrchestraMachine:
        name = record.hostname or record.name
        return cls(
            instance_id=record.uid,
            dns_name=name,
            private_dns_name=name,
            # The installer's nopxe turns netboot off: until then the system is installing.
            state="pending" if record.netboot_enabled else "provisioned",
            system_name=record.name,
            machine_id=str(record.autoinstall_meta.get(MACHINE_KEY, "")),
            address=next((i.ip_address for i in record.interfaces if i.ip_address), ""),
            holds_user_data=USER_DATA_KEY in record.autoinstall_meta,
        )


class Pool:
    """One environment's view of Cobbler's pool: which systems are free, which are its own."""

    def __init__(self, config: OrchestraConfig) -> None:
        self.config = config
        self.environment = config.environment

    def owner_criteria(self) -> dict[str, str]:
        """A find_systems query for this environment's systems (a substring match: check with is_ours)."""
        return {"autoinstall_meta": f"{ENV_KEY}={self.environment}"}

    def is_ours(self, record: SystemRecord) -> bool:
        return record.autoinstall_meta.get(ENV_KEY) == self.environment

    def is_available(self, record: SystemRecord) -> bool:
        return (
            self.config.available_mgmt_class in record.mgmt_classes
            and self.config.acquired_mgmt_class not in record.mgmt_classes
            and not record.autoinstall_meta.get(ENV_KEY)
        )

    def claim_fields(self, record: SystemRecord, machine_id: str, profile: str, user_data: str) -> dict[str, Any]:
        """One edit that records the owner and starts the install."""
        classes = [c for c in record.mgmt_classes if c != self.config.available_mgmt_class]
        meta = {k: v for k, v in record.autoinstall_meta.items() if k not in META_KEYS}
        meta.update(
            {
                ENV_KEY: self.environment,
                MACHINE_KEY: machine_id,
                INSTANCE_KEY: record.uid,
                USER_DATA_KEY: base64.b64encode(user_data.encode()).decode(),
            }
        )
        return {
            "mgmt_classes": [self.config.acquired_mgmt_class, *classes],
            "autoinstall_meta": meta,
            "profile": profile,
            "netboot_enabled": True,
            "comment": f"ensemble environment {self.environment} machine {machine_id}",
        }

    def forget_user_data_fields(self, record: SystemRecord) -> dict[str, Any]:
        """One edit that drops the user data (read by the installer; it holds the agent's secrets), owner kept."""
        return {"autoinstall_meta": {k: v for k, v in record.autoinstall_meta.items() if k != USER_DATA_KEY}}

    def release_fields(self, record: SystemRecord) -> dict[str, Any]:
        """One edit that gives the system back to the available class, without owner or install."""
        config = self.config
        classes = [c for c in record.mgmt_classes if c not in (config.acquired_mgmt_class, config.available_mgmt_class)]
        return {
            "mgmt_classes": [config.available_mgmt_class, *classes],
            "autoinstall_meta": {k: v for k, v in record.autoinstall_meta.items() if k not in META_KEYS},
            "netboot_enabled": False,
            "comment": "",
        }
