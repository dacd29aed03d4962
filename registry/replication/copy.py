"""One item of a run: a tag (or digest) copied from a source to a sink with everything
it references and everything that refers to it, or a deletion.

The order keeps the destination valid at every step, as a client's push would:

1. blobs (config and layers) before the manifest that names them, each skipped when the
   destination has it (HEAD), linked from another repository of the destination when
   this process has seen it there (a mount), else uploaded in chunks that resume;
2. an index's children, each whole, before the index; all by digest;
3. the referrers of each manifest (signatures, SBOMs, attestations: the referrers API,
   or the tag schema's `sha256-<hex>` index where the source has no such API) and
   cosign's `sha256-<hex>.sig`/`.att`/`.sbom` tags, after their subject, so that a
   signature travels with what it signs whatever the tag filter says;
4. the tag last, so that no one pulls it before all of it is there.

A destination that takes a manifest with a subject without saying so (no OCI-Subject:
Distribution 2.8) gets the tag schema's index kept up to date instead, as OCI clients
keep it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry.errors import RegistryError
from registry.mediatypes import INDEX_TYPES, OCI_INDEX, ParsedManifest, parse_manifest
from registry.replication.sides import NO_TAG_DELETE, Manifest, Progress, Sink, Source
from registry.signatures import (
    COSIGN_ARTIFACT,
    TrustedKey,
    read_payload,
    signature_tag,
    signers,
)

# Image configs: a manifest with one of these (and no artifactType) is an image.
IMAGE_CONFIGS = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
# cosign's tags for what it attaches to sha256:<hex>, and the referrers tag schema's.
ATTACHED_TAG = re.compile(r"sha256-([0-9a-f]{64})(?:\.(?:sig|att|sbom))?")
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
_REFERRER_DEPTH = 3  # a signature of an SBOM of an image: referrers of referrers
_MOUNTS_KEPT = 10_000


class CopyFailed(Exception):
    """An item could not be copied; the message says why, in words for the operator."""


@dataclass(frozen=True, slots=True)
class Outcome:
    state: str  # copied or skipped
    digest: str | None
    reason: str | None = None  # why it was skipped


def kind_of(parsed: ParsedManifest) -> str:
    if parsed.media_type in INDEX_TYPES:
        return "index"
    return "image" if parsed.artifact_type in IMAGE_CONFIGS else "artifact"


class Throttle:
    """Bytes per second over everything one rule moves in this process (0: no limit):
    a token bucket holding at most one second's worth."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.at = time.monotonic()

    async def take(self, n: int) -> None:
        if not self.rate:
            return
        moment = time.monotonic()
        self.tokens = min(float(self.rate), self.tokens + (moment - self.at) * self.rate) - n
        self.at = moment
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class Mounts:
    """Where this process last saw each blob at a destination (digest: repository), so
    that a blob another repository there has is mounted rather than sent again."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, str] = OrderedDict()

    def get(self, digest: str) -> str:
        return self._seen.get(digest, "")

    def saw(self, digest: str, repository: str) -> None:
        self._seen[digest] = repository
        self._seen.move_to_end(digest)
        while len(self._seen) > _MOUNTS_KEPT:
            self._seen.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Trusted:
    """The keys a rule that copies signed images only trusts, and whose they are (in
    words: a namespace, or the registry)."""

    keys: list[TrustedKey]
    keeper: str


class Copy:
    """The copy of one item; `bytes` counts what it moved."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        *,
        kinds: list[str],
        overwrite: bool,
        blobs_at_once: int,
        progress: Callable[[str], Progress],
        throttle: Throttle,
        mounts: Mounts,
        parse: Callable[[bytes, str], ParsedManifest] = parse_manifest,
        signed_by: Trusted | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.kinds = kinds
        self.overwrite = overwrite
        self.blobs_at_once = asyncio.Semaphore(blobs_at_once)
        self.progress = progress
        self.throttle = throttle
        self.mounts = mounts
        self.parse = parse
        # A rule that copies signed images only: the keys, and whose they are.
        self.signed_by = signed_by
        self.bytes = 0

    async def item(self, repository: str, reference: str, destination: str) -> Outcome:
        found = await self.source.manifest(repository, reference)
        if found is None:
            return Outcome("skipped", None, f"{repository}:{reference} is not at the source now")
        parsed = self._parsed(found, repository)
        tag = None if reference.startswith("sha") and ":" in reference else reference
        attached = ATTACHED_TAG.fullmatch(tag or "")
        subject = parsed.subject or (f"sha256:{attached.group(1)}" if attached else None)
        if subject is not None:
            # A signature, SBOM or other referrer goes where its subject went.
            if await self.sink.digest_of(destination, subject) is None:
                return Outcome(
                    "skipped",
                    found.digest,
                    f"it refers to {subject}, which is not at {destination}",
                )
        elif kind_of(parsed) not in self.kinds:
            return Outcome(
                "skipped",
                found.digest,
                f"it is an {kind_of(parsed)}; the rule copies {', '.join(self.kinds)}",
            )
        elif self.signed_by is not None and not await self._signed(repository, found.digest):
            return Outcome(
                "skipped",
                found.digest,
                f"no key that {self.signed_by.keeper} trusts signed it at the source, and the "
                "rule copies signed images only",
            )
        there = await self.sink.digest_of(destination, tag) if tag else None
        if there is not None and there != found.digest and not self.overwrite:
            return Outcome(
                "skipped",
                found.digest,
                f"{destination}:{tag} is {there} there, and the rule does not overwrite",
            )
        changed = await self._tree(repository, destination, found, parsed)
        for digest in [found.digest, *(child.digest for child in parsed.children)]:
            changed |= await self._attached(repository, destination, digest, 0)
        if tag is not None and there != found.digest:
            await self.sink.put_manifest(destination, tag, found)
            changed = True
        if not changed:
            return Outcome("skipped", found.digest, "up to date")
        return Outcome("copied", found.digest)

    async def deletion(self, repository: str, reference: str, destination: str) -> Outcome:
        """Delete at the destination what was deleted at the source. A destination that
        deletes no tag alone (Distribution) has the manifest deleted instead, only when
        the source has no such manifest any more."""
        why = await self.sink.delete(destination, reference)
        if why is None:
            return Outcome("copied", None)
        if why == NO_TAG_DELETE:
            digest = await self.sink.digest_of(destination, reference)
            gone = digest is not None and await self.source.manifest(repository, digest) is None
            if gone and digest is not None and await self.sink.delete(destination, digest) is None:
                return Outcome("copied", digest)
            why += f"; {destination}:{reference} stays, as its manifest is still at the source"
        return Outcome("skipped", None, why)

    async def _signed(self, repository: str, digest: str) -> bool:
        """Whether one of the rule's keys signed the image, as its cosign signatures at
        the source say (the `.sig` tag, or referrers of cosign's artifact type): the
        checks a signature pushed here gets (services/trust.py)."""
        assert self.signed_by is not None
        found = [await self.source.manifest(repository, signature_tag(digest))]
        for referrer in await self.source.referrers(repository, digest):
            if referrer.get("artifactType") == COSIGN_ARTIFACT:
                found.append(await self.source.manifest(repository, referrer["digest"]))
        signatures = [s.content for s in found if s is not None]

        async def payload(digest: str) -> bytes | None:
            async with self.source.blob(repository, digest)(0) as chunks:
                return await read_payload(chunks, digest)

        keys = self.signed_by.keys
        return bool(await signers(digest, repository, keys, signatures, payload, first=True))

    def _parsed(self, manifest: Manifest, repository: str) -> ParsedManifest:
        try:
            return self.parse(manifest.content, manifest.media_type)
        except RegistryError as exc:
            raise CopyFailed(
                f"the manifest {repository}@{manifest.digest} at the source is not one this "
                f"registry takes: {exc.message}"
            ) from None

    async def _tree(
        self, repository: str, destination: str, manifest: Manifest, parsed: ParsedManifest
    ) -> bool:
        """The manifest by digest, with what it references first; False if the
        destination had it (and so all it references) already."""
        if await self.sink.digest_of(destination, manifest.digest) is not None:
            return False
        if parsed.children:
            for child in parsed.children:
                found = await self.source.manifest(repository, child.digest)
                if found is None:
                    raise CopyFailed(
                        f"{repository}@{manifest.digest} lists {child.digest}, which the "
                        "source does not have"
                    )
                await self._tree(repository, destination, found, self._parsed(found, repository))
        else:
            await asyncio.gather(
                *(
                    self._blob(repository, destination, digest, size)
                    for digest, size in _blobs(manifest.content)
                )
            )
        took_subject = await self.sink.put_manifest(destination, manifest.digest, manifest)
        if parsed.subject is not None and not took_subject:
            await self._tag_schema(destination, parsed.subject, manifest, parsed)
        return True

    async def _blob(self, repository: str, destination: str, digest: str, size: int) -> None:
        async with self.blobs_at_once:
            if not await self.sink.has_blob(destination, digest):
                other = self.mounts.get(digest)
                if not (other != destination and await self.sink.mount(destination, digest, other)):
                    await self.sink.put_blob(
                        destination,
                        digest,
                        size,
                        self.source.blob(repository, digest),
                        self.progress(digest),
                        self._sent,
                    )
            self.mounts.saw(digest, destination)

    async def _sent(self, n: int) -> None:
        self.bytes += n
        await self.throttle.take(n)

    async def _attached(self, repository: str, destination: str, digest: str, depth: int) -> bool:
        """Referrers of `digest` and cosign's tags for it, copied after it."""
        if depth >= _REFERRER_DEPTH:
            return False
        changed = False
        for descriptor in await self.source.referrers(repository, digest):
            child = descriptor.get("digest")
            found = await self.source.manifest(repository, child) if child else None
            if found is None:
                continue
            changed |= await self._tree(
                repository, destination, found, self._parsed(found, repository)
            )
            changed |= await self._attached(repository, destination, found.digest, depth + 1)
        for suffix in COSIGN_SUFFIXES:
            tag = digest.replace(":", "-") + suffix
            found = await self.source.manifest(repository, tag)
            if found is None:
                continue
            if await self.sink.digest_of(destination, tag) == found.digest:
                continue
            await self._tree(repository, destination, found, self._parsed(found, repository))
            await self.sink.put_manifest(destination, tag, found)
            changed = True
        return changed

    async def _tag_schema(
        self, destination: str, subject: str, manifest: Manifest, parsed: ParsedManifest
    ) -> None:
        """Add a referrer to its subject's `sha256-<hex>` index at the destination."""
        tag = subject.replace(":", "-")
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        current = await self.sink.manifest(destination, tag)
        if current is not None:
            with contextlib.suppress(ValueError):
                index = json.loads(current.content)
        listed = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
        if any(m.get("digest") == manifest.digest for m in listed):
            return
        descriptor: dict[str, Any] = {
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": len(manifest.content),
        }
        if parsed.artifact_type:
            descriptor["artifactType"] = parsed.artifact_type
        if parsed.annotations:
            descriptor["annotations"] = parsed.annotations
        index["manifests"] = [*listed, descriptor]
        content = json.dumps(index, separators=(",", ":")).encode()
        await self.sink.put_manifest(destination, tag, Manifest("", OCI_INDEX, content))


def _blobs(content: bytes) -> list[tuple[str, int]]:
    """An image manifest's config and layers (not foreign layers, which live elsewhere),
    with their sizes."""
    doc = json.loads(content)
    found = []
    for descriptor in [doc.get("config"), *(doc.get("layers") or [])]:
        if not isinstance(descriptor, dict) or descriptor.get("urls"):
            continue
        digest, size = descriptor.get("digest"), descriptor.get("size")
        if isinstance(digest, str) and isinstance(size, int) and size >= 0:
            found.append((digest, size))
    return list(dict.fromkeys(found))
