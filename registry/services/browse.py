"""Browsing what the registry holds, for the admin API and the console: repositories
with their sizes and pulls, tags with sizes, platforms and build times, one manifest in
full. Each page is one query for the rows (metadata/browse.py) and one for the child
manifests of the indexes on it; build times and run settings come from the image
configs, read from the blob store once per process and digest (content-addressed, so a
cached summary is never stale)."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from registry.digest import Digest, is_digest
from registry.errors import DigestInvalid, ManifestUnknown, NameUnknown
from registry.images import (
    IMAGE_CONFIGS,
    MAX_CONFIG_BYTES,
    Config,
    Contents,
    Layer,
    Platform,
    config,
    contents,
)
from registry.metadata import browse as q
from registry.metadata import manifests
from registry.metadata.browse import RepositoryRow
from registry.metadata.database import Database
from registry.names import check_tag
from registry.storage import BlobStore
from registry.storage.base import BlobNotFound

_CACHED_CONFIGS = 4096
R = TypeVar("R", q.TagRow, q.UntaggedRow)  # a page's rows
_PARALLEL_READS = 16


@dataclass(frozen=True, slots=True)
class PlatformImage:
    """One platform of a tag: the image for it and its size."""

    digest: str
    platform: Platform | None
    bytes: int


@dataclass(frozen=True, slots=True)
class ImageView:
    """What a page shows of a tag's or an untagged manifest's image."""

    digest: str
    media_type: str
    artifact_type: str | None
    bytes: int  # config and layers; for an index, of every platform
    platforms: list[PlatformImage]
    created: str | None  # from the image config (an index's: its first platform's)
    pushed_at: datetime
    pulled_at: datetime | None


@dataclass(frozen=True, slots=True)
class TagView(ImageView):
    name: str


@dataclass(frozen=True, slots=True)
class UntaggedView(ImageView):
    untagged_at: datetime  # since when no tag has pointed at it
    referrers: int  # signatures, SBOMs: they go with it


@dataclass(frozen=True, slots=True)
class ReferrerView:
    digest: str
    media_type: str
    artifact_type: str | None
    bytes: int


@dataclass(frozen=True, slots=True)
class ManifestView:
    digest: str
    media_type: str
    artifact_type: str | None
    document: Any
    bytes: int
    layers: list[Layer]
    config_descriptor: Layer | None
    config: Config | None
    platforms: list[PlatformImage]
    referrers: list[ReferrerView]
    pushed_at: datetime | None
    pulled_at: datetime | None


class Browse:
    def __init__(self, db: Database, store: BlobStore) -> None:
        self.db = db
        self.store = store
        self._configs: OrderedDict[str, Config] = OrderedDict()
        self._reads = asyncio.Semaphore(_PARALLEL_READS)

    async def repositories(
        self,
        namespaces: Collection[str] | None,
        containing: str | None,
        last: str | None,
        limit: int,
        order: str = "name",
    ) -> list[RepositoryRow]:
        async with self.db.read() as conn:
            return await q.repositories(conn, namespaces, containing, last, limit, order)

    async def tags(
        self, repository: str, *, by_push: bool, last: str | None, limit: int
    ) -> list[TagView]:
        found = await self._with_images(
            repository, lambda conn, rid: q.tags(conn, rid, by_push, last, limit)
        )
        return [TagView(name=row.name, **_shown(row), **image) for row, image in found]

    async def untagged(self, repository: str, last: str | None, limit: int) -> list[UntaggedView]:
        """A page of what deleting tags left in the repository (metadata/browse.py)."""
        found = await self._with_images(
            repository, lambda conn, rid: q.untagged(conn, rid, last, limit)
        )
        return [
            UntaggedView(
                untagged_at=row.untagged_at, referrers=row.referrers, **_shown(row), **image
            )
            for row, image in found
        ]

    async def _with_images(
        self, repository: str, read: Callable[[AsyncConnection, int], Awaitable[Sequence[R]]]
    ) -> list[tuple[R, dict[str, Any]]]:
        """A page of the repository's manifest rows (`read`), each with what is shown of
        its image (_images): one query for the rows, one for the indexes' children."""
        async with self.db.read() as conn:
            repository_id = await self._repository_id(conn, repository)
            rows = await read(conn, repository_id)
            parsed, children = await _parse(conn, repository_id, rows)
        images = await self._images(parsed, children)
        return [(row, images[row.digest]) for row in rows]

    async def tag_sharing(self, repository: str, tag: str) -> tuple[str, list[str]]:
        """The digest a tag points at, and the other tags that point there."""
        async with self.db.read() as conn:
            found = await q.tag_sharing(conn, await self._repository_id(conn, repository), tag)
        if found is None:
            raise ManifestUnknown({"reference": tag})
        return found

    @staticmethod
    async def _repository_id(conn: AsyncConnection, repository: str) -> int:
        found = await q.repository_id(conn, repository)
        if found is None:
            raise NameUnknown({"name": repository})
        return found

    async def _images(
        self, parsed: dict[str, Contents], children: dict[str, Contents]
    ) -> dict[str, dict[str, Any]]:
        """What a page shows of each manifest's image, by digest: its size (an index's:
        of every platform), platforms and build time (an index's: its first platform's)."""
        configs = await self._configs_of([c.config for c in (*parsed.values(), *children.values())])
        images = {}
        for digest, found in parsed.items():
            platforms = _platforms(found, children, configs)
            first = found if not found.children else children.get(found.children[0].digest)
            created = None
            if first is not None and first.config is not None:
                summary = configs.get(first.config.digest)
                created = summary.created if summary else None
            size = sum(p.bytes for p in platforms) if found.children else found.image_bytes
            images[digest] = {"bytes": size, "platforms": platforms, "created": created}
        return images

    async def manifest(self, repository: str, reference: str) -> ManifestView:
        if is_digest(reference):
            found = await manifests.by_digest(self.db, repository, str(Digest.parse(reference)))
        else:
            found = await manifests.by_tag(self.db, repository, check_tag(reference))
        if found is None:
            raise ManifestUnknown({"reference": reference})
        parsed = contents(found.content)
        async with self.db.read() as conn:
            wanted = {c.digest for c in parsed.children}
            children = {
                digest: contents(content)
                for digest, (_, content) in (
                    await q.manifests(conn, found.repository_id, wanted)
                ).items()
            }
            referrers = await manifests.referrers(conn, repository, found.digest, None)
            artifact_type, pushed, pulled = await q.manifest_facts(conn, found.manifest_id)
        configs = await self._configs_of([parsed.config, *(c.config for c in children.values())])
        return ManifestView(
            digest=found.digest,
            media_type=found.media_type,
            artifact_type=artifact_type,
            document=json.loads(found.content),
            bytes=len(found.content),
            layers=parsed.layers,
            config_descriptor=parsed.config,
            config=configs.get(parsed.config.digest) if parsed.config else None,
            platforms=_platforms(parsed, children, configs) if parsed.children else [],
            referrers=[
                ReferrerView(r.digest, r.media_type, r.artifact_type, r.size) for r in referrers
            ],
            pushed_at=pushed,
            pulled_at=pulled,
        )

    async def _configs_of(self, descriptors: list[Layer | None]) -> dict[str, Config]:
        """The summaries of these image configs that can be read, by digest."""
        wanted = {
            d.digest: d
            for d in descriptors
            if d is not None and d.media_type in IMAGE_CONFIGS and d.size <= MAX_CONFIG_BYTES
        }
        found = {digest: self._configs[digest] for digest in wanted if digest in self._configs}
        missing = [d for digest, d in wanted.items() if digest not in found]
        for descriptor, summary in zip(
            missing, await asyncio.gather(*(self._read(d) for d in missing)), strict=True
        ):
            if summary is not None:
                found[descriptor.digest] = summary
        return found

    async def _read(self, descriptor: Layer) -> Config | None:
        try:
            digest = Digest.parse(descriptor.digest)
            async with self._reads:
                raw = await self.store.read_bytes(digest)
        except (BlobNotFound, DigestInvalid):
            return None  # a mirror has not fetched it yet, or a digest we cannot read
        summary = config(raw)
        self._configs[descriptor.digest] = summary
        while len(self._configs) > _CACHED_CONFIGS:
            self._configs.popitem(last=False)
        return summary


