"""Blob leases: how long a blob is kept after a client touched it, referenced or not, and
the protocol that makes garbage collection safe against concurrent pushes.

A push sends its blobs (or learns with a HEAD or a mount that they are there) and PUTs
the manifest that references them later. Garbage collection (services/gc.py) deletes a
blob only if, in the transaction that removes its row, nothing references it and its
lease has ended. So:

- every 2xx a push gets for a blob (upload, mount, HEAD) leaves the blob leased for at
  least `gc.blob_lease_seconds` more: the lease is renewed, to twice that, whenever less
  than one lease is left, so one write covers every check of a whole lease;
- the renewal takes the blob's row (an UPDATE) before it answers, so it either comes
  after a collection that removed the row, and then sees no row and answers 404, or
  before, and then the collection sees the lease and keeps the blob;
- the manifest PUT reads the rows of its blobs FOR SHARE in the transaction that stores
  its references (services/manifests.py), so a collection cannot remove a row between
  the check and the references: once they commit, the blob is referenced.
- a pass judges leases at the moment it started, so a request that came within its
  lease and then waited for the pass (SQLite's writer lock, a row lock) past the end of
  that lease still finds its blobs; the next pass sees what the request committed.

Bytes are shared by every upload of the same digest, so a client placing bytes must not
race the deletion of the same path either: `keep()` comes first. A collection removes the
row and leaves a tombstone in one transaction, deletes the bytes, then the tombstone.
`keep()` waits while there is a tombstone, and otherwise renews the lease of a row that
exists, so no collection will delete the bytes being placed for as long as the lease
lasts. With no row and no tombstone there is nothing any collection could delete.
`keep()` remembers when a lease it read (or made) ends, and answers without asking
while a whole lease of it is left, as asking would, for a minute at most: that bounds
how long a lease cut short elsewhere (a replica with a shorter `gc.blob_lease_seconds`)
goes unseen. A tag pushed again and again read its manifest's lease each time: on
PostgreSQL, one of a push's two round trips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from registry.digest import Digest
from registry.errors import Unavailable
from registry.metadata import blobs
from registry.metadata import gc as q
from registry.metadata.database import Database
from registry.metadata.models import now

log = logging.getLogger("registry.gc")

# How long `keep()` waits for a collection to finish deleting a digest's bytes. Normally
# milliseconds; a pass that died midway leaves tombstones that the next pass clears
# (services/gc.py, TOMBSTONE_SECONDS).
WAIT_SECONDS = 30.0
_POLL_SECONDS = 0.05


# How long keep() answers from a lease it read or made, at most (the docstring above).
KEPT_SECONDS = 60.0
_KEPT_DIGESTS = 10_000


class Leases:
    def __init__(self, db: Database, seconds: float) -> None:
        self.db = db
        self.seconds = seconds
        # Digest -> until when (monotonic) keep() need not ask.
        self._kept: dict[str, float] = {}

    def end(self) -> datetime:
        """When a lease taken or renewed now ends: twice the lease, so that a renewal is
        due only once a lease has gone by."""
        return now() + timedelta(seconds=2 * self.seconds)

    def fresh(self) -> datetime:
        """A lease ending after this needs no renewal: it still has a whole lease."""
        return now() + timedelta(seconds=self.seconds)

    async def keep(self, digest: Digest) -> None:
        """Before bytes are placed at `digest`'s path: make sure no collection deletes
        them, waiting for one that is deleting that path now. The bytes must be placed
        within a lease (a rename, or one S3 copy, takes far less)."""
        key = str(digest)
        if self._kept.get(key, 0.0) > time.monotonic():
            return
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            leased_until, tombstoned = await blobs.lease(self.db, key)
            if leased_until is None and not tombstoned:
                return  # no row: nothing to collect
            if not tombstoned and leased_until is not None and leased_until >= self.fresh():
                self._good_until(key, leased_until)
                return
            if not tombstoned:
                until = self.end()

                async def renew(conn: AsyncConnection, until: datetime = until) -> bool:
                    await q.renew_lease(conn, key, until)
                    # After the renewal, which waited for any pass holding the row: a
                    # tombstone means that pass removed it.
                    return await q.tombstoned(conn, key)

                if not await self.db.transact(renew):
                    self._good_until(key, until)
                    return
            if time.monotonic() > deadline:
                raise Unavailable(
                    {"digest": key},
                    message=f"garbage collection is still deleting the bytes of {key} after "
                    f"{WAIT_SECONDS:g} s; retry the upload",
                    headers={"Retry-After": "10"},
                )
            log.debug("waiting for garbage collection to finish deleting %s", key)
            await asyncio.sleep(_POLL_SECONDS)

    def _good_until(self, key: str, leased_until: datetime) -> None:
        """`key`'s lease ends at `leased_until` or later: until a whole lease before
        that (at most KEPT_SECONDS), keep() may answer as it would after asking."""
        seconds = (leased_until - self.fresh()).total_seconds()
        if len(self._kept) >= _KEPT_DIGESTS:
            self._kept.clear()
        self._kept[key] = time.monotonic() + min(KEPT_SECONDS, seconds)
