"""Pushing, pulling and deleting manifests; tags and referrers."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry import context
from registry.config import LimitsSettings
from registry.digest import Digest, is_digest
from registry.errors import (
    Conflict,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestUnknown,
    NameUnknown,
    Unavailable,
)
from registry.mediatypes import INDEX_TYPES, OCI_INDEX, ParsedManifest, accepts, parse_manifest
from registry.metadata import accounts, blobs, events, manifests, policies, push, repositories
from registry.metadata import tags as tag_queries
from registry.metadata.database import Database
from registry.metadata.manifests import Deleted, StoredManifest
from registry.metadata.models import Manifest, Repository, now
from registry.metadata.policies import StoredPolicy
from registry.metadata.statements import Program, program
from registry.names import check_tag, namespace_of
from registry.services.leases import Leases
from registry.services.policies import Policy, from_stored, policy_in, refuse_immutable
from registry.storage import BlobStore

# The platform served to a client that asked for a tag whose manifest is an index it
# cannot read (Distribution does the same for old clients).
_DEFAULT_PLATFORM = {"os": "linux", "architecture": "amd64"}
# Namespaces whose immutable-tag rules a process remembers for its pushes on PostgreSQL
# (ManifestService._push), and how often a push is made again when they changed.
_RULES_KEPT = 10_000
_RULES_ATTEMPTS = 3


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
        self.leases = leases
        # Namespace -> its immutable-tag rules (JSON as stored), as the last push saw them.
        self._rules: dict[str, str] = {}
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
        references = [(d, "blob") for d in dict.fromkeys(parsed.blobs)]
        references += [(d, "manifest") for d in dict.fromkeys(c.digest for c in parsed.children)]
        unique_tags = list(dict.fromkeys(tags))
        namespace = namespace_of(repository)
        # Made here: a descriptor reads the request's host, and `by` is the request's
        # context, since on SQLite the program runs on another thread, outside it.
        ctx = context.current()
        each: list[str | None] = [*unique_tags] or [None]
        targets = [
            (
                tag,
                events.descriptor(
                    repository,
                    "manifests",
                    str(digest),
                    parsed.media_type,
                    len(body),
                    tag=tag,
                    artifactType=parsed.artifact_type,
                    subject=parsed.subject,
                ),
            )
            for tag in each
        ]
        action = "push" if pushed else "mirror"
        if not self.db.is_sqlite:
            previous = f"previous-{uuid.uuid4().hex}"
            await self._push(
                push.Push(
                    namespace=namespace,
                    repository=repository,
                    digest=str(digest),
                    body=body,
                    parsed=parsed,
                    untagged_at=None if tags else now(),
                    lease_end=self.leases.end(),
                    tags=unique_tags,
                    references=references,
                    events=[_pushed(action, repository, target, ctx) for _, target in targets],
                    tag_events=[
                        _moved(repository, target, previous, ctx)
                        for tag, target in targets
                        if tag is not None
                    ],
                    previous=previous,
                    pushed=pushed,
                    check=check,
                    owner=_owner(ctx),
                    namespace_event=(
                        _namespace_event(namespace, repository, ctx) if pushed else None
                    ),
                )
            )
            return

        def store() -> Program[None]:
            # SQLite's push: one call on its thread, under its one writer. PostgreSQL's
            # (migration 0028's function) runs the same statements in the order of its
            # row locks.
            if pushed:
                yield from _namespace_made(namespace, repository, ctx)
            repository_id = yield from _repository_made(repository, namespace)
            untagged_at = None if tags else now()
            put = yield manifests.put(repository_id, str(digest), body, parsed, untagged_at)
            manifest_id, inserted = put[0]
            moved = yield from _tags_moved(repository_id, unique_tags, manifest_id)
            if check:
                yield from _check_references(repository, repository_id, parsed)
            yield blobs.ADD_KEPT(digest=str(digest), size=len(body), lease_end=self.leases.end())
            yield blobs.LINK_BYTES(repository_id=repository_id, digest=str(digest))
            # A manifest stored before has its references: they come with its content.
            if references and inserted:
                yield manifests.ADD_REFERENCES(
                    manifest_id=manifest_id,
                    digests=[d for d, _ in references],
                    kinds=[k for _, k in references],
                )
            policy = None
            if pushed and unique_tags:
                stored = yield policies.BY_NAMESPACE(namespace=namespace)
                policy = from_stored(namespace, StoredPolicy(*stored[0]) if stored else None)
            yield from _events(action, repository, targets, moved, ctx)
            yield from _tags_set(repository_id, unique_tags, manifest_id, policy, digest)

        try:
            await program(self.db, store, "manifest_put")
        except ManifestBlobUnknown:
            await self._bytes_kept(digest, len(body))
            raise

    async def _push(self, p: push.Push) -> None:
        """PostgreSQL's push: one call, matched against the namespace's immutable-tag
        rules as this process last saw them (none, at first); the call says if they
        are not those any more, and is made again with them."""
        rules = self._rules.get(p.namespace, "[]")
        for _ in range(_RULES_ATTEMPTS):
            policy = from_stored(p.namespace, StoredPolicy(p.namespace, rules, None, None))
            immutable = [policy.immutable_rule(tag) is not None for tag in p.tags]
            try:
                changed = await push.push(
                    self.db, p, rules if p.pushed and p.tags else None, immutable
                )
            except push.ReferenceMissing as missing:
                await self._bytes_kept(Digest.parse(p.digest), len(p.body))
                raise _blob_unknown(p.repository, missing.digest) from None
            except push.ImmutableTagMoved as moved:
                refuse_immutable(policy, [moved.tag], f"moved to {p.digest}")
                raise
            if changed is None:
                return
            if len(self._rules) >= _RULES_KEPT:
                self._rules.clear()
            self._rules[p.namespace] = rules = changed
        raise Unavailable(
            {"namespace": p.namespace},
            message=f"the immutable-tag rules of namespace {p.namespace!r} changed "
            f"{_RULES_ATTEMPTS} times during the push; retry it",
            headers={"Retry-After": "1"},
        )

    async def _bytes_kept(self, digest: Digest, size: int) -> None:
        """A refused push's bytes are stored already: give them a row, so that garbage
        collection removes them once the lease ends, unless a push of the same manifest
        uses them."""
        async with self.db.write() as conn:
            await blobs.add_blob(conn, str(digest), size, self.leases.end())

    async def get(self, repository: str, reference: str, accept: list[str]) -> StoredManifest:
        """The manifest by tag or digest, in a media type the client accepts."""
        by_tag = not is_digest(reference)
        if by_tag:
            found = await manifests.by_tag(self.db, repository, check_tag(reference))
        else:
            found = await manifests.by_digest(self.db, repository, str(Digest.parse(reference)))
        if found is None:
            raise ManifestUnknown({"reference": reference})
        if accepts(accept, found.media_type):
            return found
        if by_tag and found.media_type in INDEX_TYPES:
            child = default_child(found.content)
            if child is not None:
                fallback = await manifests.by_digest(self.db, repository, child)
                if fallback is not None and accepts(accept, fallback.media_type):
                    return fallback
        raise ManifestUnknown(
            {"reference": reference, "mediaType": found.media_type},
            message=f"the manifest is a {found.media_type}, which the client's Accept header "
            "does not admit",
        )

    async def delete(self, repository: str, reference: str, *, untagged: bool = False) -> None:
        """Delete by digest (the manifest and its tags) or by tag (the tag only); never
        an immutable tag. With `untagged`, a manifest only while no tag points at it
        (409 otherwise): the console's delete of what it showed as untagged, where a tag
        pushed since must not go with it."""

        async def remove(conn: AsyncConnection) -> bool:
            policy = await policy_in(conn, namespace_of(repository))
            if is_digest(reference):
                digest = str(Digest.parse(reference))
                if untagged:  # no tag is set on it from here to the commit
                    mine = select(Repository.id).where(Repository.name == repository)
                    await manifests.lock_manifests(
                        conn, and_(Manifest.digest == digest, Manifest.repository_id.in_(mine))
                    )
                if policy.immutable_tags or untagged:
                    tags = await tag_queries.tags_of(
                        conn,
                        and_(Manifest.digest == digest, Repository.name == repository),
                    )
                    if untagged and tags:
                        raise Conflict(
                            {"digest": digest},
                            message=f"{digest} is tagged again ({', '.join(sorted(tags))}) "
                            "since it was shown untagged: it stays",
                        )
                    refuse_immutable(policy, tags, f"deleted with manifest {digest}")
                deleted = await manifests.delete_manifest(conn, repository, digest)
                target: dict[str, str] = {"digest": digest}
            else:
                tag = check_tag(reference)
                if policy.immutable_tags and await tag_queries.tag_exists(conn, repository, tag):
                    refuse_immutable(policy, [tag], "deleted")
                deleted = await tag_queries.delete_tag(conn, repository, tag)
                target = {"tag": tag}
            if deleted:
                await events.record(conn, "delete", repository=repository, target=target)
            return deleted

        deleted = await self.db.transact(remove)
        if not deleted:
            raise ManifestUnknown({"reference": reference})

    async def delete_repository(self, repository: str) -> Deleted:
        """Delete a repository's tags, manifests and links; NAME_UNKNOWN if none."""

        async def remove(conn: AsyncConnection) -> Deleted | None:
            policy = await policy_in(conn, namespace_of(repository))
            if policy.immutable_tags:
                tags = await tag_queries.tags_of(conn, Repository.name == repository)
                refuse_immutable(policy, sorted(tags), "deleted with the repository")
            deleted = await manifests.delete_repository(conn, repository)
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
            found = await manifests.referrers(conn, repository, str(subject), artifact_type)
        listed = []
        for row in found:
            descriptor: dict[str, object] = {
                "mediaType": row.media_type,
                "digest": row.digest,
                "size": row.size,
            }
            if row.artifact_type:
                descriptor["artifactType"] = row.artifact_type
            if row.annotations:
                descriptor["annotations"] = json.loads(row.annotations)
            listed.append(descriptor)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed}


