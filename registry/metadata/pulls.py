"""Queries of pull counts (migration 0012). Each takes an open
connection and the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import Manifest, ManifestPulls, Repository, RepositoryPulls
from registry.metadata.statements import dialect_insert


async def add(
    conn: AsyncConnection,
    table: type[RepositoryPulls] | type[ManifestPulls],
    counts: Mapping[int, tuple[int, datetime]],
) -> None:
    """Add pulls (id -> (count, last pull)) to the rows of repositories or manifests that
    still exist; those deleted meanwhile are skipped by the SELECT."""
    parent, key = (
        (Repository, RepositoryPulls.repository_id)
        if table is RepositoryPulls
        else (Manifest, ManifestPulls.manifest_id)
    )
    for ident in sorted(counts):  # one order of row locks for every flush
        count, last = counts[ident]
        rows = select(parent.id, literal(count), literal(last)).where(parent.id == ident)
        stmt = dialect_insert(conn, table).from_select([key.key, "pulls", "last_pulled_at"], rows)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[key],
                set_={
                    "pulls": table.pulls + stmt.excluded.pulls,
                    "last_pulled_at": func.max(table.last_pulled_at, stmt.excluded.last_pulled_at)
                    if conn.dialect.name == "sqlite"
                    else func.greatest(table.last_pulled_at, stmt.excluded.last_pulled_at),
                },
            )
        )
