"""Reading, deleting and mounting blobs of a repository."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO

from sqlalchemy.ext.asyncio import AsyncConnection

from registry.digest import Digest
from registry.errors import BlobUnknown
from registry.metadata import blobs, events, repositories, statements
from registry.metadata.database import Database
from registry.names import namespace_of
from registry.services.leases import Leases
from registry.services.usage import Quotas
from registry.storage import BlobStore


class BlobService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        leases: Leases,
        quotas: Quotas,
        accel_redirect: str = "",
    ) -> None:
        self.db = db
        self.quotas = quotas
        self.store = store
        self.leases = leases
        # nginx's internal location for blob files; empty when there is no nginx.
        self.accel_redirect = accel_redirect

    async def size(self, repository: str, digest: Digest, *, renew: bool = False) -> int:
        """The blob's size if the repository may serve it (one indexed query). With
        `renew` (a HEAD: a push checking the blob is there), the answer also promises a
        lease (services/leases.py): renewed, in a write, when less than one is left."""
        found = await blobs.size(self.db, repository, str(digest), self.leases.fresh())
        if found is None:
            raise BlobUnknown({"digest": str(digest)})
        size, fresh = found
        if renew and not fresh:
            # The UPDATE waits for a collection holding the row: none changed means the
            # collection removed it, so the repository has no such blob any more.
            renewal = blobs.RENEW_LINKED(
                repository=repository, digest=str(digest), lease_end=self.leases.end()
            )
            if not await statements.write(self.db, renewal):
                raise BlobUnknown({"digest": str(digest)})
        return size

    def stream(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        return self.store.read(digest, offset, length)

    async def open_span(self, digest: Digest, offset: int, length: int) -> BinaryIO | None:
        """The blob's file for the server to send a span of (sendfile), if it is local."""
        return await self.store.open_span(digest, offset, length)

    def redirect_url(self, digest: Digest) -> str | None:
        """Where the client may fetch the bytes itself, if the store serves them directly."""
        return self.store.presigned_url(digest)

    def accel_path(self, digest: Digest) -> str | None:
        """The internal URI nginx serves the blob's file at (X-Accel-Redirect), if any."""
        if not self.accel_redirect or self.store.local_path(digest) is None:
            return None
        return f"{self.accel_redirect}{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"

    async def delete(self, repository: str, digest: Digest) -> None:
        """Unlink the blob from the repository; the bytes stay until garbage collection
        finds nothing else that links them."""
        async with self.db.write() as conn:
            if not await blobs.unlink_blob(conn, repository, str(digest)):
                raise BlobUnknown({"digest": str(digest)})
            await events.record(
                conn, "delete", repository=repository, target={"digest": str(digest)}
            )

    async def mount(self, repository: str, digest: Digest, source: str | None) -> bool:
        """Link a blob of `source` (None: any stored blob, for replication, which knows
        the bytes by their digest) into `repository` and renew its lease; False when
        `source` lacks it (the client then uploads it)."""

        async def link(conn: AsyncConnection) -> bool:
            # The renewal comes first and takes the row, as a HEAD's does.
            size = await blobs.renew_lease(conn, str(digest), self.leases.end(), source)
            if size is None:
                return False
            # Over the quota: the client uploads instead, and that upload is refused.
            if not await self.quotas.allows(conn, namespace_of(repository), str(digest), size):
                return False
            repo_id = await repositories.ensure_repository(conn, repository)
            await blobs.link_blob(conn, repo_id, str(digest), size, self.leases.end())
            target = events.descriptor(
                repository, "blobs", str(digest), events.BLOB_TYPE, size, fromRepository=source
            )
            await events.record(conn, "mount", repository=repository, target=target)
            return True

        return await self.db.transact(link)
