"""Trusted keys and their verdicts (what each signed), and the signature manifests a key
added later is checked against. Each query takes an open connection; the caller owns
the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from registry.metadata.models import (
    Manifest,
    ManifestReference,
    Repository,
    SignatureVerdict,
    Tag,
    TrustedKey,
    now,
    utc,
)
from registry.metadata.statements import dialect_insert, insert_new
from registry.signatures import COSIGN_ARTIFACT


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: int
    namespace: str
    name: str
    algorithm: str
    fingerprint: str
    pem: str
    created_at: datetime
    created_by: str
    scanned_at: datetime | None

    @property
    def scanned(self) -> bool:
        """The signatures stored before the key was added have been checked against it."""
        return self.scanned_at is not None


_KEY = (
    TrustedKey.id,
    TrustedKey.namespace,
    TrustedKey.name,
    TrustedKey.algorithm,
    TrustedKey.fingerprint,
    TrustedKey.pem,
    TrustedKey.created_at,
    TrustedKey.created_by,
    TrustedKey.scanned_at,
)


def _key(row: tuple[object, ...]) -> KeyRow:
    values = list(row)
    values[6] = utc(values[6])  # type: ignore[arg-type]
    values[8] = utc(values[8]) if values[8] is not None else None  # type: ignore[arg-type]
    return KeyRow(*values)  # type: ignore[arg-type]


async def insert_key(conn: AsyncConnection, **values: object) -> int | None:
    """The new key's id; None if the namespace has a key of that name or fingerprint."""
    return await insert_new(conn, TrustedKey, **values, created_at=now())


async def keys(conn: AsyncConnection, namespace: str | None) -> list[KeyRow]:
    """A namespace's keys ('' for the registry's), or every key (None)."""
    query = select(*_KEY).order_by(TrustedKey.namespace, TrustedKey.name)
    if namespace is not None:
        query = query.where(TrustedKey.namespace == namespace)
    return [_key(tuple(row)) for row in await conn.execute(query)]


async def keys_for(conn: AsyncConnection, namespace: str) -> list[KeyRow]:
    """The keys a namespace trusts: its own and the registry's."""
    query = select(*_KEY).where(TrustedKey.namespace.in_([namespace, ""]))
    return [_key(tuple(row)) for row in await conn.execute(query.order_by(TrustedKey.id))]


async def remove_key(conn: AsyncConnection, namespace: str, name: str) -> bool:
    """Remove a key; its verdicts go with it (a cascade): what only it signed is unsigned
    from this commit on, for every replica."""
    # The key's row first (FOR UPDATE): a verdict of it being written meanwhile has
    # either committed, and is among the manifests below, or waits for this commit and
    # then fails on its foreign key.
    key_id = await conn.scalar(
        select(TrustedKey.id)
        .where(TrustedKey.namespace == namespace, TrustedKey.name == name)
        .with_for_update()
    )
    if key_id is None:
        return False
    signed = select(SignatureVerdict.manifest_id).where(SignatureVerdict.key_id == key_id)
    touched = [*await conn.scalars(signed), *await conn.scalars(children_of(signed))]
    await conn.execute(delete(TrustedKey).where(TrustedKey.id == key_id))
    await refresh_signed(conn, touched)
    return True


def children_of(indexes: Select[Any] | list[int]) -> Select[Any]:
    """The ids of the manifests these indexes list in their own repositories."""
    child, index = aliased(Manifest), aliased(Manifest)
    return (
        select(child.id)
        .join(ManifestReference, ManifestReference.digest == child.digest)
        .join(index, index.id == ManifestReference.manifest_id)
        .where(
            ManifestReference.kind == "manifest",
            index.repository_id == child.repository_id,
            index.id.in_(indexes),
        )
    )


def _signed_now() -> ColumnElement[bool]:
    """`manifests.signed` from the verdicts: a trusted key signed the manifest, or an index
    of its repository that lists it (correlated to the manifests row being updated)."""
    index, verdict = aliased(Manifest), aliased(SignatureVerdict)
    own = exists().where(SignatureVerdict.manifest_id == Manifest.id)
    listed = (
        select(ManifestReference.digest)
        .join(index, index.id == ManifestReference.manifest_id)
        .join(verdict, verdict.manifest_id == index.id)
        .where(
            ManifestReference.digest == Manifest.digest,
            ManifestReference.kind == "manifest",
            index.repository_id == Manifest.repository_id,
        )
        .exists()
    )
    return or_(own, listed)


async def _lock(conn: AsyncConnection, ids: list[int]) -> list[int]:
    """Hold these manifests' rows against other writers of `signed`, in id order (FOR NO
    KEY UPDATE: a verdict's foreign key, FOR KEY SHARE, does not wait for it)."""
    query = select(Manifest.id).where(Manifest.id.in_(ids)).order_by(Manifest.id)
    return list(await conn.scalars(query.with_for_update(key_share=True)))


async def refresh_signed(conn: AsyncConnection, ids: list[int]) -> None:
    """Decide `signed` again for these manifests, after verdicts went (a key removed, an
    index deleted). The rows are locked by one statement and decided by the next: on
    PostgreSQL the second reads a snapshot taken after the locks, so a verdict another
    transaction added (it holds the row until it commits) counts."""
    held = await _lock(conn, sorted(set(ids)))
    if held:
        await conn.execute(
            update(Manifest).where(Manifest.id.in_(held)).values(signed=_signed_now())
        )


