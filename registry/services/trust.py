"""Trust: public keys a namespace (or the whole registry) trusts, and the record of what
each of them signed, decided when a signature arrives, never while a client waits for
a pull.

- A key is added to a namespace by its owners, or to the registry by admins (then every
  namespace trusts it); removing it removes its verdicts in the same statement (a
  cascade), so what only it signed counts as unsigned from that commit on, on every
  replica.
- When a cosign signature is pushed (its `sha256-<hex>.sig` tag, or a referrer of
  cosign's artifact type), each of its payloads is read from the store and checked
  against the keys the namespace trusts (registry/signatures.py); a key whose signature
  verifies over a payload that names the subject in this repository gets a verdict on
  the subject. A signature whose subject is not in the repository yet is checked again
  when a key is added (below), not when the subject arrives: cosign signs what is there.
- A key added is checked against the signatures already stored by a worker in any
  process (its row is leased while it does; `scanned_at` marks it done), so a namespace
  with many signatures does not hold the request that added the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from registry import context
from registry.digest import Digest
from registry.errors import Conflict, Invalid, NotFound
from registry.kept import check_kept_name, keeper
from registry.metadata import events
from registry.metadata import trust as q
from registry.metadata.accounts import namespace_id
from registry.metadata.database import Database
from registry.metadata.models import now
from registry.names import namespace_of
from registry.signatures import (
    MAX_PAYLOAD,
    SIGNATURE_TAG,
    SIMPLE_SIGNING,
    KeyInvalid,
    TrustedKey,
    checked_payload,
    load_key,
    signers,
)
from registry.storage import BlobStore
from registry.storage.base import StorageError

log = logging.getLogger("registry.trust")

_MARKER = SIMPLE_SIGNING.encode()
SCAN_LEASE_SECONDS = 300


# A trusted key as the API, the CLI and the console show it.
KeyInfo = q.KeyRow


class Trust:
    def __init__(self, db: Database, store: BlobStore, poll_seconds: float = 1.0) -> None:
        self.db = db
        self.store = store
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()

    # Keys

    async def add_key(self, namespace: str, name: str, pem: str) -> KeyInfo:
        check_kept_name(name)
        try:
            key = load_key(pem)
        except KeyInvalid as exc:
            raise Invalid(message=f"pem: {exc}") from None

        async def insert(conn: AsyncConnection) -> KeyInfo:
            if namespace and await namespace_id(conn, namespace) is None:
                raise NotFound(message=f"no namespace named {namespace!r}")
            made = await q.insert_key(
                conn,
                namespace=namespace,
                name=name,
                algorithm=key.algorithm,
                fingerprint=key.fingerprint,
                pem=key.pem,
                created_by=context.current().actor[:255],
            )
            if made is None:
                raise Conflict(
                    message=f"{keeper(namespace)} trusts a key named {name!r} or this very "
                    f"key ({key.fingerprint}) already"
                )
            await events.record(
                conn,
                "trust.key.create",
                namespace=namespace or None,
                detail={"key": name, "fingerprint": key.fingerprint},
            )
            return next(k for k in await q.keys(conn, namespace) if k.id == made)

        added = await self.db.transact(insert)
        self.wake.set()  # this process's scanner checks what is stored at once
        return added

    async def keys(self, namespace: str | None) -> list[KeyInfo]:
        async with self.db.read() as conn:
            return await q.keys(conn, namespace)

    async def remove_key(self, namespace: str, name: str) -> None:
        async def delete(conn: AsyncConnection) -> None:
            if not await q.remove_key(conn, namespace, name):
                raise NotFound(message=f"{keeper(namespace)} has no trusted key named {name!r}")
            await events.record(
                conn, "trust.key.delete", namespace=namespace or None, detail={"key": name}
            )

        await self.db.transact(delete)

    # Signatures

    async def arrived(
        self, repository: str, digest: str, content: bytes, tags: list[str], subject: str | None
    ) -> int:
        """A manifest was pushed (with its tags and its `subject`): if it is a cosign
        signature, record which trusted keys signed what it signs; how many verdicts. Any
        other manifest costs one scan of its bytes for the simple-signing media type."""
        if _MARKER not in content:
            return 0
        signs = _signs(tags, subject)
        if signs is None:
            return 0
        async with self.db.read() as conn:
            keys = await q.keys_for(conn, namespace_of(repository))
        return await self._check(repository, signs, digest, content, keys)

    async def _check(
        self,
        repository: str,
        subject: str,
        signature: str,
        content: bytes,
        keys: list[q.KeyRow],
    ) -> int:
        if not keys:
            return 0
        found = await signers(
            subject,
            repository,
            [_load(row) for row in keys],
            [content],
            self._payload,
            not_counted=lambda why: log.info(
                "signature %s in %s: not counted (%s)", signature, repository, why
            ),
        )
        if not found:
            return 0
        ids = sorted(keys[n].id for n in found)

        async def record(conn: AsyncConnection) -> int:
            subject_id = await q.manifest_id(conn, repository, subject)
            if subject_id is None:
                return 0  # the subject is not here (yet): a key added later looks again
            added = await q.add_verdicts(conn, subject_id, ids, signature)
            if added:
                # What CI and deployments wait for: this image is signed, by these keys.
                await events.record(
                    conn,
                    "signature",
                    repository=repository,
                    target={"digest": subject, "signature": signature},
                    detail={"keys": sorted(k.name for k in keys if k.id in added)},
                )
            return len(ids)

        return await self.db.transact(record)

    async def _payload(self, digest: str) -> bytes | None:
        try:
            parsed = Digest.parse(digest)
            size = await self.store.stat(parsed)
            if size is None or size > MAX_PAYLOAD:
                return None
            return checked_payload(await self.store.read_bytes(parsed), digest)
        except (StorageError, ValueError):
            return None

    # Keys added: the signatures already stored

    async def scan_step(self) -> int:
        """Check the stored signatures against one key not checked yet; how many verdicts
        it got."""
        until = now() + timedelta(seconds=SCAN_LEASE_SECONDS)

        async def claim(conn: AsyncConnection) -> q.KeyRow | None:
            return await q.claim_scan(conn, until)

        key = await self.db.transact(claim)
        if key is None:
            return 0
        async with self.db.read() as conn:
            stored = await q.stored_signatures(conn, key.namespace)
        found = 0
        for signature in stored:
            tags = [signature.tag] if signature.tag else []
            subject = _signs(tags, signature.subject)
            if subject is not None:
                found += await self._check(
                    signature.repository, subject, signature.digest, signature.content, [key]
                )

        async def done(conn: AsyncConnection) -> None:
            await q.scanned(conn, key.id)

        await self.db.transact(done)
        log.info(
            "trusted key %r of %s: %d stored signatures checked, %d verdicts",
            key.name,
            keeper(key.namespace),
            len(stored),
            found,
        )
        return found

    async def run(self) -> None:
        """The scanner of `registry serve`: a key added anywhere is checked here too."""
        while True:
            try:
                async with self.db.read() as conn:
                    waiting = await q.unscanned(conn)
                if waiting:
                    await self.scan_step()
                    continue
            except Exception as exc:
                log.error(
                    "trusted keys: a scan failed (%s: %s); trying again", type(exc).__name__, exc
                )
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_seconds)

    async def signed_in(self, repository: str, digests: list[str]) -> dict[str, list[str]]:
        """Which trusted keys signed each of these manifests (the console's tags)."""
        async with self.db.read() as conn:
            return await q.signed_in(conn, repository, digests)


def _signs(tags: list[str], subject: str | None) -> str | None:
    """What a signature signs: the digest its cosign tag names, or its subject."""
    for tag in tags:
        found = SIGNATURE_TAG.fullmatch(tag)
        if found:
            return f"sha256:{found[1]}"
    return subject


def _load(row: q.KeyRow) -> TrustedKey | None:
    try:
        return load_key(row.pem)
    except KeyInvalid:
        return None
