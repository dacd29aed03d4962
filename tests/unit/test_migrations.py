"""The models and the Alembic revisions agree (alembic check), on a fresh database."""

from pathlib import Path

from alembic import command

from registry.metadata.migrate import alembic_config, upgrade


def test_models_match_migrations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"
    upgrade(url)
    command.check(alembic_config(url))


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cycle.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