async def mark_signed(conn: AsyncConnection, manifest_id: int) -> None:
    """A verdict came for this manifest: it is signed, and so is each manifest it lists in
    its repository (a multi-platform image is signed through its index)."""
    ids = [manifest_id, *await conn.scalars(children_of([manifest_id]))]
    held = await _lock(conn, ids)
    await conn.execute(
        update(Manifest)
        .where(Manifest.id.in_(held), Manifest.signed.is_(False))
        .values(signed=True)
    )


async def remove_all(conn: AsyncConnection, namespace: str) -> None:
    """A namespace's keys, removed one by one: its repositories stay, and what the keys
    signed becomes unsigned."""
    names = await conn.scalars(
        select(TrustedKey.name).where(TrustedKey.namespace == namespace).order_by(TrustedKey.id)
    )
    for name in list(names):
        await remove_key(conn, namespace, name)


async def add_verdicts(
    conn: AsyncConnection, manifest_id: int, key_ids: list[int], signature: str
) -> set[int]:
    """Record that these keys signed the manifest; the keys that had not yet (the rows
    this statement inserted: a signature that arrives twice at once counts once)."""
    if not key_ids:
        return set()
    rows = [
        {"manifest_id": manifest_id, "key_id": k, "signature": signature, "verified_at": now()}
        for k in key_ids
    ]
    insert = dialect_insert(conn, SignatureVerdict).values(rows).on_conflict_do_nothing()
    added = set(await conn.scalars(insert.returning(SignatureVerdict.key_id)))
    if added:
        await mark_signed(conn, manifest_id)
    return added


async def signed_in(
    conn: AsyncConnection, repository: str, digests: list[str]
) -> dict[str, list[str]]:
    """The names of the keys that signed each of these manifests of a repository."""
    found: dict[str, list[str]] = {}
    if digests:
        rows = await conn.execute(
            select(Manifest.digest, TrustedKey.name)
            .join(SignatureVerdict, SignatureVerdict.manifest_id == Manifest.id)
            .join(TrustedKey, TrustedKey.id == SignatureVerdict.key_id)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == repository, Manifest.digest.in_(digests))
            .order_by(TrustedKey.name)
        )
        for digest, name in rows:
            found.setdefault(digest, []).append(name)
    return found


async def claim_scan(conn: AsyncConnection, until: datetime) -> KeyRow | None:
    """Lease a key whose stored signatures no one has checked yet."""
    moment = now()
    free = or_(TrustedKey.scan_lease_until.is_(None), TrustedKey.scan_lease_until <= moment)
    picked = await conn.scalar(
        select(TrustedKey.id)
        .where(TrustedKey.scanned_at.is_(None), free)
        .order_by(TrustedKey.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if picked is None:
        return None
    row = (
        await conn.execute(
            update(TrustedKey)
            .where(TrustedKey.id == picked, TrustedKey.scanned_at.is_(None), free)
            .values(scan_lease_until=until)
            .returning(*_KEY)
        )
    ).first()
    return _key(tuple(row)) if row else None


async def scanned(conn: AsyncConnection, key_id: int) -> None:
    await conn.execute(
        update(TrustedKey)
        .where(TrustedKey.id == key_id)
        .values(scanned_at=now(), scan_lease_until=None)
    )


async def unscanned(conn: AsyncConnection) -> bool:
    found = await conn.scalar(select(TrustedKey.id).where(TrustedKey.scanned_at.is_(None)).limit(1))
    return found is not None


@dataclass(frozen=True, slots=True)
class StoredSignature:
    repository: str
    tag: str | None
    content: bytes
    digest: str
    subject: str | None


async def stored_signatures(conn: AsyncConnection, namespace: str) -> list[StoredSignature]:
    """Signature manifests in a namespace's repositories ('' : every one): cosign's
    `sha256-<hex>.sig` tags, and referrers of cosign's artifact type."""
    tagged = (
        select(Repository.name, Tag.name, Manifest.content, Manifest.digest, Manifest.subject)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .join(Repository, Repository.id == Tag.repository_id)
        .where(Tag.name.like("sha256-%.sig"))
    )
    referring = (
        select(Repository.name, Manifest.content, Manifest.digest, Manifest.subject)
        .join(Repository, Repository.id == Manifest.repository_id)
        .where(Manifest.subject.is_not(None), Manifest.artifact_type == COSIGN_ARTIFACT)
    )
    if namespace:
        tagged = tagged.where(Repository.namespace == namespace)
        referring = referring.where(Repository.namespace == namespace)
    found = [StoredSignature(r, t, bytes(c), d, s) for r, t, c, d, s in await conn.execute(tagged)]
    found += [
        StoredSignature(r, None, bytes(c), d, s) for r, c, d, s in await conn.execute(referring)
    ]
    return found


async def manifest_id(conn: AsyncConnection, repository: str, digest: str) -> int | None:
    return await conn.scalar(
        select(Manifest.id)
        .join(Repository, Repository.id == Manifest.repository_id)
        .where(Repository.name == repository, Manifest.digest == digest)
    )
