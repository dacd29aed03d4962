"""The models and the Alembic revisions agree (alembic check), on a fresh database."""

import os
import subprocess
from pathlib import Path

from alembic import command

from registry.metadata.migrate import alembic_config, upgrade
from tests.peers.postgres import PostgresServer
from tests.peers.registry import REGISTRY


def test_models_match_migrations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"
    upgrade(url)
    command.check(alembic_config(url))


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cycle.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)


def _upgrade_together(url: str, data_dir: Path, processes: int = 4) -> None:
    """`registry migrate` in several processes at once, as replicas starting together.
    (Not threads: Alembic keeps its migration context in a module global.)"""
    env = {**os.environ, "REGISTRY_DATABASE_URL": url, "REGISTRY_DATA_DIR": str(data_dir)}
    running = [
        subprocess.Popen([REGISTRY, "migrate"], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for process in running:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err


def test_concurrent_upgrades_of_a_fresh_sqlite_database(tmp_path: Path) -> None:
    """Replicas (or `registry serve` beside `registry user add`) migrating at once."""
    _upgrade_together(f"sqlite:///{tmp_path / 'race.db'}", tmp_path)
    command.check(alembic_config(f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"))


def test_concurrent_upgrades_of_a_fresh_postgresql_database(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    name = f"registry_race_{os.getpid()}"
    postgres.execute(f"DROP DATABASE IF EXISTS {name}")
    postgres.execute(f"CREATE DATABASE {name}")
    url = postgres.url_for(name)
    try:
        _upgrade_together(url, tmp_path)
        command.check(alembic_config(url.replace("postgresql://", "postgresql+asyncpg://", 1)))
    finally:
        postgres.drop_database(name)
