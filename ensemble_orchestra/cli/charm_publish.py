"""Publishing a local charm to the environment: its bundle into the storage, its record into ``/charms``.

A charm id names one content: publishing the same id with the same bundle is nothing to do (deploying a second
service of it uploads nothing); the same id with another bundle is refused, unless ``deploy -u`` asked to bump
the charm's revision, which then becomes one above every revision of it the environment has seen.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from ..charm import CharmDirectory, CharmError, CharmURL, bundle_name, make_bundle
from ..state.acl import Identities
from ..state.charms import CharmRecord, read_charm, read_charm_if_there
from ..state.client import StateClient
from ..state.errors import StateNodeExistsError
from ..state.layout import CHARMS, charm_path
from .progress import Progress

__all__ = ["publish_charm"]


async def publish_charm(
    client: StateClient,
    identities: Identities,
    storage: Any,
    directory: CharmDirectory,
    series: str,
    upgrade: bool,
    progress: Progress,
) -> CharmRecord:
    """The record of *directory*'s charm in the environment, published if it was not."""
    url = directory.url(series)
    bundle = make_bundle(directory)
    existing = await read_charm_if_there(client, str(url))
    if existing is not None:
        if existing.sha256 == bundle.sha256:
            return existing
        if not upgrade:
            raise CharmError(
                f"charm {url} is already in the environment with other content (sha256 {existing.sha256[:12]}...,"
                f" yours {bundle.sha256[:12]}...): raise {directory.path / 'revision'} or deploy with -u"
            )
        revision = max(directory.revision, await _highest_revision(client, url)) + 1
        progress("bumping the charm's revision", f"{url} -> {revision}")
        directory = directory.set_revision(revision)
        return await publish_charm(client, identities, storage, directory, series, False, progress)
    name = bundle_name(url, bundle.sha256)
    progress("uploading the charm", f"{url} ({len(bundle.data) // 1024 + 1} KiB)")
    await storage.put(name, bundle.data)
    record = CharmRecord(
        str(url),
        bundle.sha256,
        name,
        await storage.get_url(name),
        directory.metadata.to_dict(),
        directory.config.to_dict(),
    )
    try:
        await client.create(charm_path(record.id), record.encode(), acl=identities.shared())
    except StateNodeExistsError:  # another deploy published it meanwhile
        other = await read_charm(client, record.id)
        if other.sha256 != record.sha256:
            raise CharmError(f"charm {url} was published with other content meanwhile: deploy again with -u") from None
        return other
    return record


async def _highest_revision(client: StateClient, url: CharmURL) -> int:
    highest = -1
    for child in await client.get_children(CHARMS):
        try:
            other = CharmURL.parse(unquote(child), url.series)
        except CharmError:
            continue
        same = (other.schema, other.series, other.name) == (url.schema, url.series, url.name)
        if same and other.revision is not None:
            highest = max(highest, other.revision)
    return highest
