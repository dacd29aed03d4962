"""The two ends of a copy, one interface: this registry (its services, as a client's
push and pull would use them, with the same checks: immutable tags, quotas, events) and
a remote (its distribution API). A push rule reads here and writes there; a pull rule
the other way round. The copy itself (replication/copy.py) knows only this interface.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from registry.digest import Digest
from registry.errors import BlobUnknown, ManifestUnknown, NameUnknown
from registry.mediatypes import MANIFEST_TYPES
from registry.proxy.upstream import UpstreamError
from registry.replication.client import RemoteRegistry
from registry.services.blobs import BlobService
from registry.services.listing import ListingService
from registry.services.manifests import ManifestService
from registry.services.trust import Trust
from registry.services.uploads import UploadService

ACCEPT = sorted(MANIFEST_TYPES)
# What Sink.delete says when the destination deletes no tag alone (Distribution 2.8).
NO_TAG_DELETE = "the remote does not delete by tag"
# A blob is read from its source from an offset: an async iterator of its bytes, in a
# context that closes the source's stream.
Reader = Callable[[int], AbstractAsyncContextManager[AsyncIterator[bytes]]]


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    content: bytes


class Progress(Protocol):
    """Where a blob's upload to a remote stands, kept between attempts (the database)."""

    async def saved(self) -> str | None: ...
    async def save(self, location: str) -> None: ...


class Source(Protocol):
    async def manifest(self, repository: str, reference: str) -> Manifest | None: ...
    def blob(self, repository: str, digest: str) -> Reader: ...
    async def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]: ...
    async def tags(self, repository: str) -> list[str]: ...
    async def repositories(self, namespace: str | None, named: list[str] | None) -> list[str]: ...


class Sink(Protocol):
    async def manifest(self, repository: str, reference: str) -> Manifest | None: ...
    async def digest_of(self, repository: str, reference: str) -> str | None: ...
    async def has_blob(self, repository: str, digest: str) -> bool: ...
    async def mount(self, repository: str, digest: str, source: str) -> bool: ...
    async def put_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        read: Reader,
        progress: Progress,
        sent: Callable[[int], Awaitable[None]],
    ) -> None: ...
    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> bool: ...
    async def delete(self, repository: str, reference: str) -> str | None: ...
    async def tags(self, repository: str) -> list[str]: ...


class Local:
    """This registry, through its services."""

    def __init__(
        self,
        manifests: ManifestService,
        blobs: BlobService,
        uploads: UploadService,
        listing: ListingService,
        trust: Trust,
    ) -> None:
        self.trust = trust
        self.manifests = manifests
        self.blobs = blobs
        self.uploads = uploads
        self.listing = listing

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        try:
            found = await self.manifests.get(repository, reference, ACCEPT)
        except ManifestUnknown:
            return None
        return Manifest(found.digest, found.media_type, found.content)

    def blob(self, repository: str, digest: str) -> Reader:
        @asynccontextmanager
        async def read(offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
            parsed = Digest.parse(digest)
            size = await self.blobs.size(repository, parsed)
            yield self.blobs.stream(parsed, offset, size - offset)

        return read

    async def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        index = await self.manifests.referrers(repository, Digest.parse(digest), None)
        found = index["manifests"]
        assert isinstance(found, list)
        return found

    async def tags(self, repository: str) -> list[str]:
        found: list[str] = []
        last = None
        while True:
            try:
                window = await self.listing.tags(repository, None, last)
            except NameUnknown:
                return []
            found += window.items
            if not window.more or not window.items:
                return found
            last = window.items[-1]

    async def repositories(self, namespace: str | None, named: list[str] | None) -> list[str]:
        namespaces: Collection[str] | None = [namespace] if namespace else None
        found: list[str] = []
        last = None
        while True:
            window = await self.listing.catalog(None, last, namespaces)
            found += window.items
            if not window.more or not window.items:
                return found
            last = window.items[-1]

    async def digest_of(self, repository: str, reference: str) -> str | None:
        found = await self.manifest(repository, reference)
        return found.digest if found else None

    async def has_blob(self, repository: str, digest: str) -> bool:
        try:
            await self.blobs.size(repository, Digest.parse(digest), renew=True)
        except BlobUnknown:
            return False
        return True

    async def mount(self, repository: str, digest: str, source: str) -> bool:
        # Here, any stored blob will do: its digest names its bytes.
        return await self.blobs.mount(repository, Digest.parse(digest), None)

    async def put_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        read: Reader,
        progress: Progress,
        sent: Callable[[int], Awaitable[None]],
    ) -> None:
        async with read(0) as chunks:

            async def counted() -> AsyncIterator[bytes]:
                async for chunk in chunks:
                    await sent(len(chunk))
                    yield chunk

            await self.uploads.put_whole(repository, Digest.parse(digest), counted())

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> bool:
        pushed = await self.manifests.put(
            repository, reference, manifest.content, manifest.media_type
        )
        # A signature copied in is checked against the keys trusted here, as a push's.
        await self.trust.arrived(
            repository, str(pushed.digest), manifest.content, pushed.tags, pushed.subject
        )
        return True

    async def delete(self, repository: str, reference: str) -> str | None:
        try:
            await self.manifests.delete(repository, reference)
        except ManifestUnknown:
            return "not here"
        return None


