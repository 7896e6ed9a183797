"""Atomic claims of Cobbler systems, built on the storage's one atomic operation.

Cobbler has no compare-and-set, and on Apache mod_dav (Orchestra's storage) only
MKCOL of a new collection is atomic — LOCK and conditional PUT were measured to
let several clients win. So a claim is a marker collection ``claims/<uid>`` in
the storage's shared namespace:

1. ``create_exclusive("claims/<uid>")`` — exactly one claimer wins;
2. the winner re-reads the system from Cobbler and checks it is still available;
3. it writes its ownership to Cobbler (one edit) — the marker stays;
4. release writes the system back to the available class, *then* removes the marker.

So the marker exists whenever the system is owned or being claimed or released.
A claimer that dies between 1 and 3, or a release that dies between its two
steps, leaves a marker on an *available* system: once the marker is older than
the lease (by the storage server's clock) it is stale and is reaped under a
second marker ``claims/<uid>.reap``, re-checking the age under it, so two
reapers can never remove a fresh claim.

All environments sharing a Cobbler server must share this storage (the default
``storage-url`` on the Orchestra server guarantees it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.logger import Logger

from ..interfaces import IFileStorage

__all__ = ["ClaimRegistry", "DEFAULT_LEASE"]

DEFAULT_LEASE = 600.0  # seconds a claim may take before its marker counts as abandoned
_log = Logger()


class ClaimRegistry:
    """Claim markers on one storage; see the module docstring for the protocol."""

    def __init__(self, storage: IFileStorage, lease: float = DEFAULT_LEASE) -> None:
        self._storage = storage
        self.lease = lease

    @staticmethod
    def marker(uid: str) -> str:
        if not uid or "/" in uid or uid.startswith("."):
            raise ValueError(f"not a Cobbler uid: {uid!r}")
        return f"claims/{uid}"

    async def try_claim(self, uid: str) -> bool:
        """True if this caller alone now holds the claim on *uid*."""
        return bool(await self._storage.create_exclusive(self.marker(uid)))

    async def release(self, uid: str) -> None:
        """Drop the claim on *uid* (after Cobbler shows it available again). Idempotent."""
        await self._storage.remove_exclusive(self.marker(uid))

    async def reap_if_stale(self, uid: str, still_available: Callable[[], Awaitable[bool]]) -> bool:
        """Remove an abandoned marker on an available system; True if one was reaped.

        *still_available* re-reads the system from Cobbler: a marker on an owned
        system is never stale, whatever its age.
        """
        marker = self.marker(uid)
        age = await self._storage.exclusive_age(marker)
        if age is None or age < self.lease:
            return False
        reaper = marker + ".reap"
        if not await self._storage.create_exclusive(reaper):
            reaper_age = await self._storage.exclusive_age(reaper)
            if reaper_age is not None and reaper_age >= self.lease:
                # A reaper died holding its marker; clear it and let the next attempt reap.
                await self._storage.remove_exclusive(reaper)
            return False
        try:
            age = await self._storage.exclusive_age(marker)
            if age is None or age < self.lease or not await still_available():
                return False
            await self._storage.remove_exclusive(marker)
            _log.warn("reaped the abandoned claim marker of system {uid} (age {age:.0f} s)", uid=uid, age=age)
            return True
        finally:
            await self._storage.remove_exclusive(reaper)
