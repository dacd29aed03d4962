"""Single-flight blob fetches: however many clients, workers and replicas ask for a blob the
mirror lacks, one of them fetches it from the upstream and every client streams it as it
arrives.

The fetcher claims the blob in the database (a row in `blob_fetches`), then writes the
upstream's bytes into an upload session of the shared blob store, hashing them, and reports
its progress in the row. Readers serve the session's bytes up to the reported progress: in
the fetcher's own process they are woken at each append, elsewhere they poll the row. The
last byte is held back until the digest is verified and the blob committed, so no client
ever receives all of a corrupt blob; a failed fetch leaves neither blob nor upload behind.
The fetch runs as its own task, so it goes on for the others when the client that started
it disconnects. A fetcher that dies stops its heartbeat, and the next asker takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from registry.digest import Digest
from registry.errors import RegistryError, Unavailable
from registry.metadata import blobs
from registry.metadata import mirror as q
from registry.metadata.database import Database
from registry.metadata.models import now
from registry.parse import content_length
from registry.proxy.upstream import UpstreamError
from registry.services.leases import Leases
from registry.storage import BlobStore
from registry.storage.base import StorageError

log = logging.getLogger("registry.mirror")

Source = Callable[[], AbstractAsyncContextManager[httpx.Response]]
# Called once the blob is stored, with its size: records it in the index (an upsert,
# safe because the blob was just stored or its lease just renewed).
Keep = Callable[[int], Awaitable[None]]

# How often the fetcher writes its progress and heartbeat, and readers elsewhere poll it.
REPORT_SECONDS = 0.25
# A fetch whose heartbeat is older than this is taken to be dead.
STALE_SECONDS = 30


class FetchFailed(Unavailable):
    """The upstream's bytes could not be fetched or did not match the digest."""


@dataclass
class _Fetch:
    """A fetch running in this process, as its readers here see it."""

    upload_id: str
    size: int | None = None
    written: int = 0
    done: bool = False
    error: Exception | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    size: int | None
    written: int
    done: bool
    error: Exception | None


