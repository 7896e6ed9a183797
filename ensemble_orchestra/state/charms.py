"""``/charms``: the charms the environment's services run, as published by ``deploy``.

A node per charm id holds what a machine agent needs to fetch and check the bundle (its storage name, the URL
machines GET it from, its sha256) and what the CLI and the unit agent need without the bundle (metadata and the
config schema, as plain documents). A charm id is published once: the same id with another sha256 is refused,
so every unit of a service runs the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .client import StateClient
from .errors import StateNotFoundError
from .layout import charm_path, dump_document, load_document

__all__ = ["CharmRecord", "read_charm", "read_charm_if_there"]


@dataclass(frozen=True)
class CharmRecord:
    id: str  # "local:bookworm/mysql-3"
    sha256: str
    bundle: str  # the storage name of the bundle
    url: str  # where machines GET it (anonymous, checked against sha256)
    metadata: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the config schema (config.yaml's options)

    def to_document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "bundle": self.bundle,
            "url": self.url,
            "metadata": self.metadata,
            "config": self.config,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> CharmRecord:
        return cls(
            str(document["id"]),
            str(document["sha256"]),
            str(document["bundle"]),
            str(document["url"]),
            dict(document.get("metadata") or {}),
            dict(document.get("config") or {}),
        )

    def encode(self) -> bytes:
        return dump_document(self.to_document())


async def read_charm(client: StateClient, charm_id: str) -> CharmRecord:
    path = charm_path(charm_id)
    data, _ = await client.get(path)
    return CharmRecord.from_document(load_document(data, path))


async def read_charm_if_there(client: StateClient, charm_id: str) -> CharmRecord | None:
    try:
        return await read_charm(client, charm_id)
    except StateNotFoundError:
        return None
