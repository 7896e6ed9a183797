"""Machine providers; the orchestra provider is registered as entry point ``ensemble.providers:orchestra``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .orchestra import OrchestraProvider

__all__ = ["create_orchestra_provider"]


def create_orchestra_provider(
    environment: str,
    raw_config: Mapping[str, Any],
    reactor: Any,
    source: Path | None = None,
    *,
    on_machine: bool = False,
) -> OrchestraProvider:
    """Validate an orchestra environment and build its provider (Cobbler client + WebDAV storage)."""
    from ..cobbler import CobblerClient
    from ..config import parse_orchestra
    from ..storage import open_webdav_storage
    from .orchestra import OrchestraProvider

    config = parse_orchestra(environment, raw_config, source, on_machine=on_machine)
    client = CobblerClient(
        config.cobbler_api_url,
        config.orchestra_user,
        config.orchestra_pass,
        reactor,
        ca_bundle=config.ca_bundle,
        max_concurrency=max(8, config.launch_concurrency * 2),
        power_timeout=config.power_timeout,  # one synchronous power call (Cobbler retries the agent 3 times)
    )
    storage = open_webdav_storage(
        reactor,
        config.storage_url,
        f"environments/{environment}",
        config.storage_user,
        config.storage_pass,
        ca_bundle=config.ca_bundle,
    )
    return OrchestraProvider(config, reactor, client, storage)
