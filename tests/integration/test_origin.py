"""ensemble-origin: upload — the CLI's own package reaches machines through the storage, anonymously readable.

Against the lab's Apache mod_dav, configured by the server kit's own site config.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from typing import Any

import pytest_twisted
import requests

from ensemble_orchestra import __version__
from ensemble_orchestra.origin import pack_tools, upload_tools


def test_the_archive_is_the_running_package_and_reproducible() -> None:
    """Same files, same bytes: a second bootstrap finds the archive uploaded already; no caches inside."""
    first, second = pack_tools(), pack_tools()
    assert first.data == second.data and first.sha256 == hashlib.sha256(first.data).hexdigest()
    assert first.name == f"ensemble-tools/ensemble-orchestra-{__version__}-{first.sha256[:16]}.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(first.data)) as archive:
        names = archive.getnames()
    assert "ensemble_orchestra/agents/main.py" in names and "ensemble_orchestra/state/client.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest_twisted.ensureDeferred
async def test_uploaded_tools_are_readable_without_credentials_and_nothing_else_is(
    make_provider: Callable[..., Any],
) -> None:
    """Anonymous GET of the tools works (machines have no credential yet); anonymous PUT and reads of the
    provider's state do not."""
    provider = make_provider("origin")
    tools = pack_tools()
    url = await upload_tools(provider.storage, tools)
    again = await upload_tools(provider.storage, tools)
    assert again == url

    fetched = requests.get(url, timeout=10)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == tools.sha256

    assert requests.put(url, data=b"evil", timeout=10).status_code == 401
    assert requests.delete(url, timeout=10).status_code == 401
    await provider.storage.put("provider-state", b"zookeeper-instances: []\n")
    state_url = await provider.storage.get_url("provider-state")
    assert requests.get(state_url, timeout=10).status_code == 401
    await provider.storage.delete("provider-state")


@pytest_twisted.ensureDeferred
async def test_charm_bundles_are_fetched_anonymously_by_the_machine_agents_code(
    make_provider: Callable[..., Any], tmp_path: Any
) -> None:
    """deploy puts a bundle under ensemble-charms/; the machine agent's fetch_bundle GETs it with no credential
    (from the lab's Apache with the kit's config), while anonymous writes there are refused."""
    from pathlib import Path

    from twisted.internet import reactor

    from ensemble_orchestra.agents.deployer import BundleFetchError, fetch_bundle
    from ensemble_orchestra.charm import CharmDirectory, bundle_name, make_bundle

    examples = Path(__file__).resolve().parents[2] / "examples" / "bookworm" / "mysql"
    directory = CharmDirectory.load(examples)
    bundle = make_bundle(directory)
    provider = make_provider("charms")
    name = bundle_name(directory.url("bookworm"), bundle.sha256)
    assert name.startswith("ensemble-charms/")
    await provider.storage.put(name, bundle.data)
    url = await provider.storage.get_url(name)
    data = await fetch_bundle(reactor, url, timeout=10)
    assert hashlib.sha256(data).hexdigest() == bundle.sha256
    assert requests.put(url, data=b"evil", timeout=10).status_code == 401
    try:
        await fetch_bundle(reactor, url + ".missing", timeout=10)
    except BundleFetchError as error:
        assert "404" in str(error)
    else:
        raise AssertionError("a missing bundle was fetched")
    await provider.storage.delete(name)
