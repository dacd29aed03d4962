"""Where a pull is answered from: this registry's own index and store (Stored), or a
mirror's upstream through its cache (proxy/mirror.py, Mirrored). One interface, so the
/v2/ handlers need not know which; the access gate finds which (api/common.py, source)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from registry.digest import Digest
from registry.metadata.manifests import StoredManifest
from registry.services.blobs import BlobService
from registry.services.manifests import ManifestService


@dataclass(frozen=True, slots=True)
class BlobFound:
    size: int
    # The bytes as they arrive from an upstream; None when the blob is stored here and
    # served like any stored blob (ranges, redirects, sendfile).
    stream: AsyncIterator[bytes] | None = None


class Source(Protocol):
    async def manifest(self, name: str, reference: str, accept: list[str]) -> StoredManifest:
        """By tag or digest, in a media type the client accepts."""
        ...

    async def blob(self, name: str, digest: Digest, *, head: bool) -> BlobFound:
        """For a GET, or (`head`) a HEAD, which never fetches the bytes."""
        ...


class Stored:
    """This registry's own: one indexed query each."""

    def __init__(self, manifests: ManifestService, blobs: BlobService) -> None:
        self.manifests = manifests
        self.blobs = blobs

    async def manifest(self, name: str, reference: str, accept: list[str]) -> StoredManifest:
        return await self.manifests.get(name, reference, accept)

    async def blob(self, name: str, digest: Digest, *, head: bool) -> BlobFound:
        # A HEAD is a push asking whether to send the blob: it renews the lease.
        return BlobFound(await self.blobs.size(name, digest, renew=head))
