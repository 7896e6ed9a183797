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