def default_child(content: bytes) -> str | None:
    for child in json.loads(content).get("manifests", []):
        platform = child.get("platform") or {}
        if all(platform.get(k) == v for k, v in _DEFAULT_PLATFORM.items()):
            return str(child["digest"]) if "digest" in child else None
    return None


def _pushed(
    action: str, repository: str, target: dict[str, Any], by: context.Context
) -> dict[str, Any]:
    """The events row of a push (or a mirror's fetch) of the manifest, by a tag or not."""
    return events.event(action, repository=repository, target=target, by=by)


def _moved(
    repository: str, target: dict[str, Any], previous: str, by: context.Context
) -> dict[str, Any]:
    """The events row of a tag pushed that pointed at `previous` before."""
    moved = {**target, "previousDigest": previous}
    return events.event("tag", repository=repository, target=moved, by=by)


def _events(
    action: str,
    repository: str,
    targets: list[tuple[str | None, dict[str, Any]]],
    moved: dict[str, str],
    by: context.Context,
) -> Program[None]:
    """A push (or a mirror fetch) for each tag, or one by digest, and a tag event for
    each tag that pointed elsewhere before."""
    for tag, target in targets:
        yield events.RECORD(**_pushed(action, repository, target, by))
        if tag is not None and tag in moved:
            yield events.RECORD(**_moved(repository, target, moved[tag], by))