class BlobFetches:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        leases: Leases,
        ended: Callable[[int | Exception], None] = lambda _: None,
    ) -> None:
        self.db = db
        self.store = store
        self.leases = leases
        # Told how each fetch of this process ended: the size, or why it failed.
        self.ended = ended
        self._local: dict[str, _Fetch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(
        self, digest: Digest, source: Source, keep: Keep
    ) -> tuple[int, AsyncIterator[bytes]]:
        """The blob's size and a stream of its bytes, fetched through `source` unless a
        fetch is already under way here or elsewhere. Errors that come before any byte
        (the upstream refused, is down, lacks the blob) raise here."""
        key = str(digest)
        local = self._local.get(key)
        if local is None:
            upload_id = str(uuid.uuid4())
            async with self.db.write() as conn:
                # A fetch may have ended since the caller looked: then the blob is here,
                # and renewing its lease (taking its row) keeps it for `keep` to link.
                stored = await blobs.renew_lease(conn, key, self.leases.end())
                if stored is None:
                    stale = now() - timedelta(seconds=STALE_SECONDS)
                    current = await q.claim_fetch(conn, key, upload_id, stale)
            if stored is not None:
                await keep(stored)
                return stored, self.store.read(digest)
            if current is None:
                local = self._start(digest, upload_id, source, keep)
            else:
                log.info("joining the fetch of %s under way elsewhere", key)
        if local is not None:
            snapshot = self._local_snapshots(local)
            upload_id = local.upload_id
        else:
            snapshot = self._remote_snapshots(key, current or "")
            upload_id = current or ""
        first = await anext(snapshot)
        while first.size is None and not first.done and first.error is None:
            first = await anext(snapshot)
        if first.error is not None:
            raise first.error
        size = first.size if first.size is not None else first.written
        return size, self._read(digest, upload_id, size, first, snapshot, keep)

    def _start(self, digest: Digest, upload_id: str, source: Source, keep: Keep) -> _Fetch:
        fetch = _Fetch(upload_id)
        self._local[str(digest)] = fetch
        task = asyncio.create_task(self._run(digest, fetch, source, keep))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fetch

    async def _run(self, digest: Digest, fetch: _Fetch, source: Source, keep: Keep) -> None:
        key = str(digest)
        reporter = asyncio.create_task(self._report(key, fetch))
        try:
            await self.store.upload_start(fetch.upload_id)
            size = await self._download(digest, fetch, source)
            await self.leases.keep(digest)
            await self.store.upload_commit(fetch.upload_id, digest)
            await keep(size)
            fetch.size = size
            fetch.done = True
            self.ended(size)
            log.info("fetched %s (%d bytes) from the upstream", key, size)
        except BaseException as exc:
            # The mirror turns an UpstreamError into the spec's error for its status.
            error = exc if isinstance(exc, RegistryError | UpstreamError) else _failure(key, exc)
            log.warning("fetch of %s failed: %s", key, error)
            self.ended(error)
            # Clean up before readers learn of the failure: once a client sees the error,
            # nothing of the fetch is left.
            with contextlib.suppress(StorageError):
                await self.store.upload_cancel(fetch.upload_id)
            fetch.error = error
            if not isinstance(exc, Exception):
                raise  # cancelled: the registry is stopping
        finally:
            reporter.cancel()
            self._local.pop(key, None)
            with contextlib.suppress(Exception):
                async with self.db.write() as conn:
                    await q.end_fetch(conn, key, fetch.upload_id)
            fetch.notify()

    async def _download(self, digest: Digest, fetch: _Fetch, source: Source) -> int:
        hasher = hashlib.new(digest.algorithm)
        unit = self.store.append_unit
        received = 0
        # One append in flight while the next batch arrives: the network, the disk and
        # the hash (done by the store's writer thread) work at the same time.
        writing: asyncio.Task[None] | None = None
        try:
            async with source() as response:
                fetch.size = content_length(response.headers)
                fetch.notify()
                batch: list[bytes] = []
                batched = 0
                # Raw: a blob's bytes as sent, with no content decoding.
                async for piece in response.aiter_raw():
                    received += len(piece)
                    if fetch.size is not None and received > fetch.size:
                        raise FetchFailed(message=f"upstream sent more than {fetch.size} bytes")
                    batch.append(piece)
                    batched += len(piece)
                    if batched >= unit:
                        if writing is not None:
                            await writing
                        writing = asyncio.create_task(self._append(fetch, batch, hasher))
                        batch, batched = [], 0
                if writing is not None:
                    await writing
                await self._append(fetch, batch, hasher)
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
                with contextlib.suppress(BaseException):
                    await writing
        if fetch.size is not None and fetch.written != fetch.size:
            raise FetchFailed(
                message=f"upstream sent {fetch.written} of {fetch.size} bytes of {digest}"
            )
        actual = f"{digest.algorithm}:{hasher.hexdigest()}"
        if actual != str(digest):
            raise FetchFailed(
                {"digest": str(digest)},
                message=f"upstream sent bytes with digest {actual} for {digest}; nothing "
                "was cached",
            )
        return fetch.written

    async def _append(self, fetch: _Fetch, pieces: list[bytes], hasher: Any) -> None:
        if not pieces:
            return

        async def once() -> AsyncIterator[bytes]:
            yield b"".join(pieces)

        fetch.written = await self.store.upload_append(
            fetch.upload_id, fetch.written, once(), hasher.update
        )
        fetch.notify()

    async def _report(self, key: str, fetch: _Fetch) -> None:
        """Write progress and heartbeat for readers elsewhere, until cancelled."""
        while True:
            async with self.db.write() as conn:
                ours = await q.report_fetch(conn, key, fetch.upload_id, fetch.size, fetch.written)
            if not ours:
                log.warning("the fetch of %s was taken over by another replica", key)
                return
            await asyncio.sleep(REPORT_SECONDS)

    async def _local_snapshots(self, fetch: _Fetch) -> AsyncIterator[_Snapshot]:
        while True:
            changed = fetch.changed
            snapshot = _Snapshot(fetch.size, fetch.written, fetch.done, fetch.error)
            yield snapshot
            if snapshot.done or snapshot.error is not None:
                return
            await changed.wait()

    async def _remote_snapshots(self, key: str, upload_id: str) -> AsyncIterator[_Snapshot]:
        while True:
            async with self.db.read() as conn:
                row = await q.fetch_row(conn, key)
                stored = None if row else await q.stored_blob_size(conn, key)
            if row is not None and row.upload_id == upload_id:
                yield _Snapshot(row.size, row.written, False, None)
            elif stored is not None and row is None:
                yield _Snapshot(stored, stored, True, None)
                return
            else:
                yield _Snapshot(
                    None, 0, False, FetchFailed(message=f"the fetch of {key} failed elsewhere")
                )
                return
            await asyncio.sleep(REPORT_SECONDS)

    async def _read(
        self,
        digest: Digest,
        upload_id: str,
        size: int,
        first: _Snapshot,
        snapshots: AsyncIterator[_Snapshot],
        keep: Keep,
    ) -> AsyncIterator[bytes]:
        state = first
        sent = 0
        while True:
            if state.error is not None:
                raise state.error
            if state.done:
                await keep(size)
                async for piece in self.store.read(digest, sent):
                    yield piece
                return
            # Everything written but the last byte, until the digest is verified.
            ready = min(state.written, size - 1)
            if ready > sent:
                try:
                    async for piece in self.store.upload_read(upload_id, sent, ready - sent):
                        sent += len(piece)
                        yield piece
                except StorageError:
                    # Committed (or abandoned) while being read: the next state tells.
                    pass
            state = await anext(snapshots)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _failure(key: str, exc: BaseException) -> RegistryError:
    if isinstance(exc, httpx.HTTPError):
        return FetchFailed({"digest": key}, message=f"upstream stopped sending {key}: {exc}")
    if isinstance(exc, StorageError):
        return FetchFailed({"digest": key}, message=f"could not store {key}: {exc}")
    if isinstance(exc, asyncio.CancelledError):
        return FetchFailed({"digest": key}, message=f"fetch of {key} stopped: shutting down")
    return FetchFailed({"digest": key}, message=f"fetch of {key} failed: {exc!r}")
