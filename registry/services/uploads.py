"""Blob upload sessions: start, append chunks, finish with a digest, cancel.

A session's truth is its SQL row and its bytes in the blob store, so it survives a
restart and may continue on any worker or replica. The running hash is saved in the row
after each chunk (registry/hashstate.py, migration 0018) and taken up by whichever
process gets the next one, so the closing PUT only finishes it; where it cannot be (no
resumable hash here, another algorithm asked at the PUT, a chunk that failed halfway),
the stored bytes are hashed again at the PUT.

A saved hash must be the hash of exactly the stored bytes it says it covers. Two requests
writing to one session at once could break that: both find the upload at the same
offset, and the bytes stored may be the other's than those hashed, so a PUT could
commit bytes under a digest they do not have. So a request that writes to the session
(a PATCH, or a closing PUT, which also moves its bytes) first takes it in its row
(`claim_upload`): only one at a time. A second one gets 416 while the first goes on. A
PUT that brings all the content to an empty session writes it to the blob's place
itself, hashed on the way, and needs no claim.
The claim names the holding process (registry/process.py). A process renews all the
claims it holds every HEARTBEAT_SECONDS, however slowly their chunks arrive. A claim is
taken over by the next writer when its holder is a process of the same host that no
longer runs (a restart after kill -9 resumes at once), or when it has not been renewed
for `stale_claim_seconds` (a replica elsewhere that died, or hangs). A holder that was
only slow learns at its next heartbeat that the claim is gone, and stops its write at
the next chunk; a taken-over claim saves no hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from registry.digest import DEFAULT_ALGORITHM, Digest
from registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    TooManyRequests,
)
from registry.hashstate import Resumable, resumable
from registry.metadata import blobs, events, statements, uploads
from registry.metadata.database import Database
from registry.metadata.models import now
from registry.process import gone, identity
from registry.services.leases import Leases
from registry.services.usage import OverQuota, Quotas
from registry.storage import BlobStore
from registry.storage.base import OffsetMismatch, UploadNotFound

log = logging.getLogger("registry.uploads")

# A process renews the claims it holds this often; one not renewed for STALE_CLAIM_SECONDS
# (four beats missed) is a dead or hung process's, and the next writer takes it over.
HEARTBEAT_SECONDS = 2.0
STALE_CLAIM_SECONDS = 8.0


@dataclass(frozen=True, slots=True)
class Span:
    """Where a client says a chunk goes: Content-Range's first and last byte, and the
    Content-Length it sent (None with a chunked body)."""

    start: int
    end: int
    length: int | None = None


@dataclass(slots=True)
class _Claim:
    """A request's hold on a session, and the hash of its first `hashed` bytes."""

    upload_id: str
    writer: str
    algorithm: str
    hashed: int | None
    hasher: Resumable | None
    ended: bool = False  # the session is gone: nothing to release
    lost: bool = False  # taken over by another writer: this one stops

    def hasher_at(self, offset: int, algorithm: str) -> Resumable | None:
        if self.hashed == offset and self.algorithm == algorithm:
            return self.hasher
        return None


