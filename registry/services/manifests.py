"""Pushing, pulling and deleting manifests; tags and referrers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.config import LimitsSettings
from registry.digest import Digest, is_digest
from registry.errors import DigestInvalid, ManifestBlobUnknown, ManifestUnknown, NameUnknown
from registry.mediatypes import INDEX_TYPES, OCI_INDEX, ParsedManifest, accepts, parse_manifest
from registry.metadata import events, queries
from registry.metadata.database import Database
from registry.metadata.hot import HotQueries
from registry.metadata.models import Manifest, Repository
from registry.metadata.queries import StoredManifest
from registry.names import check_tag, namespace_of
from registry.services.leases import Leases
from registry.services.policies import policy_in, refuse_immutable
from registry.storage import BlobStore

# The platform served to a client that asked for a tag whose manifest is an index it
# cannot read (Distribution does the same for old clients).
_DEFAULT_PLATFORM = {"os": "linux", "architecture": "amd64"}


@dataclass(frozen=True)
class PushedManifest:
    digest: Digest
    subject: str | None
    tags: list[str]


class ManifestService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        leases: Leases,
        *,
        sparse: bool = False,
        limits: LimitsSettings | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.hot = HotQueries(db)
        self.leases = leases
        # Sparse: what a manifest references need not be here (settings.sparse_manifests).
        self.sparse = sparse
        limits = limits or LimitsSettings()
        self.parse = partial(
            parse_manifest,
            max_depth=limits.json_depth,
            max_descriptors=limits.manifest_descriptors,
        )

    async def put(
        self,
        repository: str,
        reference: str,
        body: bytes,
        content_type: str | None,
        extra_tags: list[str] | None = None,
    ) -> PushedManifest:
        tags = [check_tag(t) for t in extra_tags or []]
        if is_digest(reference):
            wanted = Digest.parse(reference)
            digest = Digest.of(body, wanted.algorithm)
            if digest != wanted:
                raise DigestInvalid(
                    {"digest": reference},
                    message=f"the manifest's content has digest {digest}, not {reference}",
                )
        else:
            tags.insert(0, check_tag(reference))
            digest = Digest.of(body)
        parsed = self.parse(body, content_type)
        await self._save(repository, digest, body, parsed, tags, pushed=True, check=not self.sparse)
        return PushedManifest(digest, parsed.subject, list(dict.fromkeys(tags)))

    @staticmethod
    async def _check_references(
        conn: AsyncConnection, repository: str, repo_id: int, parsed: ParsedManifest
    ) -> None:
        """Every blob and child manifest must be in the repository already. Read in the
        transaction that stores the references, FOR SHARE: garbage collection cannot
        remove one of them in between (services/leases.py)."""
        missing = await queries.missing_blobs(conn, repo_id, parsed.blobs)
        missing += await queries.missing_manifests(
            conn, repo_id, [c.digest for c in parsed.children]
        )
        if missing:
            raise ManifestBlobUnknown(
                {"digest": missing[0]},
                message=f"manifest references {missing[0]}, which is not in repository "
                f"{repository}: push it first",
            )

    async def cache(
        self, repository: str, digest: Digest, body: bytes, content_type: str, tag: str | None
    ) -> None:
        """Keep a manifest fetched by the mirror, verified against `digest` by the caller.
        Unlike a push, what it references need not be here yet: the mirror fetches blobs
        when they are asked for."""
        await self._save(
            repository, digest, body, self.parse(body, content_type), [tag] if tag else []
        )

    async def _save(
        self,
        repository: str,
        digest: Digest,
        body: bytes,
        parsed: ParsedManifest,
        tags: list[str],
        *,
        pushed: bool = False,
        check: bool = False,
    ) -> None:
        """Bytes first, then every row in one transaction. A client's push (`pushed`, not
        the mirror's) keeps the namespace's immutable-tag rules; with `check`, it is
        stored only if what the manifest references is in the repository."""
        await self.leases.keep(digest)
        await self.store.put_bytes(digest, body)
        values = {
            "digest": str(digest),
            "media_type": parsed.media_type,
            "artifact_type": parsed.artifact_type,
            "size": len(body),
            "subject": parsed.subject,
            "config_digest": parsed.config,
            "annotations": json.dumps(parsed.annotations) if parsed.annotations else None,
            "content": body,
        }
        references = [(d, "blob") for d in dict.fromkeys(parsed.blobs)]
        references += [(d, "manifest") for d in dict.fromkeys(c.digest for c in parsed.children)]
        unique_tags = list(dict.fromkeys(tags))

        async def store(conn: AsyncConnection) -> None:
            # Locks in the order every transaction keeps: this manifest's row and those
            # its tags point at now (their untagged triggers write them), then the blobs
            # (FOR SHARE, in digest order), then the tags.
            repo_id = await queries.ensure_repository(conn, repository)
            manifest_id = await queries.put_manifest(conn, repo_id, values, bool(tags))
            moved = await queries.lock_tag_targets(conn, repo_id, unique_tags, manifest_id)
            if check:
                await self._check_references(conn, repository, repo_id, parsed)
            await queries.link_blob(conn, repo_id, str(digest), len(body), self.leases.end())
            await queries.add_references(conn, manifest_id, references)
            policy = await policy_in(conn, namespace_of(repository)) if pushed else None
            for tag in unique_tags:
                if policy is not None and policy.immutable_rule(tag):
                    current = await queries.set_tag_once(conn, repo_id, tag, manifest_id)
                    if current != manifest_id:
                        refuse_immutable(policy, [tag], f"moved to {digest}")
                else:
                    await queries.set_tag(conn, repo_id, tag, manifest_id)
            await self._record(
                conn, repository, digest, parsed, len(body), unique_tags, moved, pushed
            )

        try:
            await self.db.transact(store)
        except ManifestBlobUnknown:
            # The bytes are stored already: give them a row, so that garbage collection
            # removes them once the lease ends, unless a push of the same manifest uses them.
            async with self.db.write() as conn:
                await queries.add_blob(conn, str(digest), len(body), self.leases.end())
            raise

    @staticmethod
    async def _record(
        conn: AsyncConnection,
        repository: str,
        digest: Digest,
        parsed: ParsedManifest,
        size: int,
        tags: list[str],
        moved: dict[str, str],
        pushed: bool,
    ) -> None:
        """The events of a stored manifest: a push (or a mirror fetch) for each tag, or
        one by digest, and a tag event for each tag that pointed elsewhere before."""
        action = "push" if pushed else "mirror"
        rows = []
        each: list[str | None] = [*tags] or [None]
        for tag in each:
            target = events.descriptor(
                repository,
                "manifests",
                str(digest),
                parsed.media_type,
                size,
                tag=tag,
                artifactType=parsed.artifact_type,
            )
            rows.append(events.event(action, repository=repository, target=target))
            if tag in moved:
                target = {**target, "previousDigest": moved[tag]}
                rows.append(events.event("tag", repository=repository, target=target))
        await events.record_all(conn, rows)

    async def get(self, repository: str, reference: str, accept: list[str]) -> StoredManifest:
        """The manifest by tag or digest, in a media type the client accepts."""
        by_tag = not is_digest(reference)
        if by_tag:
            found = await self.hot.manifest_by_tag(repository, check_tag(reference))
        else:
            found = await self.hot.manifest_by_digest(repository, str(Digest.parse(reference)))
        if found is None:
            raise ManifestUnknown({"reference": reference})
        if accepts(accept, found.media_type):
            return found
        if by_tag and found.media_type in INDEX_TYPES:
            child = default_child(found.content)
            if child is not None:
                fallback = await self.hot.manifest_by_digest(repository, child)
                if fallback is not None and accepts(accept, fallback.media_type):
                    return fallback
        raise ManifestUnknown(
            {"reference": reference, "mediaType": found.media_type},
            message=f"the manifest is a {found.media_type}, which the client's Accept header "
            "does not admit",
        )

    async def delete(self, repository: str, reference: str) -> None:
        """Delete by digest (the manifest and its tags) or by tag (the tag only); never
        an immutable tag."""

        async def remove(conn: AsyncConnection) -> bool:
            policy = await policy_in(conn, namespace_of(repository))
            if is_digest(reference):
                digest = str(Digest.parse(reference))
                if policy.immutable_tags:
                    tags = await queries.tags_of(
                        conn,
                        and_(Manifest.digest == digest, Repository.name == repository),
                    )
                    refuse_immutable(policy, tags, f"deleted with manifest {digest}")
                deleted = await queries.delete_manifest(conn, repository, digest)
                target: dict[str, str] = {"digest": digest}
            else:
                tag = check_tag(reference)
                if policy.immutable_tags and await queries.tag_exists(conn, repository, tag):
                    refuse_immutable(policy, [tag], "deleted")
                deleted = await queries.delete_tag(conn, repository, tag)
                target = {"tag": tag}
            if deleted:
                await events.record(conn, "delete", repository=repository, target=target)
            return deleted

        deleted = await self.db.transact(remove)
        if not deleted:
            raise ManifestUnknown({"reference": reference})

    async def delete_repository(self, repository: str) -> queries.Deleted:
        """Delete a repository's tags, manifests and links; NAME_UNKNOWN if none."""

        async def remove(conn: AsyncConnection) -> queries.Deleted | None:
            policy = await policy_in(conn, namespace_of(repository))
            if policy.immutable_tags:
                tags = await queries.tags_of(conn, Repository.name == repository)
                refuse_immutable(policy, sorted(tags), "deleted with the repository")
            deleted = await queries.delete_repository(conn, repository)
            if deleted is not None:
                await events.record(
                    conn,
                    "delete",
                    repository=repository,
                    detail={"tags": deleted.tags, "manifests": deleted.manifests},
                )
            return deleted

        deleted = await self.db.transact(remove)
        if deleted is None:
            raise NameUnknown({"name": repository})
        return deleted

    async def referrers(
        self, repository: str, subject: Digest, artifact_type: str | None
    ) -> dict[str, object]:
        """The referrers index of a subject (empty when nothing refers to it)."""
        async with self.db.read() as conn:
            rows = await queries.referrers(conn, repository, str(subject), artifact_type)
        manifests = []
        for row in rows:
            descriptor: dict[str, object] = {
                "mediaType": row.media_type,
                "digest": row.digest,
                "size": row.size,
            }
            if row.artifact_type:
                descriptor["artifactType"] = row.artifact_type
            if row.annotations:
                descriptor["annotations"] = json.loads(row.annotations)
            manifests.append(descriptor)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


def default_child(content: bytes) -> str | None:
    for child in json.loads(content).get("manifests", []):
        platform = child.get("platform") or {}
        if all(platform.get(k) == v for k, v in _DEFAULT_PLATFORM.items()):
            return child.get("digest")
    return None
