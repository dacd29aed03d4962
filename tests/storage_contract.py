"""The blob store contract: every store's test module subclasses StoreContract and
supplies `store` (and `leftovers`, what the store holds besides committed blobs)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from registry.digest import Digest
from registry.storage.base import BlobNotFound, BlobStore, OffsetMismatch, UploadNotFound

pytestmark = pytest.mark.anyio


def accept(answer: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """write_blob's `accept`, which is asynchronous (the registry renews a lease in it)."""

    async def decide() -> bool:
        return answer()

    return decide


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


class StoreContract:
    @pytest.fixture
    def store(self) -> BlobStore:
        raise NotImplementedError

    def leftovers(self, store: BlobStore) -> list[str]:
        raise NotImplementedError

    @pytest.mark.anyio
    async def test_upload_commit_read(self, store: BlobStore) -> None:
        upload = str(uuid.uuid4())
        data = b"x" * (3 * 1024 * 1024 + 17)
        await store.upload_start(upload)
        seen = hashlib.sha256()
        size = await store.upload_append(upload, 0, chunks(data[:1000], data[1000:]), seen.update)
        assert size == len(data) == await store.upload_size(upload)
        assert seen.hexdigest() == hashlib.sha256(data).hexdigest()
        assert await collect(store.upload_read(upload)) == data
        # Ranges, across segment boundaries where the store keeps segments.
        for offset, length in ((0, 10), (1000, 2 * 1024 * 1024), (len(data) - 5, None)):
            end = None if length is None else offset + length
            assert await collect(store.upload_read(upload, offset, length)) == data[offset:end]
        digest = Digest.of(data)
        await store.upload_commit(upload, digest)
        assert await store.stat(digest) == len(data)
        assert await collect(store.read(digest)) == data
        assert await collect(store.read(digest, 10, 5)) == data[10:15]
        assert await collect(store.read(digest, len(data) - 3)) == data[-3:]
        with pytest.raises(UploadNotFound):
            await store.upload_size(upload)
        assert self.leftovers(store) == []

    @pytest.mark.anyio
    async def test_resume_and_offsets(self, store: BlobStore) -> None:
        upload = str(uuid.uuid4())
        await store.upload_start(upload)
        await store.upload_append(upload, 0, chunks(b"abc"))
        with pytest.raises(OffsetMismatch):
            await store.upload_append(upload, 1, chunks(b"zzz"))
        assert await store.upload_append(upload, 3, chunks(b"def")) == 6
        assert await collect(store.upload_read(upload)) == b"abcdef"
        await store.upload_cancel(upload)
        with pytest.raises(UploadNotFound):
            await store.upload_size(upload)
        assert self.leftovers(store) == []

    @pytest.mark.anyio
    async def test_commit_of_existing_content(self, store: BlobStore) -> None:
        digest = Digest.of(b"same")
        await store.put_bytes(digest, b"same")
        upload = str(uuid.uuid4())
        await store.upload_start(upload)
        await store.upload_append(upload, 0, chunks(b"same"))
        await store.upload_commit(upload, digest)
        assert await store.read_bytes(digest) == b"same"
        assert self.leftovers(store) == []

    @pytest.mark.anyio
    async def test_missing(self, store: BlobStore) -> None:
        digest = Digest.of(b"missing")
        assert await store.stat(digest) is None
        with pytest.raises(BlobNotFound):
            await store.read_bytes(digest)
        with pytest.raises(BlobNotFound):
            await collect(store.read(digest))
        await store.delete([digest])
        for bad in ("../../etc", "x" * 36, str(uuid.uuid4())):
            with pytest.raises(UploadNotFound):
                await store.upload_size(bad)

    @pytest.mark.anyio
    async def test_put_and_delete(self, store: BlobStore) -> None:
        digest = Digest.of(b"small", "sha512")
        await store.put_bytes(digest, b"small")
        await store.put_bytes(digest, b"small")
        other = Digest.of(b"other")
        await store.put_bytes(other, b"other")
        assert await store.read_bytes(digest) == b"small"
        await store.delete([digest, other, Digest.of(b"never stored")])
        assert await store.stat(digest) is None
        assert await store.stat(other) is None
        assert self.leftovers(store) == []

    @pytest.mark.anyio
    async def test_walk_lists_every_blob_with_its_size(self, store: BlobStore) -> None:
        contents = {Digest.of(b"one"): b"one", Digest.of(b"three", "sha512"): b"three"}
        contents[Digest.of(b"")] = b""
        for digest, data in contents.items():
            await store.put_bytes(digest, data)
        upload = str(uuid.uuid4())
        await store.upload_start(upload)  # sessions are not blobs
        await store.upload_append(upload, 0, chunks(b"partial"))
        found = {digest: size async for digest, size in store.walk()}
        assert found == {digest: len(data) for digest, data in contents.items()}
        await store.delete(list(contents))
        assert [x async for x in store.walk()] == []

    @pytest.mark.anyio
    async def test_sweep_removes_old_uploads_not_kept(self, store: BlobStore) -> None:
        kept, abandoned = str(uuid.uuid4()), str(uuid.uuid4())
        for upload in (kept, abandoned):
            await store.upload_start(upload)
            await store.upload_append(upload, 0, chunks(b"partial"))
        # Nothing is old enough yet.
        await store.sweep_uploads(datetime.now(UTC) - timedelta(hours=1), keep=set())
        assert await store.upload_size(abandoned) == len(b"partial")
        await store.sweep_uploads(datetime.now(UTC) + timedelta(minutes=1), keep={kept})
        assert await store.upload_size(kept) == len(b"partial")
        with pytest.raises(UploadNotFound):
            await store.upload_size(abandoned)
        await store.upload_cancel(kept)
        assert self.leftovers(store) == []

    @pytest.mark.anyio
    @pytest.mark.parametrize("size", [0, 5, 3 * 1024 * 1024 + 1])
    async def test_write_blob_of_known_digest(self, store: BlobStore, size: int) -> None:
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        digest = Digest.of(data)
        hasher = hashlib.sha256()
        written = await store.write_blob(
            digest,
            chunks(data[: size // 2], data[size // 2 :]),
            hasher.update,
            accept(lambda: hasher.hexdigest() == digest.hex),
        )
        assert written == size
        assert await store.read_bytes(digest) == data
        assert self.leftovers(store) == []

    @pytest.mark.anyio
    async def test_write_blob_refused_leaves_nothing(self, store: BlobStore) -> None:
        digest = Digest.of(b"what was promised")
        seen = bytearray()
        written = await store.write_blob(
            digest, chunks(b"something else" * 30_000), seen.extend, accept(lambda: False)
        )
        assert written is None
        assert bytes(seen) == b"something else" * 30_000
        assert await store.stat(digest) is None
        assert self.leftovers(store) == []

    @pytest.mark.anyio
    async def test_empty_blob(self, store: BlobStore) -> None:
        digest = Digest.of(b"")
        await store.put_bytes(digest, b"")
        assert await store.stat(digest) == 0
        assert await collect(store.read(digest)) == b""
        assert await collect(store.read(digest, 0, 0)) == b""