class UploadService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        leases: Leases,
        quotas: Quotas,
        *,
        max_sessions: int = 1000,
        stale_claim_seconds: float = STALE_CLAIM_SECONDS,
    ) -> None:
        self.db = db
        self.store = store
        self.leases = leases
        self.quotas = quotas
        self.max_sessions = max_sessions
        self.stale_claim_seconds = stale_claim_seconds
        self.heartbeat_seconds = HEARTBEAT_SECONDS
        self._held: dict[str, _Claim] = {}  # by writer: the claims this process holds
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self, repository: str, owner: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
        """Open a session for `owner` (an account, or a client address), within its
        limit of open sessions; its chunks are hashed in `algorithm` as they come."""
        upload_id = str(uuid.uuid4())
        await self.store.upload_start(upload_id)
        created = await statements.write(
            self.db,
            uploads.CREATE(
                id=upload_id,
                repository=repository,
                owner=owner,
                algorithm=algorithm,
                limit=self.max_sessions,
            ),
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
        return await self._size(upload_id)

    async def _size(self, upload_id: str) -> int:
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
        async with self._claimed(repository, upload_id) as claim:
            offset = await self._size(upload_id)
            return await self._write(claim, offset, _fit(chunks, span, offset))

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
        if chunks is not None and await self.offset(repository, upload_id) == 0:
            # All the content comes now, with its digest: straight to the blob's place,
            # hashed as it is written. Nothing of the session is used, so this needs no
            # claim (the small pushes' path): a chunk written to the session meanwhile is
            # dropped with it.
            try:
                size = await self._write_direct(digest, _fit(chunks, span, 0))
            except DigestInvalid:
                await self._end(upload_id)
                raise
            await self.store.upload_cancel(upload_id)
            await self._link(repository, upload_id, digest, size)
            return size
        async with self._claimed(repository, upload_id) as claim:
            size = await self._size(upload_id)
            if chunks is not None:
                size = await self._write(claim, size, _fit(chunks, span, size))
            hasher = claim.hasher_at(size, digest.algorithm)
            if hasher is None:
                hasher = await self._hash_stored(upload_id, digest.algorithm)
            actual = hasher.hexdigest()
            if actual != digest.hex:
                await self._discard(claim)
                raise _mismatch(digest, actual)
            await self.leases.keep(digest)
            await self.store.upload_commit(upload_id, digest)
            claim.ended = True  # _link deletes the session's row with the link
            await self._link(repository, upload_id, digest, size)
            return size

    async def _link(
        self, repository: str, upload_id: str | None, digest: Digest, size: int
    ) -> None:
        target = events.descriptor(repository, "blobs", str(digest), events.BLOB_TYPE, size)
        pushed = events.event("push", repository=repository, target=target)
        if not await blobs.link_pushed(
            self.db, repository, str(digest), size, self.leases.end(), upload_id, pushed
        ):
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
        await self._end(upload_id)

    async def in_progress(self) -> int:
        """Upload sessions open, over every process."""
        async with self.db.read() as conn:
            return await uploads.upload_count(conn)

    async def purge(self, idle: timedelta) -> int:
        """End sessions idle for longer than `idle`, and remove upload bytes that belong
        to no session (left by a crash) once they are that old. Returns sessions ended."""
        cutoff = datetime.now(UTC) - idle
        async with self.db.read() as conn:
            stale = await uploads.uploads_idle_since(conn, cutoff)
        for upload_id in stale:
            await self._end(upload_id)
        async with self.db.read() as conn:
            active = await uploads.upload_ids(conn)
        await self.store.sweep_uploads(cutoff, keep=active)
        return len(stale)

    @contextlib.asynccontextmanager
    async def _claimed(self, repository: str, upload_id: str) -> AsyncIterator[_Claim]:
        """The session, held by this request until the block ends (the module's doc);
        the hash it leaves is saved as it releases the session. An id no session has
        (a malformed one too: the store checks its form, once, where it becomes a path)
        matches no row."""
        writer = f"{identity()}/{uuid.uuid4().hex}"
        stale = now() - timedelta(seconds=self.stale_claim_seconds)
        keys = {"id": upload_id, "repository": repository, "writer": writer}
        rows = await statements.write_returning(self.db, uploads.CLAIM(**keys, stale=stale))
        if not rows:
            found = await uploads.holder(self.db, upload_id)
            if found is None or found[0] != repository:
                raise BlobUploadUnknown({"uuid": upload_id[:100]})
            holder = found[1]
            if holder is not None and gone(holder.rpartition("/")[0]):
                # Its process ended (a kill -9, a crash) without releasing it: at once.
                log.info("upload %s: taking over the claim of %s, which ended", upload_id, holder)
                rows = await statements.write_returning(
                    self.db, uploads.TAKE(**keys, holder=holder)
                )
            if not rows:
                offset = await self._size(upload_id)
                error = _out_of_range(
                    offset,
                    f"another request is writing to upload {upload_id}: send a session's "
                    "chunks one at a time, each once the one before has been answered",
                )
                error.headers["Retry-After"] = "1"
                raise error
        algorithm, hashed, state = rows[0]
        hasher = resumable.restore(algorithm, bytes(state)) if state is not None else None
        claim = _Claim(upload_id, writer, algorithm, hashed if hasher is not None else None, hasher)
        self._hold(claim)
        try:
            yield claim
        finally:
            self._held.pop(writer, None)
            if not claim.ended and not claim.lost:
                keep = claim.hasher is not None and claim.hashed is not None
                await statements.write(
                    self.db,
                    uploads.RELEASE(
                        id=upload_id,
                        writer=writer,
                        hashed=claim.hashed if keep else None,
                        hash_state=claim.hasher.state() if keep and claim.hasher else None,
                    ),
                )

    async def _write(self, claim: _Claim, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Stream chunks into the session at `offset`, hashing them on the way from the
        saved hash of what came before (or from nothing at offset 0)."""
        hasher = (
            resumable.new(claim.algorithm)
            if offset == 0
            else claim.hasher_at(offset, claim.algorithm)
        )
        # On any failure no hash is kept: the bytes stored may not match it.
        claim.hashed, claim.hasher = None, None
        observe = hasher.update if hasher is not None else None
        try:
            size = await self.store.upload_append(
                claim.upload_id, offset, self._renewing(claim, chunks), observe=observe
            )
        except OffsetMismatch as exc:
            raise RangeInvalid(
                {"offset": exc.expected}, message=str(exc), headers=_range_header(exc.expected)
            ) from exc
        if hasher is not None:
            claim.hashed, claim.hasher = size, hasher
        return size

    async def _renewing(self, claim: _Claim, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """The chunks, until the claim is found taken over (the heartbeat tells)."""
        async for chunk in chunks:
            if claim.lost:
                raise BlobUploadInvalid(
                    {"uuid": claim.upload_id},
                    message=f"upload {claim.upload_id} was taken over by another request while "
                    f"this process did not renew its claim for {self.stale_claim_seconds:g} s; "
                    "start the upload again",
                )
            yield chunk

    def _hold(self, claim: _Claim) -> None:
        self._held[claim.writer] = claim
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        """Renew every claim this process holds, every heartbeat, while it holds any: one
        statement, whatever their number. A claim not renewed was taken over."""
        while self._held:
            await asyncio.sleep(self.heartbeat_seconds)
            writers = list(self._held)
            if not writers:
                return
            try:
                async with self.db.write() as conn:
                    renewed = await uploads.renew_upload_claims(conn, writers, now())
            except Exception:  # the database is away: the next beat tries again
                log.warning("could not renew %d upload claims", len(writers), exc_info=True)
                continue
            for writer in set(writers) - renewed:
                if (claim := self._held.get(writer)) is not None:
                    claim.lost = True

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    async def _discard(self, claim: _Claim) -> None:
        await self._end(claim.upload_id)
        claim.ended = True

    async def _end(self, upload_id: str) -> None:
        await statements.write(self.db, uploads.DELETE(id=upload_id))
        await self.store.upload_cancel(upload_id)

    async def _check(self, repository: str, upload_id: str) -> None:
        """The session is this repository's (as _claimed, an id of no session has no row)."""
        found = await uploads.holder(self.db, upload_id)
        if found is None or found[0] != repository:
            raise BlobUploadUnknown({"uuid": upload_id[:100]})

    async def _hash_stored(self, upload_id: str, algorithm: str) -> Any:
        hasher = hashlib.new(algorithm)
        async for data in self.store.upload_read(upload_id):
            hasher.update(data)
        return hasher


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
