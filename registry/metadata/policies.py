"""Namespace policies: immutable tags, retention, quota, signatures. Each query takes an open
connection and the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import NamespacePolicy, Repository, now
from registry.metadata.statements import Statement, dialect_insert


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    namespace: str
    immutable_tags: str  # JSON
    retention: str | None  # JSON
    quota_bytes: int | None
    signature_policy: str = "off"


_COLUMNS = (
    NamespacePolicy.namespace,
    NamespacePolicy.immutable_tags,
    NamespacePolicy.retention,
    NamespacePolicy.quota_bytes,
    NamespacePolicy.signature_policy,
)


# A push's read of its namespace's policy, in its program (services/manifests.py).
BY_NAMESPACE = Statement(
    "policy",
    "SELECT namespace, immutable_tags, retention, quota_bytes, signature_policy "
    "FROM namespace_policies "
    "WHERE namespace = :namespace",
)


async def policy(conn: AsyncConnection, namespace: str) -> StoredPolicy | None:
    row = (
        await conn.execute(select(*_COLUMNS).where(NamespacePolicy.namespace == namespace))
    ).first()
    return None if row is None else StoredPolicy(*row)


async def policies_with_retention(conn: AsyncConnection) -> list[StoredPolicy]:
    rows = await conn.execute(select(*_COLUMNS).where(NamespacePolicy.retention.is_not(None)))
    return [StoredPolicy(*row) for row in rows]


async def save_policy(conn: AsyncConnection, stored: StoredPolicy) -> None:
    values = {
        "immutable_tags": stored.immutable_tags,
        "retention": stored.retention,
        "quota_bytes": stored.quota_bytes,
        "signature_policy": stored.signature_policy,
        "updated_at": now(),
    }
    stmt = dialect_insert(conn, NamespacePolicy).values(namespace=stored.namespace, **values)
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=[NamespacePolicy.namespace], set_=values)
    )
    # The manifest GET reads it from the repositories' rows. One made meanwhile waited
    # for the row above (repositories.ADD), so this statement's snapshot has it.
    await conn.execute(
        update(Repository)
        .where(
            Repository.namespace == stored.namespace,
            Repository.signature_policy != stored.signature_policy,
        )
        .values(signature_policy=stored.signature_policy)
    )
