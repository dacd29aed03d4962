"""The models and the Alembic revisions agree (alembic check), on a fresh database."""

import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
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


def test_blobs_nothing_references_are_queued_on_upgrade_with_a_days_lease(
    tmp_path: Path,
) -> None:
    """0007 queues what was garbage before garbage collection existed, and leaves a day
    for pushes in flight during the upgrade."""
    path = tmp_path / "old.db"
    upgrade(f"sqlite+aiosqlite:///{path}", "0006")
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO repositories (id, name, namespace, created_at) "
            "VALUES (1, 'team/app', 'team', '2026-01-01 00:00:00.000000')"
        )
        for digest in ("sha256:used", "sha256:unused"):
            db.execute(
                "INSERT INTO blobs (digest, size, created_at) VALUES (?, 1, "
                "'2026-01-01 00:00:00.000000')",
                (digest,),
            )
        db.execute(
            "INSERT INTO manifests (id, repository_id, digest, media_type, size, "
            "content, created_at) VALUES (1, 1, 'sha256:m', 'x', 1, x'00', "
            "'2026-01-01 00:00:00.000000')"
        )
        db.execute(
            "INSERT INTO manifest_references (manifest_id, digest, kind) "
            "VALUES (1, 'sha256:used', 'blob')"
        )
    upgrade(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as db:
        rows = dict(db.execute("SELECT digest, gc_after FROM blobs").fetchall())
        lease = db.execute("SELECT leased_until FROM blobs WHERE digest = 'sha256:unused'")
        leased_until = lease.fetchone()[0]
    assert rows["sha256:used"] is None
    queued = datetime.strptime(rows["sha256:unused"], "%Y-%m-%d %H:%M:%S.%f")
    assert queued == datetime.strptime(leased_until, "%Y-%m-%d %H:%M:%S.%f")
    assert (
        timedelta(hours=23) < queued - datetime.now(UTC).replace(tzinfo=None) < timedelta(hours=25)
    )


def test_a_database_a_newer_release_migrated_is_left_as_it_is(tmp_path: Path) -> None:
    """A replica of this code restarting while an upgrade replaces it: the schema is at a
    revision it does not have, and it must start and serve on it, not fail to find it."""
    path = tmp_path / "newer.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999_from_a_newer_release'")
    env = {
        **os.environ,
        "REGISTRY_DATABASE_URL": f"sqlite:///{path}",
        "REGISTRY_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run([REGISTRY, "migrate"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "9999_from_a_newer_release, a revision this code does not have" in result.stderr
    with sqlite3.connect(path) as db:
        at = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert at == "9999_from_a_newer_release"


# Schema changes that break the code of the release before: a migration may not make them
# in its upgrade (README, "Upgrades": they take two releases).
_CONTRACTING = ("op.drop_table(", "drop_column(", "op.rename_table(", "op.alter_column(")
# Revisions made before this rule, each released together with the code it needed.
_BEFORE_THE_RULE = {"0008"}


def test_migrations_only_add() -> None:
    for path in sorted((Path(__file__).parents[2] / "migrations" / "versions").glob("*.py")):
        source = path.read_text()
        upgrade_part = source.split("def upgrade", 1)[1].split("def downgrade", 1)[0]
        found = [call for call in _CONTRACTING if call in upgrade_part]
        if path.name[:4] not in _BEFORE_THE_RULE:
            assert not found, f"{path.name}'s upgrade contracts the schema: {found}"
