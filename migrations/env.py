"""Alembic environment: runs revisions on the async engine of the configured URL."""

from __future__ import annotations

import asyncio
import logging

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from registry.metadata.migrate import known
from registry.metadata.models import POSTGRESQL_ONLY_INDEXES, Base

target_metadata = Base.metadata
# Any constant shared by every process migrating this database.
_LOCK_KEY = 0x72656769


def _modelled(obj: object, name: str | None, kind: str, reflected: bool, _: object) -> bool:
    """Whether `alembic check` compares this object with the models: not the indexes only
    PostgreSQL has (models.POSTGRESQL_ONLY_INDEXES)."""
    return not (kind == "index" and reflected and name in POSTGRESQL_ONLY_INDEXES)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_modelled,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together: one migrates while the others wait here, then
            # find the schema current. The lock ends with the migration's transaction.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        at = context.get_context().get_current_revision()
        if at is not None and at not in known():  # a newer release's revision
            logging.getLogger("registry.migrate").warning(
                "the database schema is at %s, a revision this code does not have: a newer "
                "release migrated it. Left as it is; this replica serves on it until it is "
                "upgraded too",
                at,
            )
            return
        context.run_migrations()


async def _online() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
