"""Apply the Alembic migrations in migrations/ to a database."""

from __future__ import annotations

import fcntl
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read % in passwords as a template.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database to `revision`. Processes that start together take turns:
    PostgreSQL through an advisory lock (migrations/env.py), SQLite through a lock file
    beside the database."""
    database = make_url(url).database
    if not url.startswith("sqlite") or not database or database == ":memory:":
        command.upgrade(alembic_config(url), revision)
        return
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(alembic_config(url), revision)
