"""Blob upload sessions: start, append chunks, finish with a digest, cancel.

A session's truth is its SQL row and its bytes in the blob store, so it survives a
restart and may continue on another replica. The running hash lives in this process
only as a cache; on a miss the stored bytes are hashed again.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from registry.digest import DEFAULT_ALGORITHM, Digest
from registry.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid, TooManyRequests
from registry.metadata import events, queries
from registry.metadata.database import Database
from registry.metadata.hot import HotQueries
from registry.names import namespace_of
from registry.services.leases import Leases
from registry.services.usage import OverQuota, Quotas
from registry.storage import BlobStore
from registry.storage.base import OffsetMismatch, UploadNotFound, check_upload_id

_HASHER_CACHE = 1024


@dataclass(frozen=True, slots=True)
class Span:
    """Where a client says a chunk goes: Content-Range's first and last byte, and the
    Content-Length it sent (None with a chunked body)."""

    start: int
    end: int
    length: int | None = None


class UploadService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        leases: Leases,
        quotas: Quotas,
        *,
        max_sessions: int = 1000,
    ) -> None:
        self.db = db
        self.store = store
        self.hot = HotQueries(db)
        self.leases = leases
        self.quotas = quotas
        self.max_sessions = max_sessions
        self._hashers: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    async def start(self, repository: str, owner: str) -> str:
        """Open a session for `owner` (an account, or a client address), within its
        limit of open sessions."""
        upload_id = str(uuid.uuid4())
        await self.store.upload_start(upload_id)
        created = await self.hot.write(
            (
                "create_upload",
                {
                    "id": upload_id,
                    "repository": repository,
                    "owner": owner,
                    "limit": self.max_sessions,
                },
            )
        )
        if not created:
            await self.store.upload_cancel(upload_id)
            raise TooManyRequests(
                {"sessions": self.max_sessions},
                message=f"{owner or 'this client'} has {self.max_sessions} upload sessions open "
                "(limits.upload_sessions): finish or cancel some (DELETE on a session), or "
                "wait until `registry purge-uploads` ends the idle ones",
            )
        return upload_id

    async def put_whole(self, repository: str, digest: Digest, chunks: AsyncIterable[bytes]) -> int:
        """A blob whose digest comes with all its bytes (a monolithic POST): written to its
        place as it streams, with no session, since no one could resume one."""
        size = await self._write_direct(digest, chunks)
        await self._link(repository, None, digest, size)
        return size

    async def offset(self, repository: str, upload_id: str) -> int:
        """Bytes received so far in a session of this repository."""
        await self._check(repository, upload_id)
        try:
            return await self.store.upload_size(upload_id)
        except UploadNotFound as exc:
            raise BlobUploadUnknown({"uuid": upload_id}) from exc

    async def append(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        span: Span | None = None,
    ) -> int:
        """Append a chunk; a `span` must start at the current offset and match its body."""
        offset = await self.offset(repository, upload_id)
        size = await self._write(upload_id, offset, _fit(chunks, span, offset))
        await self.hot.write(("touch_upload", {"id": upload_id}))
        return size

    async def finish(
        self,
        repository: str,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterable[bytes] | None = None,
        span: Span | None = None,
    ) -> int:
        """Verify the whole upload against `digest` and make it a blob of the repository.
        A digest mismatch ends the session and stores nothing; a last chunk whose `span`
        disagrees with the session is refused before anything is written, and the session
        stays as it was."""
        size = await self.offset(repository, upload_id)
        if chunks is not None:
            chunks = _fit(chunks, span, size)
        if size == 0 and chunks is not None:
            # All the content comes now, with its digest: straight to the blob's place.
            try:
                size = await self._write_direct(digest, chunks)
            except DigestInvalid:
                await self._discard(upload_id)
                raise
            await self.store.upload_cancel(upload_id)
            await self._link(repository, upload_id, digest, size)
            return size
        if chunks is not None:
            size = await self._write(upload_id, size, chunks)
        if digest.algorithm == DEFAULT_ALGORITHM:
            actual = (await self._hasher_at(upload_id, size)).hexdigest()
        else:
            actual = (await self._hash_stored(upload_id, digest.algorithm)).hexdigest()
        if actual != digest.hex:
            await self._discard(upload_id)
            raise _mismatch(digest, actual)
        await self.leases.keep(digest)
        await self.store.upload_commit(upload_id, digest)
        self._hashers.pop(upload_id, None)
        await self._link(repository, upload_id, digest, size)
        return size

    async def _link(
        self, repository: str, upload_id: str | None, digest: Digest, size: int
    ) -> None:
        namespace = namespace_of(repository)
        steps: list[tuple[str, dict[str, Any]]] = [
            ("add_repository", {"repository": repository, "namespace": namespace}),
            ("add_blob", {"digest": str(digest), "size": size, "lease_end": self.leases.end()}),
            ("lock_quota", {"namespace": namespace}),
        ]
        if upload_id is not None:
            steps.append(("delete_upload", {"id": upload_id}))
        link = {"repository": repository, "namespace": namespace, "digest": str(digest)}
        steps.append(("link_blob", {**link, "size": size}))
        target = events.descriptor(repository, "blobs", str(digest), events.BLOB_TYPE, size)
        pushed = events.event("push", repository=repository, target=target)
        steps.append(("record_linked_event", {**pushed, "digest": str(digest)}))
        if not await self.hot.write(*steps):
            try:
                await self.quotas.refuse_unless_linked(repository, digest, size)
            except OverQuota as refused:
                await self.quotas.record_refusal(repository, refused, target)
                raise

    async def _write_direct(self, digest: Digest, chunks: AsyncIterable[bytes]) -> int:
        hasher = hashlib.new(digest.algorithm)

        async def accept() -> bool:
            if hasher.hexdigest() != digest.hex:
                return False
            await self.leases.keep(digest)  # the bytes are placed right after this
            return True

        size = await self.store.write_blob(digest, chunks, hasher.update, accept)
        if size is None:
            raise _mismatch(digest, hasher.hexdigest())
        return size

    async def cancel(self, repository: str, upload_id: str) -> None:
        await self._check(repository, upload_id)
        await self._discard(upload_id)

    async def in_progress(self) -> int:
        """Upload sessions open, over every process."""
        async with self.db.read() as conn:
            return await queries.upload_count(conn)

    async def purge(self, idle: timedelta) -> int:
        """End sessions idle for longer than `idle`, and remove upload bytes that belong
        to no session (left by a crash) once they are that old. Returns sessions ended."""
        cutoff = datetime.now(UTC) - idle
        async with self.db.read() as conn:
            stale = await queries.uploads_idle_since(conn, cutoff)
        for upload_id in stale:
            await self._discard(upload_id)
        async with self.db.read() as conn:
            active = await queries.upload_ids(conn)
        await self.store.sweep_uploads(cutoff, keep=active)
        return len(stale)

    async def _write(self, upload_id: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Stream chunks into the session at `offset`, hashing them on the way when this
        process holds the hash of what came before. Otherwise (the earlier chunks went to
        another worker or replica) the bytes are hashed once, when the upload is finished,
        rather than all again at every chunk."""
        cached = self._hashers.pop(upload_id, None)
        hasher = cached[1] if cached is not None and cached[0] == offset else None
        if offset == 0:
            hasher = hashlib.new(DEFAULT_ALGORITHM)
        observe = hasher.update if hasher is not None else None
        try:
            size = await self.store.upload_append(upload_id, offset, chunks, observe=observe)
        except OffsetMismatch as exc:
            raise RangeInvalid(
                {"offset": exc.expected}, message=str(exc), headers=_range_header(exc.expected)
            ) from exc
        # (On any failure the hash stays forgotten: the bytes stored may not match it.)
        if hasher is not None:
            self._remember(upload_id, size, hasher)
        return size

    async def _discard(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        await self.hot.write(("delete_upload", {"id": upload_id}))
        await self.store.upload_cancel(upload_id)

    async def _check(self, repository: str, upload_id: str) -> None:
        try:
            check_upload_id(upload_id)
        except UploadNotFound as exc:
            raise BlobUploadUnknown({"uuid": upload_id[:100]}) from exc
        if await self.hot.upload_repository(upload_id) != repository:
            raise BlobUploadUnknown({"uuid": upload_id})

    async def _hasher_at(self, upload_id: str, offset: int) -> Any:
        cached = self._hashers.get(upload_id)
        if cached is not None and cached[0] == offset:
            return cached[1]
        return await self._hash_stored(upload_id, DEFAULT_ALGORITHM)

    async def _hash_stored(self, upload_id: str, algorithm: str) -> Any:
        hasher = hashlib.new(algorithm)
        async for data in self.store.upload_read(upload_id):
            hasher.update(data)
        return hasher

    def _remember(self, upload_id: str, offset: int, hasher: Any) -> None:
        self._hashers[upload_id] = (offset, hasher)
        self._hashers.move_to_end(upload_id)
        while len(self._hashers) > _HASHER_CACHE:
            self._hashers.popitem(last=False)


def _mismatch(digest: Digest, actual: str) -> DigestInvalid:
    return DigestInvalid(
        {"digest": str(digest)},
        message=f"the upload's content has digest {digest.algorithm}:{actual}, not {digest}",
    )


def _range_header(offset: int) -> dict[str, str]:
    return {"Range": f"0-{max(offset - 1, 0)}"}


def _out_of_range(offset: int, message: str) -> RangeInvalid:
    return RangeInvalid({"offset": offset}, message=message, headers=_range_header(offset))


def _fit(chunks: AsyncIterable[bytes], span: Span | None, offset: int) -> AsyncIterable[bytes]:
    """The chunk's bytes, after checking that `span` starts at `offset` and that its
    Content-Length agrees; a body longer or shorter than the span fails as it streams
    (only with a chunked body, which has no Content-Length to check first)."""
    if span is None:
        return chunks
    expected = span.end - span.start + 1
    if span.start != offset:
        raise _out_of_range(
            offset, f"the chunk starts at byte {span.start} but the upload has {offset} bytes"
        )
    if span.length is not None and span.length != expected:
        raise _out_of_range(
            offset,
            f"Content-Range {span.start}-{span.end} is {expected} bytes but Content-Length "
            f"is {span.length}",
        )
    return _exactly(chunks, expected, offset)


async def _exactly(
    chunks: AsyncIterable[bytes], expected: int, offset: int
) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > expected:
            raise _out_of_range(offset, f"the chunk is longer than its Content-Range ({expected})")
        yield chunk
    if received != expected:
        raise _out_of_range(
            offset, f"the chunk has {received} bytes, its Content-Range says {expected}"
        )
