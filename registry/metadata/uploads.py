"""Upload sessions: their rows, and the claim a request takes to write to one (why
claims, and how a dead holder's is taken over, is told in services/uploads.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.database import Database
from registry.metadata.models import Upload
from registry.metadata.statements import Statement, rows

# Unless the owner has `limit` sessions open already. Two at once may both pass the
# count, so an owner can exceed the limit by the requests it has in flight: the bound
# is on what is left open, which is what costs.
CREATE = Statement(
    "create_upload",
    "INSERT INTO uploads (id, repository, owner, algorithm, created_at, updated_at) "
    "SELECT :id, :repository, :owner, :algorithm, :now, :now "
    "WHERE (SELECT count(*) FROM uploads WHERE owner = :owner) < :limit",
)
# A request takes the session to write to it, unless another one holds it and showed
# it is alive since `:stale`; with the saved hash.
CLAIM = Statement(
    "claim_upload",
    "UPDATE uploads SET writer = :writer, writing_since = :now, updated_at = :now "
    "WHERE id = :id AND repository = :repository "
    "AND (writer IS NULL OR writing_since < :stale) RETURNING algorithm, hashed, hash_state",
)
# The claim of a holder whose process has ended.
TAKE = Statement(
    "take_upload",
    "UPDATE uploads SET writer = :writer, writing_since = :now, updated_at = :now "
    "WHERE id = :id AND repository = :repository AND writer = :holder "
    "RETURNING algorithm, hashed, hash_state",
)
RELEASE = Statement(
    "release_upload",
    "UPDATE uploads SET writer = NULL, writing_since = NULL, updated_at = :now, "
    "hashed = :hashed, hash_state = :hash_state WHERE id = :id AND writer = :writer",
)
DELETE = Statement("delete_upload", "DELETE FROM uploads WHERE id = :id")
HOLDER = Statement(
    "upload_holder", "SELECT repository, writer FROM uploads WHERE id = :id", point=True
)


async def holder(db: Database, upload_id: str) -> tuple[str, str | None] | None:
    """The repository an upload session belongs to, and the writer holding it."""
    found = await rows(db, HOLDER(id=upload_id))
    return (str(found[0][0]), found[0][1]) if found else None


async def uploads_idle_since(conn: AsyncConnection, cutoff: datetime) -> list[str]:
    """Sessions that have not moved since `cutoff`."""
    return list((await conn.scalars(select(Upload.id).where(Upload.updated_at < cutoff))).all())


async def upload_count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(Upload)) or 0)


async def renew_upload_claims(
    conn: AsyncConnection, writers: Sequence[str], moment: datetime
) -> set[str]:
    """Renew the claims of these writers; those still theirs."""
    renewed = await conn.scalars(
        update(Upload)
        .where(Upload.writer.in_(writers))
        .values(writing_since=moment)
        .returning(Upload.writer)
    )
    return {str(w) for w in renewed}


async def upload_ids(conn: AsyncConnection) -> set[str]:
    return set((await conn.scalars(select(Upload.id))).all())
