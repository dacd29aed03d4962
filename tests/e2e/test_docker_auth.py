"""Real clients against `registry serve` with authentication on: a Docker daemon (the
first admin, `docker login`, roles, anonymous pulls, robot accounts) and containerd."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Containerd, Docker, RegistryProcess, store_environment
from tests.e2e.images import image_id, layer_tar, load_image, make_image, write_docker_archive
from tests.peers.tools import logged


@pytest.fixture(params=["filesystem", "s3-redirect"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryProcess]:
    """`registry serve` with authentication on, on the filesystem and on S3."""
    env = {**store_environment(request, request.param), "REGISTRY_AUTH_ENABLED": "true"}
    server = RegistryProcess(tmp_path / "data", env)
    yield server.start()
    server.stop()


def first_admin_password(server: RegistryProcess) -> str:
    """The password printed once at the first start, and kept in the data folder."""
    path = server.data_dir / "admin-password"
    assert path.stat().st_mode & 0o777 == 0o600
    password = path.read_text().strip()
    assert f"password: {password}" in server.log.read_text()
    return password


class Client:
    """The docker client as one person: their own DOCKER_CONFIG, hence their own login."""

    def __init__(self, docker: Docker, folder: Path, host: str) -> None:
        self.docker, self.folder, self.host = docker, folder, host
        folder.mkdir()

    def login(self, user: str, password: str, check: bool = True) -> str:
        result = self.docker.run(
            "login", "-u", user, "--password-stdin", self.host,
            stdin=password, config=self.folder, check=check,
        )  # fmt: skip
        return result.stdout + result.stderr

    def __call__(self, *args: str, check: bool = True) -> str:
        result = self.docker.run(*args, config=self.folder, check=check)
        if not check:
            assert result.returncode != 0, f"docker {' '.join(args)} should have failed"
        return result.stdout + result.stderr


def test_login_roles_anonymous_and_robots(
    docker: Docker, secured: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    host = secured.host
    admin = Client(docker, tmp_path / "admin", host)
    assert "unauthorized" in admin.login("admin", "not the password", check=False).lower()
    assert "Login Succeeded" in admin.login("admin", first_admin_password(secured))

    secured.cli("user", "add", "alice", "--password-stdin", stdin="alice-password\n")
    secured.cli("user", "add", "bob", "--password-stdin", stdin="bob-password\n")
    secured.cli("namespace", "add", "team", "--owner", "alice")
    secured.cli("member", "set", "team", "bob", "guest")
    secured.cli("namespace", "add", "pub", "--public", "--owner", "alice")
    robot_secret = secured.cli("robot", "add", "team+ci", "--grant", "team=pull,push").stdout
    robot_secret = robot_secret.strip()

    alice = Client(docker, tmp_path / "alice", host)
    alice.login("alice", "alice-password")
    # The token endpoint gave docker a refresh token, which it keeps instead of the password.
    auths = json.loads((alice.folder / "config.json").read_text())["auths"][host]
    assert "identitytoken" in auths
    assert "alice-password" not in (alice.folder / "config.json").read_text()

    expected = load_image(docker, tmp_path, busybox, f"{host}/team/app:v1", "auth")
    alice("tag", f"{host}/team/app:v1", f"{host}/pub/app:v1")
    alice("tag", f"{host}/team/app:v1", f"{host}/team/robot:v1")
    alice("tag", f"{host}/team/app:v1", f"{host}/pub/robot:v1")
    alice("tag", f"{host}/team/app:v1", f"{host}/team/bob:v1")
    assert "v1: digest: sha256:" in alice("push", f"{host}/team/app:v1")
    alice("push", f"{host}/pub/app:v1")

    # A guest pulls but may not push.
    bob = Client(docker, tmp_path / "bob", host)
    bob.login("bob", "bob-password")
    docker.run("rmi", f"{host}/team/app:v1")
    bob("pull", f"{host}/team/app:v1")
    assert image_id(docker, f"{host}/team/app:v1") == expected
    # docker shows why: the role, and what a push needs.
    refused = bob("push", f"{host}/team/bob:v1", check=False)
    assert "denied: 'bob' is a guest of 'team'" in refused, refused
    assert "needs the role developer or above" in refused

    # Nobody logged in: public namespaces pull, private ones do not.
    nobody = Client(docker, tmp_path / "nobody", host)
    docker.run("rmi", f"{host}/pub/app:v1", f"{host}/team/app:v1")
    nobody("pull", f"{host}/pub/app:v1")
    assert image_id(docker, f"{host}/pub/app:v1") == expected
    refused = nobody("pull", f"{host}/team/app:v1", check=False)
    assert "denied" in refused or "unauthorized" in refused

    # A robot pushes where it was granted, and nowhere else.
    robot = Client(docker, tmp_path / "robot", host)
    assert "Login Succeeded" in robot.login("robot$team+ci", robot_secret)
    assert "v1: digest: sha256:" in robot("push", f"{host}/team/robot:v1")
    refused = robot("push", f"{host}/pub/robot:v1", check=False)
    assert "denied: 'robot$team+ci' may pull in 'pub', not push" in refused, refused

    # An admin's first push into a namespace makes it, owned by the admin.
    admin("tag", f"{host}/team/robot:v1", f"{host}/tools/app:v1")
    assert "v1: digest: sha256:" in admin("push", f"{host}/tools/app:v1")
    assert "tools" in secured.cli("namespace", "list").stdout
    assert "admin\towner" in secured.cli("member", "list", "tools").stdout

    # The wrong password stays wrong for a user that exists.
    assert "unauthorized" in bob.login("bob", "alice-password", check=False).lower()
    docker.run("rmi", "-f", expected)


def test_containerd_pushes_and_pulls_with_the_oauth2_form(
    containerd: Containerd, secured: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    secured.cli("user", "add", "carol", "--password-stdin", stdin="carol-password\n")
    image = make_image([layer_tar({"bin/busybox": busybox})])
    archive = write_docker_archive(image, "local/ctr:v1", tmp_path / "ctr.tar")
    containerd.run("images", "import", "--no-unpack", str(archive))
    ref = f"{secured.host}/carol/ctr:v1"
    login = ("--plain-http", "--user", "carol:carol-password")
    containerd.run("images", "push", *login, ref, "docker.io/local/ctr:v1")
    containerd.run("images", "rm", "docker.io/local/ctr:v1")
    containerd.run("content", "rm", image.id)

    containerd.run("images", "pull", "--snapshotter", "native", *login, ref)
    assert ref in containerd.run("images", "ls").stdout
    # The config blob, removed above, came back from the registry.
    assert image.id in containerd.run("content", "ls").stdout
    # containerd asked for its tokens with the OAuth2 form, not GET with Basic.
    assert logged(secured.answered, "POST", "/token", 200)
    assert not secured.answered("GET", "/token")
    # Without credentials, a private namespace stays shut.
    refused = containerd.run("images", "pull", "--plain-http", ref, check=False)
    assert refused.returncode != 0
    assert "401" in refused.stderr
    containerd.run("images", "rm", ref)
