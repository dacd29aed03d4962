"""A real Docker daemon against `registry serve` with an LDAP directory (slapd): docker
login with the directory's password, a push through a group role, then CI's way in: a
personal access token as the password of docker login, which pushes within its scopes
only and stops working the moment it is revoked (the identity token docker keeps
instead of it too)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Docker, RegistryProcess
from tests.e2e.images import load_image
from tests.e2e.test_docker_auth import Client, first_admin_password
from tests.peers.ldap import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd, group_dn


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Slapd]:
    server = Slapd(tmp_path / "ldap").start()
    server.add_user("dana", "dana in ldap", ("builders", "staff"))
    yield server
    server.stop()


@pytest.fixture
def sso(directory: Slapd, tmp_path: Path) -> Iterator[RegistryProcess]:
    roles = [
        {"source": "ldap", "group": group_dn("builders"), "role": "developer", "namespace": "apps"}
    ]
    env = {
        "REGISTRY_AUTH_ENABLED": "true",
        "REGISTRY_AUTH_LDAP_URL": directory.url,
        "REGISTRY_AUTH_LDAP_START_TLS": "true",
        "REGISTRY_AUTH_LDAP_CA_FILE": str(directory.cert),
        "REGISTRY_AUTH_LDAP_BIND_DN": SERVICE_DN,
        "REGISTRY_AUTH_LDAP_USER_BASE": PEOPLE,
        "REGISTRY_AUTH_LDAP_GROUP_BASE": GROUPS,
        "REGISTRY_AUTH_GROUP_ROLES": json.dumps(roles),
    }
    secret = tmp_path / "bind-password"
    secret.write_text(SERVICE_PASSWORD + "\n")
    env["REGISTRY_AUTH_LDAP_BIND_PASSWORD_FILE"] = str(secret)
    server = RegistryProcess(tmp_path / "data", env)
    yield server.start()
    server.stop()


def test_docker_login_with_the_directory_and_with_a_personal_access_token(
    docker: Docker, sso: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    host = sso.host
    admin = Client(docker, tmp_path / "admin", host)
    admin.login("admin", first_admin_password(sso))
    sso.cli("namespace", "add", "apps", "--owner", "admin")
    sso.cli("namespace", "add", "other", "--owner", "admin")

    dana = Client(docker, tmp_path / "dana", host)
    assert "Login Succeeded" in dana.login("dana", "dana in ldap")
    load_image(docker, tmp_path, busybox, f"{host}/apps/web:v1", "sso")
    assert "v1: digest: sha256:" in dana("push", f"{host}/apps/web:v1")
    # The bind password came from a file and is in no log line.
    assert SERVICE_PASSWORD not in sso.log.read_text()

    # dana makes a token for CI: pull and push in apps only.
    with httpx.Client(base_url=sso.url, auth=("dana", "dana in ldap")) as api:
        r = api.post(
            "/api/v1/me/tokens",
            json={"name": "ci", "scopes": [{"namespace": "apps", "actions": ["pull", "push"]}]},
        )
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    ci = Client(docker, tmp_path / "ci", host)
    assert "Login Succeeded" in ci.login("dana", token)
    config = (ci.folder / "config.json").read_text()
    assert token not in config and "identitytoken" in config
    docker.run("tag", f"{host}/apps/web:v1", f"{host}/apps/web:v2")
    docker.run("tag", f"{host}/apps/web:v1", f"{host}/dana/web:v1")
    assert "v2: digest: sha256:" in ci("push", f"{host}/apps/web:v2")
    # Outside its scopes, even in dana's own namespace.
    refused = ci("push", f"{host}/dana/web:v1", check=False)
    assert "personal access token" in refused and "does not allow" in refused, refused

    with httpx.Client(base_url=sso.url, auth=("dana", "dana in ldap")) as api:
        assert api.delete("/api/v1/me/tokens/ci").status_code == 204
    docker.run("rmi", f"{host}/apps/web:v2")
    refused = ci("pull", f"{host}/apps/web:v2", check=False)
    assert "revoked" in refused or "unauthorized" in refused.lower(), refused
    assert "unauthorized" in ci.login("dana", token, check=False).lower()
    docker.run("rmi", "-f", f"{host}/apps/web:v1", f"{host}/dana/web:v1")