class Remote:
    """A remote registry, through its distribution API."""

    def __init__(self, client: RemoteRegistry, chunk_bytes: int) -> None:
        self.client = client
        self.chunk_bytes = chunk_bytes

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        found = await self.client.manifest(repository, reference)
        return Manifest(found.digest, found.media_type, found.content) if found else None

    def blob(self, repository: str, digest: str) -> Reader:
        @asynccontextmanager
        async def read(offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
            async with self.client.blob_from(repository, digest, offset) as response:
                yield response.aiter_raw()

        return read

    async def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        found = await self.client.referrers(repository, digest)
        if found is not None:
            return found
        # No referrers API: the tag schema's index, if the remote keeps one.
        fallback = await self.client.manifest(repository, digest.replace(":", "-"))
        if fallback is None:
            return []
        return _descriptors(fallback.content)

    async def tags(self, repository: str) -> list[str]:
        return await self.client.tags(repository) or []

    async def repositories(self, namespace: str | None, named: list[str] | None) -> list[str]:
        if named is not None:
            return named  # plain names need no catalog, which many remotes refuse
        found = await self.client.catalog()
        return [n for n in found if not namespace or n.startswith(namespace + "/")]

    async def digest_of(self, repository: str, reference: str) -> str | None:
        return await self.client.manifest_digest(repository, reference)

    async def has_blob(self, repository: str, digest: str) -> bool:
        return await self.client.has_blob(repository, digest)

    async def mount(self, repository: str, digest: str, source: str) -> bool:
        # Only from where this process saw the blob there: a remote lends nothing else.
        return bool(source) and await self.client.mount(repository, digest, source)

    async def put_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        read: Reader,
        progress: Progress,
        sent: Callable[[int], Awaitable[None]],
    ) -> None:
        """Chunk after chunk, each from the offset the remote last reported; a session
        saved by an earlier attempt is asked where it stands and continued."""
        session = None
        saved = await progress.saved()
        if saved:
            session = await self.client.upload_status(repository, saved)
        if session is None:
            session = await self.client.start_upload(repository)
            await progress.save(session.location)
        while session.offset < size:
            length = min(self.chunk_bytes, size - session.offset)
            async with read(session.offset) as chunks:
                body = _exactly(chunks, length, sent)
                try:
                    session = await self.client.send_chunk(repository, session, body, length)
                except UpstreamError as exc:
                    if exc.status == 416:  # the remote holds another offset than it said
                        await progress.save("")
                    raise
            await progress.save(session.location)
        await self.client.finish_upload(repository, session, digest)

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> bool:
        """Whether the remote took it as a referrer of its subject (OCI-Subject)."""
        headers = await self.client.put_manifest(
            repository, reference, manifest.content, manifest.media_type
        )
        return "oci-subject" in headers

    async def delete(self, repository: str, reference: str) -> str | None:
        status = await self.client.delete_manifest(repository, reference)
        if status == 202:
            return None
        if status == 404:
            return "not there"
        return "the remote does not delete by digest" if ":" in reference else NO_TAG_DELETE


def _descriptors(content: bytes) -> list[dict[str, Any]]:
    try:
        found = json.loads(content).get("manifests")
    except (ValueError, AttributeError):
        return []
    return [d for d in found or [] if isinstance(d, dict)]


async def _exactly(
    chunks: AsyncIterator[bytes], length: int, sent: Callable[[int], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """The first `length` bytes of a stream, each piece counted by `sent` (which may
    wait: the bandwidth limit)."""
    left = length
    async for chunk in chunks:
        piece = chunk[:left]
        await sent(len(piece))
        yield piece
        left -= len(piece)
        if not left:
            return
    if left:
        raise UpstreamError(0, f"the source ended {left} bytes early")
