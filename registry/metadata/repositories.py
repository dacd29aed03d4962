"""Repositories: the rows the other resources hang on. A repository is made by the
first push into it, and goes with its last manifest (manifests.delete_repository)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from registry.metadata.models import Repository, now
from registry.metadata.statements import Statement, lexical
from registry.names import namespace_of

ID = Statement("repository_id", "SELECT id FROM repositories WHERE name = :repository")
# A new repository takes its namespace's signature policy. On PostgreSQL it is read
# through an upsert of the namespace's policy row (made with the defaults if there is
# none), only when the repository is not there yet: that waits for a policy being set
# (save_policy writes the row first), and a policy set after it waits for this
# transaction, then updates the repositories it can see, this one among them; a plain
# read could take the old policy while the setter's update missed the uncommitted row.
# SQLite's one writer makes a read enough.
_ADD_SQLITE = (
    "INSERT INTO repositories (name, namespace, created_at, signature_policy) "
    "SELECT :repository, :namespace, :now, COALESCE((SELECT signature_policy FROM "
    "namespace_policies WHERE namespace = :namespace), 'off') WHERE true "
    "ON CONFLICT DO NOTHING"
)
_ADD_POSTGRES = (
    "WITH p AS (INSERT INTO namespace_policies (namespace, immutable_tags, "
    "signature_policy, updated_at) SELECT :namespace, '[]', 'off', :now WHERE NOT EXISTS "
    "(SELECT 1 FROM repositories WHERE name = :repository) ON CONFLICT (namespace) "
    "DO UPDATE SET updated_at = namespace_policies.updated_at RETURNING signature_policy) "
    "INSERT INTO repositories (name, namespace, created_at, signature_policy) "
    "SELECT :repository, :namespace, :now, signature_policy FROM p ON CONFLICT DO NOTHING"
)
ADD = Statement("add_repository", _ADD_SQLITE, _ADD_POSTGRES)


async def repository_id(conn: AsyncConnection, name: str) -> int | None:
    return await conn.scalar(select(Repository.id).where(Repository.name == name))


async def ensure_repository(conn: AsyncConnection, name: str) -> int:
    """The repository's id; made (with its namespace's signature policy) if need be."""
    found = await repository_id(conn, name)
    if found is None:
        sql = _ADD_POSTGRES if conn.dialect.name == "postgresql" else _ADD_SQLITE
        # :now in the form SQLAlchemy stores a timestamp in, on either database.
        add = text(sql).bindparams(bindparam("now", type_=Repository.created_at.type))
        await conn.execute(add, {"repository": name, "namespace": namespace_of(name), "now": now()})
        found = await repository_id(conn, name)
    assert found is not None
    return found


async def list_repositories(
    conn: AsyncConnection, last: str | None, limit: int, namespaces: Collection[str] | None
) -> list[str]:
    query = select(Repository.name).order_by(lexical(conn, Repository.name)).limit(limit)
    if namespaces is not None:
        query = query.where(Repository.namespace.in_(namespaces))
    if last:
        query = query.where(lexical(conn, Repository.name) > last)
    return list((await conn.scalars(query)).all())
