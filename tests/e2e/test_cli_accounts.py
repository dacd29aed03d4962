"""The first admin of `registry serve`, from the environment."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.conftest import RegistryProcess


def test_first_admin_from_the_environment_is_not_printed(tmp_path: Path) -> None:
    server = RegistryProcess(
        tmp_path / "data",
        env={"REGISTRY_AUTH_ENABLED": "true", "REGISTRY_ADMIN_PASSWORD": "from-the-env-42"},
    ).start()
    try:
        r = httpx.get(server.url + "/token", auth=("admin", "from-the-env-42"))
        assert r.status_code == 200
        assert not (server.data_dir / "admin-password").exists()
        assert "from-the-env-42" not in server.log.read_text()
        # A restart keeps the admin and makes no other.
        server.restart()
        assert "Created the first admin" not in server.log.read_text()
        assert server.cli("user", "list").stdout.splitlines() == ["admin\tadmin"]
    finally:
        server.stop()
