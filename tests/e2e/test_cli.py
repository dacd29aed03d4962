"""The `registry` command itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from registry import __version__
from tests.conftest import s3_environment
from tests.peers.registry import REGISTRY
from tests.peers.s3 import MotoServer


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REGISTRY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"registry {__version__}"


def test_bad_config_stops_with_one_line(tmp_path: Path) -> None:
    result = run("serve", env={"REGISTRY_HTTP_PORT": "eighty"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "registry: config: http.port: expected an integer, got 'eighty'\n"
    config = tmp_path / "c.yml"
    config.write_text("storage:\n  driver: floppy\n")
    result = run("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "storage.driver" in result.stderr


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    result = run("migrate", env={"REGISTRY_DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "registry.db").exists()
    assert "database is at the latest schema" in result.stderr
    # Running it again is a no-op.
    assert run("migrate", env={"REGISTRY_DATA_DIR": str(tmp_path / "d")}).returncode == 0


def test_bad_token_key_stops_the_start_with_one_line(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    result = run(
        "serve",
        env={"REGISTRY_DATA_DIR": str(tmp_path / "d"), "REGISTRY_AUTH_KEY_FILE": str(key)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"registry: config: auth.key_file: {key} is not")
    assert result.stderr.count("\n") == 1


def test_missing_s3_bucket_stops_the_start_with_one_line(
    tmp_path: Path, s3_server: MotoServer
) -> None:
    env = {
        **s3_environment(s3_server, "no-such-bucket"),
        "REGISTRY_DATA_DIR": str(tmp_path / "d"),
    }
    result = run("serve", env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "registry: storage.s3: bucket 'no-such-bucket' does not exist; "
        "check the bucket, endpoint_url and credentials\n"
    )


def test_gc_hold_and_release(tmp_path: Path) -> None:
    env = {"REGISTRY_DATA_DIR": str(tmp_path / "d")}
    held = run("gc", "hold", "--hours", "2", env=env)
    assert held.returncode == 0, held.stderr
    assert "garbage collection deletes nothing until" in held.stdout
    passed = run("gc", env=env)
    assert passed.returncode == 0 and "deleted 0 manifests, 0 blobs" in passed.stdout
    released = run("gc", "release", env=env)
    assert released.returncode == 0, released.stderr
    assert released.stdout.strip() == "garbage collection deletes again (no hold)"
    assert run("gc", "hold", "--hours", "lots", env=env).returncode == 2
