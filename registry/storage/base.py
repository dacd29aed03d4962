"""The blob store contract. Stores know bytes, digests and upload ids; nothing of HTTP,
SQL or repositories. Every implementation passes tests/storage_contract.py.

Layout, as a filesystem store lays it out (an object store uses the same keys):

    <root>/
      blobs/<algorithm>/<first two hex>/<hex>     committed content, immutable
      uploads/<upload id>/data                    bytes of an upload in progress
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from registry.digest import Digest
from registry.errors import DigestInvalid

_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class StorageError(Exception):
    """The store failed to do what was asked (I/O error, unreachable backend)."""


class StorageFull(StorageError):
    """The store has no room (a full disk, a quota): nothing half-written is visible,
    and what was stored before is untouched."""


class BlobNotFound(StorageError):
    pass


class UploadNotFound(StorageError):
    pass


class OffsetMismatch(StorageError):
    """An append did not start where the upload ends."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"upload is at offset {expected}, append started at {got}")
        self.expected = expected
        self.got = got


def check_upload_id(upload_id: str) -> str:
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise UploadNotFound(upload_id)
    return upload_id


def blob_key(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def digest_of_key(key: str) -> Digest | None:
    """The digest a blob key (as blob_key makes them) stands for; None for anything else
    found under blobs/ (a stray or temporary file)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "blobs" or parts[2] != parts[3][:2]:
        return None
    try:
        return Digest.parse(f"{parts[1]}:{parts[3]}")
    except DigestInvalid:
        return None


class BlobStore(ABC):
    """Content-addressed blob bytes plus resumable upload sessions."""

    # Appends of this many bytes cost one write each, with nothing rewritten.
    append_unit: int = 1024 * 1024

    @abstractmethod
    async def stat(self, digest: Digest) -> int | None:
        """The blob's size, or None when it is not stored."""

    @abstractmethod
    def read(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream `length` bytes (all to the end when None) from `offset`."""

    @abstractmethod
    async def read_bytes(self, digest: Digest) -> bytes:
        """A small blob whole (manifests)."""

    @abstractmethod
    async def put_bytes(self, digest: Digest, data: bytes) -> None:
        """Store a small blob atomically; storing existing content again is a no-op."""

    @abstractmethod
    async def write_blob(
        self,
        digest: Digest,
        chunks: AsyncIterable[bytes],
        observe: Callable[[bytes], None],
        accept: Callable[[], Awaitable[bool]],
    ) -> int | None:
        """Stream a blob whose digest is known in advance straight to its place. `observe`
        sees every piece; once the stream ends, `accept` says whether the bytes match.
        Only accepted bytes become visible. Returns the size, or None if not accepted."""

    @abstractmethod
    async def delete(self, digests: Sequence[Digest]) -> None:
        """Remove blobs (garbage collection's batches); a missing blob is not an error,
        any other failure raises, whatever was removed before it."""

    @abstractmethod
    def walk(self) -> AsyncIterator[tuple[Digest, int]]:
        """Every blob stored, with its size, in digest order (as strings compare): for
        `registry check`, the one place that lists the storage (garbage is found from
        the database)."""

    def local_path(self, digest: Digest) -> Path | None:
        """Direct-serve hint: a local file that holds the blob, for sendfile or
        X-Accel-Redirect. None when the bytes are not local."""
        return None

    async def open_span(self, digest: Digest, offset: int, length: int) -> BinaryIO | None:
        """The blob's local file, open for the kernel to send `length` bytes of from
        `offset` (sendfile); None when the bytes are not local. BlobNotFound when the
        file is gone, StorageError when it is shorter than the span."""
        return None

    def presigned_url(self, digest: Digest) -> str | None:
        """A URL the client may fetch the blob from directly (a redirect target), or None
        to stream the bytes through the registry."""
        return None

    @abstractmethod
    async def upload_start(self, upload_id: str) -> None: ...

    @abstractmethod
    async def upload_size(self, upload_id: str) -> int:
        """Bytes received so far; UploadNotFound when there is no such upload."""

    @abstractmethod
    async def upload_append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        observe: Callable[[bytes], None] | None = None,
    ) -> int:
        """Append a stream at `offset` (OffsetMismatch unless it is the current size).
        `observe` sees every piece written, in order (for hashing). Returns the new size."""

    @abstractmethod
    def upload_read(
        self, upload_id: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream `length` bytes (all received so far when None) from `offset`: to re-hash
        after a restart, or to serve a blob while the mirror is still fetching it."""

    @abstractmethod
    async def upload_commit(self, upload_id: str, digest: Digest) -> None:
        """Move the upload's bytes to the blob's place atomically and end the session."""

    @abstractmethod
    async def upload_cancel(self, upload_id: str) -> None:
        """Drop an upload's bytes; a missing upload is not an error."""

    @abstractmethod
    async def sweep_uploads(self, before: datetime, keep: set[str]) -> None:
        """Remove upload bytes last written before `before` whose id is not in `keep`,
        and any other leftovers of interrupted work from before then."""

    @abstractmethod
    async def check(self) -> None:
        """Raise StorageError unless the store is reachable and writable (for /ready)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and pools."""
