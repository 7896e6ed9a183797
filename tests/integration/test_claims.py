"""The claim protocol on the lab's real Apache mod_dav: one winner, and reaping that never steals."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import pytest_twisted
from twisted.internet import defer

from ensemble_orchestra.lab.testing import RunningLab
from ensemble_orchestra.lab.webdav import webdav_url
from ensemble_orchestra.provider.claims import ClaimRegistry
from ensemble_orchestra.storage import WebDAVStorage, open_webdav_storage

pytestmark = pytest.mark.lab


def _reactor():  # type: ignore[no-untyped-def]
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def storages(lab: RunningLab) -> Iterator[list[WebDAVStorage]]:
    """Twenty independent clients (own connection pools), as twenty claimers would have."""
    made = [
        open_webdav_storage(
            _reactor(),
            webdav_url(lab.spec),
            f"environments/env{i}",
            lab.spec.storage_user,
            lab.spec.storage_password,
            timeout=10,
        )
        for i in range(20)
    ]
    yield made
    for storage in made:
        pytest_twisted.blockon(storage.close())


def _backdate(lab: RunningLab, uid: str, seconds: float) -> None:
    marker = lab.layout.webdav_data / "exclusive" / "claims" / uid
    then = time.time() - seconds
    os.utime(marker, (then, then))


@pytest_twisted.ensureDeferred
async def test_concurrent_claimers_in_different_environments_have_one_winner(storages) -> None:
    """Twenty claimers of one system at once, in five rounds: exactly one wins each round."""
    registries = [ClaimRegistry(s) for s in storages]
    for round_ in range(5):
        uid = f"uid-race-{round_}"
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(r.try_claim(uid)) for r in registries], consumeErrors=True
        )
        assert sum(results) == 1, results
        # Later claimers lose too, until the claim is released.
        assert await registries[0].try_claim(uid) is False
        await registries[results.index(True)].release(uid)
        assert await registries[0].try_claim(uid) is True


@pytest_twisted.ensureDeferred
async def test_a_fresh_marker_is_never_reaped(storages) -> None:
    registry = ClaimRegistry(storages[0], lease=600)
    assert await registry.try_claim("uid-fresh")

    async def available() -> bool:
        return True

    assert await registry.reap_if_stale("uid-fresh", available) is False
    assert await ClaimRegistry(storages[1]).try_claim("uid-fresh") is False


@pytest_twisted.ensureDeferred
async def test_an_abandoned_marker_on_an_available_system_is_reaped_once(storages, lab: RunningLab) -> None:
    """A claimer died after MKCOL: past the lease, concurrent reapers free it once and one new claim wins."""
    assert await ClaimRegistry(storages[0]).try_claim("uid-abandoned")
    _backdate(lab, "uid-abandoned", 3600)

    async def available() -> bool:
        return True

    reapers = [ClaimRegistry(s, lease=600) for s in storages[1:11]]
    reaped = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(r.reap_if_stale("uid-abandoned", available)) for r in reapers]
    )
    assert sum(reaped) == 1
    claims = await defer.gatherResults([defer.Deferred.fromCoroutine(r.try_claim("uid-abandoned")) for r in reapers])
    assert sum(claims) == 1
    # The new claim is fresh: no reaper can take it away.
    again = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(r.reap_if_stale("uid-abandoned", available)) for r in reapers]
    )
    assert sum(again) == 0


@pytest_twisted.ensureDeferred
async def test_an_old_marker_on_an_owned_system_stays(storages, lab: RunningLab) -> None:
    """Age alone never reaps: a long-owned system keeps its marker."""
    registry = ClaimRegistry(storages[0], lease=600)
    assert await registry.try_claim("uid-owned")
    _backdate(lab, "uid-owned", 86400)

    async def owned() -> bool:
        return False

    assert await registry.reap_if_stale("uid-owned", owned) is False
    assert await ClaimRegistry(storages[1]).try_claim("uid-owned") is False


def test_marker_names_are_checked() -> None:
    for bad in ("", "a/b", ".reap"):
        with pytest.raises(ValueError):
            ClaimRegistry.marker(bad)
    assert ClaimRegistry.marker("3892575ed2184c41") == "claims/3892575ed2184c41"
