"""What a test's app has stored, read back from its index: the rows that the push rules'
tests on both databases compare (test_push_rules.py, test_blob_link_rules.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.applications import Starlette

from registry.metadata.models import Repository, RepositoryBlob


async def rows(app: Starlette, query: Any) -> list[tuple[Any, ...]]:
    async with app.state.registry.db.read() as conn:
        return [tuple(row) for row in (await conn.execute(query)).all()]


async def linked(app: Starlette, repository: str, digest: str) -> bool:
    """Whether the repository links the blob."""
    found = await rows(
        app,
        select(RepositoryBlob.digest)
        .join(Repository, Repository.id == RepositoryBlob.repository_id)
        .where(Repository.name == repository, RepositoryBlob.digest == digest),
    )
    return bool(found)
