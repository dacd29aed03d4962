"""Reading, deleting and mounting blobs of a repository."""

from __future__ import annotations

from collections.abc import AsyncIterator

from registry.digest import Digest
from registry.errors import BlobUnknown
from registry.metadata import queries
from registry.metadata.database import Database
from registry.metadata.hot import HotQueries
from registry.services.leases import Leases
from registry.storage import BlobStore


class BlobService:
    def __init__(
        self, db: Database, store: BlobStore, leases: Leases, accel_redirect: str = ""
    ) -> None:
        self.db = db
        self.store = store
        self.hot = HotQueries(db)
        self.leases = leases
        # nginx's internal location for blob files; empty when there is no nginx.
        self.accel_redirect = accel_redirect

    async def size(self, repository: str, digest: Digest) -> int:
        """The blob's size if the repository may serve it (one indexed query)."""
        size = await self.hot.blob_size(repository, str(digest))
        if size is None:
            raise BlobUnknown({"digest": str(digest)})
        return size

    def stream(self, digest: Digest, offset: int, length: int) -> AsyncIterator[bytes]:
        return self.store.read(digest, offset, length)

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
            if not await queries.unlink_blob(conn, repository, str(digest)):
                raise BlobUnknown({"digest": str(digest)})

    async def mount(self, repository: str, digest: Digest, source: str) -> bool:
        """Link a blob of `source` into `repository` and renew its lease; False when
        `source` lacks it."""
        async with self.db.write() as conn:
            size = await queries.blob_size(conn, source, str(digest))
            if size is None:
                return False
            repo_id = await queries.ensure_repository(conn, repository)
            await queries.link_blob(conn, repo_id, str(digest), size, self.leases.end())
        return True
