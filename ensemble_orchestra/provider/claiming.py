"""Winning systems for a batch of machines: claim markers first, then one re-read to verify them.

Markers (claims.py) are won concurrently, on the storage only; then ONE re-read of every won system
checks that nothing outside the claim protocol (an admin, an old provider) took it meanwhile. A lost
marker on a system the find saw available may be abandoned (its claimer died): it is reaped once
older than the lease, and the claim tried again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..cobbler import CobblerClient, SystemRecord
from ..storage import StorageError
from .claims import ClaimRegistry
from .errors import NoMatchingSystems
from .matching import Constraints
from .ownership import Pool

__all__ = ["Claimer"]

_log = Logger()


class Claimer:
    """Claims available systems of one environment's pool; bounded by the provider's launch limit."""

    def __init__(
        self, client: CobblerClient, claims: ClaimRegistry, pool: Pool, limit: DeferredSemaphore, rng: random.Random
    ) -> None:
        self._client = client
        self._claims = claims
        self._pool = pool
        self._limit = limit
        self._rng = rng

    async def _claim_marker(self, candidates: list[SystemRecord], taken: set[str]) -> SystemRecord:
        """Win the claim marker of one of *candidates*: the smallest first (``Constraints.preference``),
        shuffled among equals so concurrent claimers spread out."""
        order = list(candidates)
        self._rng.shuffle(order)
        order.sort(key=Constraints.preference)  # stable: equals stay shuffled
        for record in order:
            if record.uid in taken:
                continue
            taken.add(record.uid)
            if await self._claims.try_claim(record.uid):
                return record

            async def still_available(name: str = record.name) -> bool:
                return self._pool.is_available(await self._client.get_system(name))

            if await self._claims.reap_if_stale(record.uid, still_available) and await self._claims.try_claim(
                record.uid
            ):
                return record
        raise NoMatchingSystems(
            f"no available system in Cobbler class '{self._pool.config.available_mgmt_class}' matches the"
            f" constraints: all {len(order)} that do are being claimed (by this launch or another);"
            " add systems to the class, relax the constraints or try again"
        )

    async def claim_batch(
        self, found: list[SystemRecord], wanted: Sequence[Constraints]
    ) -> list[SystemRecord | NoMatchingSystems]:
        """A claimed, re-verified system for each of *wanted* (or why there is none), in order.

        On any other failure (or cancellation) every marker this call won is dropped again.
        """
        taken: set[str] = set()
        outcome: list[SystemRecord | NoMatchingSystems | None] = [None] * len(wanted)
        pending = list(range(len(wanted)))
        held: list[SystemRecord] = []  # markers this call holds but has not handed out
        try:
            while pending:

                def claim(i: int) -> Deferred[SystemRecord]:
                    available = [r for r in found if self._pool.is_available(r)]
                    candidates = [r for r in available if wanted[i].matches(r)]
                    if not candidates:  # say why, counting the systems not commissioned yet
                        where = f"Cobbler class '{self._pool.config.available_mgmt_class}'"
                        return fail(NoMatchingSystems(wanted[i].why_none(available, where)))
                    # Bounded like launches: hundreds of simultaneous MKCOLs overrun the storage server.
                    return self._limit.run(lambda: Deferred.fromCoroutine(self._claim_marker(candidates, taken)))

                results = await DeferredList([claim(i) for i in pending], consumeErrors=True)
                won: dict[int, SystemRecord] = {}
                failed = []
                for i, (_, value) in zip(pending, results, strict=True):
                    if not isinstance(value, Failure):
                        won[i] = value
                        held.append(value)
                    elif isinstance(value.value, NoMatchingSystems):
                        outcome[i] = value.value
                    else:
                        failed.append(value)
                if failed:  # only once every marker won in this round is held, so the cleanup drops them all
                    failed[0].raiseException()
                current = await self._client.get_systems([r.name for r in won.values()]) if won else {}
                pending = []
                for i, record in won.items():
                    now = current.get(record.name)
                    held.remove(record)
                    if now and now.uid == record.uid and self._pool.is_available(now) and wanted[i].matches(now):
                        outcome[i] = now
                    else:
                        await self._claims.release(record.uid)
                        pending.append(i)
        except BaseException:
            for record in held + [o for o in outcome if isinstance(o, SystemRecord)]:
                try:
                    await self._claims.release(record.uid)
                except StorageError as error:  # the lease reaps it; the original error is what the user sees
                    _log.warn(
                        "could not drop the claim marker of {system}: {error}", system=record.name, error=str(error)
                    )
            raise
        return [o for o in outcome if o is not None]
