"""Blobs as files under one root folder; writes go through a temporary name and an
atomic rename, so a reader never sees half a blob."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import shutil
import uuid
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Sequence,
)
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, ParamSpec, TypeVar

from anyio import to_thread

from registry.digest import Digest
from registry.metrics import measured_store
from registry.storage.base import (
    BlobNotFound,
    BlobStore,
    OffsetMismatch,
    StorageError,
    StorageFull,
    UploadNotFound,
    blob_key,
    check_upload_id,
    digest_of_key,
)

# Disk writes and reads happen in worker threads in pieces of this size: large enough that
# the thread hop is cheap next to the I/O, small enough to keep memory bounded.
IO_CHUNK = 1024 * 1024
SYNC_EVERY = 16 * IO_CHUNK
# Pieces a write may have in flight behind the network: enough to ride out its bursts,
# few enough that memory stays bounded (IN_FLIGHT x IO_CHUNK per transfer).
IN_FLIGHT = 4


P = ParamSpec("P")
T = TypeVar("T")
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _disk_errors(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """An OSError anywhere in a write (a full disk in the middle of an fsync or a close,
    a folder that cannot be made) becomes StorageError, StorageFull for no room."""

    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except StorageError:
            raise
        except OSError as exc:
            what = method.__name__.replace("_", " ")
            if exc.errno in _FULL:
                raise StorageFull(f"{what}: {exc.strerror}") from exc
            raise StorageError(f"{what}: {exc}") from exc

    return run


@measured_store("filesystem")
class FilesystemStore(BlobStore):
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "uploads").mkdir(parents=True, exist_ok=True)

    async def check(self) -> None:
        def writable() -> None:
            for folder in (self.root / "blobs", self.root / "uploads"):
                if not os.access(folder, os.W_OK | os.X_OK):
                    raise StorageError(f"{folder} is missing or not writable by this user")

        await to_thread.run_sync(writable)

    def _blob(self, digest: Digest) -> Path:
        return self.root / blob_key(digest)

    def _upload(self, upload_id: str) -> Path:
        return self.root / "uploads" / check_upload_id(upload_id) / "data"

    def local_path(self, digest: Digest) -> Path | None:
        return self._blob(digest)

    async def stat(self, digest: Digest) -> int | None:
        try:
            return (await to_thread.run_sync(os.stat, self._blob(digest))).st_size
        except FileNotFoundError:
            return None

    def read(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return _read_file(self._blob(digest), offset, length, BlobNotFound(str(digest)))

    async def open_span(self, digest: Digest, offset: int, length: int) -> BinaryIO:
        path = self._blob(digest)

        def opened() -> BinaryIO:
            f = open(path, "rb", buffering=0)  # noqa: SIM115 (the response closes it)
            if (size := os.fstat(f.fileno()).st_size) < offset + length:
                f.close()
                raise StorageError(f"{path} holds {size} bytes, fewer than the index says")
            return f

        try:
            return await to_thread.run_sync(opened)
        except FileNotFoundError as exc:
            raise BlobNotFound(str(digest)) from exc

    async def read_bytes(self, digest: Digest) -> bytes:
        try:
            return await to_thread.run_sync(self._blob(digest).read_bytes)
        except FileNotFoundError as exc:
            raise BlobNotFound(str(digest)) from exc

    @_disk_errors
    async def put_bytes(self, digest: Digest, data: bytes) -> None:
        await to_thread.run_sync(self._put_bytes, digest, data)

    def _put_bytes(self, digest: Digest, data: bytes) -> None:
        target = self._blob(digest)
        if target.exists():
            return
        tmp = self.root / "uploads" / f"put-{uuid.uuid4()}"
        with open(tmp, "wb") as f:
            f.write(data)
            self._sync(f.fileno())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)

    @_disk_errors
    async def write_blob(
        self,
        digest: Digest,
        chunks: AsyncIterable[bytes],
        observe: Callable[[bytes], None],
        accept: Callable[[], Awaitable[bool]],
    ) -> int | None:
        temp = self.root / "uploads" / f"put-{uuid.uuid4()}"
        # The file is opened with the first full piece; a small blob never needs it.
        writer = _PipelinedFile(lambda: open(temp, "wb"), observe, self._sync)  # noqa: SIM115
        placed = False
        try:
            tail = await writer.write_pieces(chunks)
            await writer.flush()
            observe(tail)
            size = writer.written + len(tail)
            if not await accept():
                return None
            # One trip to a worker thread finishes the blob; for a small blob, the only one.
            await to_thread.run_sync(self._finish_blob, writer.file, temp, tail, self._blob(digest))
            placed = True
            return size
        finally:
            await writer.close()
            if not placed:
                with contextlib.suppress(FileNotFoundError):
                    await to_thread.run_sync(os.unlink, temp)

    def _finish_blob(self, f: BinaryIO | None, temp: Path, tail: bytes, target: Path) -> None:
        with f or open(temp, "wb") as out:
            out.write(tail)
            self._sync(out.fileno())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)

    async def walk(self) -> AsyncIterator[tuple[Digest, int]]:
        # One directory of 256 per trip to a thread: bounded memory, however many blobs.
        for algorithm_dir in sorted((self.root / "blobs").iterdir()):
            for shard in sorted(algorithm_dir.iterdir()) if algorithm_dir.is_dir() else []:
                for digest, size in await to_thread.run_sync(self._list_shard, shard):
                    yield digest, size

    def _list_shard(self, shard: Path) -> list[tuple[Digest, int]]:
        found = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(shard):
                digest = digest_of_key(str(Path(entry.path).relative_to(self.root)))
                if digest is not None and entry.is_file():
                    found.append((digest, entry.stat().st_size))
        return sorted(found, key=lambda item: str(item[0]))

    @_disk_errors
    async def delete(self, digests: Sequence[Digest]) -> None:
        await to_thread.run_sync(self._delete, [self._blob(d) for d in digests])

    @staticmethod
    def _delete(paths: list[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @_disk_errors
    async def upload_start(self, upload_id: str) -> None:
        await to_thread.run_sync(self._create_upload, self._upload(upload_id))

    @staticmethod
    def _create_upload(path: Path) -> None:
        path.parent.mkdir(parents=True)
        path.touch()

    async def upload_size(self, upload_id: str) -> int:
        try:
            return (await to_thread.run_sync(os.stat, self._upload(upload_id))).st_size
        except FileNotFoundError as exc:
            raise UploadNotFound(upload_id) from exc

    @_disk_errors
    async def upload_append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        observe: Callable[[bytes], None] | None = None,
    ) -> int:
        path = self._upload(upload_id)
        try:
            f = await to_thread.run_sync(open, path, "r+b")
        except FileNotFoundError as exc:
            raise UploadNotFound(upload_id) from exc
        writer = _PipelinedFile(lambda: f, observe, self._sync)
        try:
            end = await to_thread.run_sync(f.seek, 0, os.SEEK_END)
            if end != offset:
                raise OffsetMismatch(end, offset)
            tail = await writer.write_pieces(chunks)
            if tail:
                await writer.write(tail)
            await writer.flush()
            return f.tell()
        finally:
            await writer.close()
            f.close()

    def upload_read(
        self, upload_id: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return _read_file(self._upload(upload_id), offset, length, UploadNotFound(upload_id))

    @_disk_errors
    async def upload_commit(self, upload_id: str, digest: Digest) -> None:
        await to_thread.run_sync(self._commit, upload_id, digest)

    def _commit(self, upload_id: str, digest: Digest) -> None:
        source = self._upload(upload_id)
        if not source.exists():
            raise UploadNotFound(upload_id)
        target = self._blob(digest)
        if not target.exists():
            with open(source, "rb") as f:
                self._sync(f.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        shutil.rmtree(source.parent, ignore_errors=True)

    async def upload_cancel(self, upload_id: str) -> None:
        path = self._upload(upload_id).parent
        await to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))

    @_disk_errors
    async def sweep_uploads(self, before: datetime, keep: set[str]) -> None:
        await to_thread.run_sync(self._sweep, before.timestamp(), keep)

    def _sweep(self, before: float, keep: set[str]) -> None:
        for entry in (self.root / "uploads").iterdir():
            with contextlib.suppress(FileNotFoundError):
                files = [entry, *entry.iterdir()] if entry.is_dir() else [entry]
                if entry.name in keep or max(f.stat().st_mtime for f in files) >= before:
                    continue
                # Session folders, and temporary files of puts cut short.
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()

    def _sync(self, fd: int) -> None:
        if self.fsync:
            os.fsync(fd)


class _PipelinedFile:
    """Writes pieces to a file while the caller gathers the next ones: writing and
    `observe` (the hash, which releases the GIL) run in worker threads, each in order, up
    to IN_FLIGHT pieces behind the caller, so the network, the disk and the hash work at
    the same time. Hashing in the event loop instead held back the reading of the
    request."""

    def __init__(
        self,
        open_file: Callable[[], BinaryIO],
        observe: Callable[[bytes], None] | None,
        sync: Callable[[int], None],
    ) -> None:
        self._open = open_file
        self._observe = observe
        self._sync = sync
        self._unsynced = 0
        self.file: BinaryIO | None = None
        self._latest: dict[Callable[[bytes], None], asyncio.Task[None]] = {}
        self._pieces: deque[list[asyncio.Task[None]]] = deque()
        self.written = 0  # bytes handed to write()

    async def write_pieces(self, chunks: AsyncIterable[bytes]) -> bytes:
        """Write `chunks` in pieces of IO_CHUNK; returns the rest, less than a piece."""
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= IO_CHUNK:
                await self.write(bytes(buffer))
                buffer.clear()
        return bytes(buffer)

    async def write(self, data: bytes) -> None:
        while len(self._pieces) >= IN_FLIGHT:
            await self._settle_oldest()
        stages: list[Callable[[bytes], None]] = [self._write]
        if self._observe is not None:
            stages.append(self._observe)
        self._pieces.append([self._start(stage, data) for stage in stages])
        self.written += len(data)

    def _start(self, stage: Callable[[bytes], None], data: bytes) -> asyncio.Task[None]:
        task = asyncio.create_task(_after(self._latest.get(stage), stage, data))
        # Its error is raised by flush(); after a failure elsewhere no one asks for it.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._latest[stage] = task
        return task

    async def _settle_oldest(self) -> None:
        for task in self._pieces.popleft():
            await task

    def _write(self, data: bytes) -> None:
        if self.file is None:
            self.file = self._open()
        self.file.write(data)
        # Flushed to disk as it goes, beside the hash, rather than all at the final fsync
        # after the last byte (a quarter of a second for 256 MiB here).
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY:
            self.file.flush()
            self._sync(self.file.fileno())
            self._unsynced = 0

    async def flush(self) -> None:
        """Wait for the pieces in flight; raises the first error."""
        while self._pieces:
            await self._settle_oldest()

    async def close(self) -> None:
        """Let the pieces in flight end, whatever happened meanwhile, and close the file."""
        try:
            tasks = [task for piece in self._pieces for task in piece]
            if tasks:
                await asyncio.wait(tasks)
        finally:
            if self.file is not None:
                self.file.close()


async def _after(
    previous: asyncio.Task[None] | None, work: Callable[[bytes], None], data: bytes
) -> None:
    """`work` on `data` in a worker thread, once the previous piece's is done."""
    if previous is not None:
        await previous
    await to_thread.run_sync(work, data)


async def _read_file(
    path: Path, offset: int, length: int | None, missing: StorageError
) -> AsyncIterator[bytes]:
    """Stream `length` bytes (to the end when None) of a file from `offset`."""
    try:
        f = await to_thread.run_sync(open, path, "rb")
    except FileNotFoundError as exc:
        raise missing from exc
    try:
        await to_thread.run_sync(f.seek, offset)
        remaining = length
        while remaining is None or remaining > 0:
            size = IO_CHUNK if remaining is None else min(IO_CHUNK, remaining)
            data = await to_thread.run_sync(f.read, size)
            if not data:
                break
            if remaining is not None:
                remaining -= len(data)
            yield data
    finally:
        f.close()