def _repository_made(repository: str, namespace: str) -> Program[int]:
    """The repository's id, made by its first push."""
    found = yield repositories.ID(repository=repository)
    if not found:
        yield repositories.ADD(repository=repository, namespace=namespace)
        found = yield repositories.ID(repository=repository)
    return int(found[0][0])


def _tags_moved(repository_id: int, tags: list[str], manifest_id: int) -> Program[dict[str, str]]:
    """Tag -> the manifest it points at now, for the tags that point elsewhere."""
    moved: dict[str, str] = {}
    for tag in tags:
        points = yield tag_queries.MOVES(
            repository_id=repository_id, tag=tag, manifest_id=manifest_id
        )
        if points:
            moved[tag] = points[0][0]
    return moved


def _tags_set(
    repository_id: int,
    tags: list[str],
    manifest_id: int,
    policy: Policy | None,
    digest: Digest,
) -> Program[None]:
    """Point the tags at the manifest; an immutable one only if it points nowhere yet."""
    for tag in tags:
        row = {"repository_id": repository_id, "tag": tag, "manifest_id": manifest_id}
        if policy is not None and policy.immutable_rule(tag):
            yield tag_queries.ADD(**row)
            current = yield tag_queries.TARGET(repository_id=repository_id, tag=tag)
            if current[0][0] != manifest_id:
                refuse_immutable(policy, [tag], f"moved to {digest}")
        else:
            yield tag_queries.SET(**row)


def _namespace_made(namespace: str, repository: str, ctx: context.Context) -> Program[None]:
    """Make the namespace of a push if it has none, so that every repository pushed is in
    a namespace that lists, policies and usage know: private, owned by the user who
    pushed (only an admin may push to a namespace that does not exist; on an open
    registry, anyone, and it has no owner), and audited."""
    made = yield accounts.ADD_NAMESPACE(namespace=namespace)
    if not made:
        return
    owner = _owner(ctx)
    if owner is not None:
        yield accounts.ADD_OWNER(namespace_id=made[0][0], user=owner)
    yield events.RECORD(**_namespace_event(namespace, repository, ctx))


def _owner(ctx: context.Context) -> str | None:
    """Who owns a namespace a push makes: the user who pushed, if one did."""
    return ctx.actor if ctx.actor_kind == "user" and ctx.actor else None


def _namespace_event(namespace: str, repository: str, ctx: context.Context) -> dict[str, Any]:
    detail = {"public": False, "owner": _owner(ctx), "first_push": repository}
    return events.event("namespace.create", namespace=namespace, detail=detail, by=ctx)


def _check_references(repository: str, repository_id: int, parsed: ParsedManifest) -> Program[None]:
    """Every blob and child manifest must be in the repository already. Read in the
    transaction that stores the references, FOR SHARE: garbage collection cannot remove
    one of them in between (services/leases.py)."""
    missing: set[str] = set()
    wanted = sorted(set(parsed.blobs))
    if wanted:
        linked = yield manifests.LINKED_BLOBS(repository_id=repository_id, digests=wanted)
        missing.update(set(wanted) - {row[0] for row in linked})
    children = sorted({c.digest for c in parsed.children})
    if children:
        held = yield manifests.HELD(repository_id=repository_id, digests=children)
        missing.update(set(children) - {row[0] for row in held})
    if missing:
        raise _blob_unknown(repository, min(missing))


def _blob_unknown(repository: str, digest: str) -> ManifestBlobUnknown:
    return ManifestBlobUnknown(
        {"digest": digest},
        message=f"manifest references {digest}, which is not in repository "
        f"{repository}: push it first",
    )