async def _parse(
    conn: AsyncConnection, repository_id: int, rows: Sequence[R]
) -> tuple[dict[str, Contents], dict[str, Contents]]:
    """The contents of a page's manifests, and of the child manifests of its indexes
    (one query for those), by digest."""
    parsed = {row.digest: contents(row.content) for row in rows}
    wanted = {c.digest for found in parsed.values() for c in found.children}
    children = {
        digest: contents(content)
        for digest, (_, content) in (await q.manifests(conn, repository_id, wanted)).items()
    }
    return parsed, children


def _platforms(
    found: Contents, children: dict[str, Contents], configs: dict[str, Config]
) -> list[PlatformImage]:
    """An index's platforms with each image's size; an image's own platform."""
    if not found.children:
        summary = configs.get(found.config.digest) if found.config else None
        platform = summary.platform if summary else None
        return [PlatformImage("", platform, found.image_bytes)] if platform else []
    return [
        PlatformImage(
            child.digest,
            child.platform,
            children[child.digest].image_bytes if child.digest in children else 0,
        )
        for child in found.children
    ]


def _shown(row: q.TagRow | q.UntaggedRow) -> dict[str, Any]:
    """An ImageView's fields that come from its row (the rest from its image)."""
    return {
        "digest": row.digest,
        "media_type": row.media_type,
        "artifact_type": row.artifact_type,
        "pushed_at": row.pushed_at,
        "pulled_at": row.pulled_at,
    }
