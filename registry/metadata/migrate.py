"""Apply the Alembic migrations in migrations/ to a database.

Alembic is imported where it is used: a serving worker needs it only for its first
/ready, and importing it was a tenth of the worker's start."""

from __future__ import annotations

import fcntl
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    # Alembic's default for stdout is the sys.stdout of the moment it was imported (a
    # default argument), which may be gone since: a test's capture, closed.
    config = Config(stdout=sys.stdout)
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read % in passwords as a template.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database to `revision`. Processes that start together take turns:
    PostgreSQL through an advisory lock (migrations/env.py), SQLite through a lock file
    beside the database."""
    from alembic import command

    database = make_url(url).database
    if not url.startswith("sqlite") or not database or database == ":memory:":
        command.upgrade(alembic_config(url), revision)
        return
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(alembic_config(url), revision)


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://"))


@cache
def head() -> str:
    """The newest revision this code knows."""
    found = _scripts().get_current_head()
    assert found is not None
    return found


@cache
def known() -> frozenset[str]:
    """Every revision this code has."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


def behind(at: str | None) -> bool:
    """Whether a database at `at` needs this code's migrations before it can serve.

    A revision this code does not know is a newer release's, which a replica of this
    one meets while an upgrade replaces it: migrations only add (README, "Upgrades"),
    so it serves on as before (migrations/env.py leaves such a database alone)."""
    return at is None or (at != head() and at in known())


async def revision(conn: AsyncConnection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    try:
        found = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception:
        return None  # no such table yet
    return None if found is None else str(found)
