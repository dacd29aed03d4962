"""A real Docker daemon pushes to and pulls from `registry serve`."""

from __future__ import annotations

from pathlib import Path

from registry.mediatypes import DOCKER_MANIFEST as DOCKER
from tests.e2e.conftest import Docker, RegistryProcess
from tests.e2e.images import CREATED, image_id, load_image


def test_push_pull_by_tag_and_digest(
    docker: Docker, registry_process: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    ref = f"{registry_process.host}/team/app:v1"
    expected = load_image(docker, tmp_path, busybox, ref, "tag-and-digest")
    pushed = docker.run("push", ref).stdout
    assert "v1: digest: sha256:" in pushed
    digest = pushed.split("digest: ")[1].split()[0]
    docker.run("rmi", ref)
    assert docker.run("image", "inspect", ref, check=False).returncode != 0

    docker.run("pull", ref)
    assert image_id(docker, ref) == expected
    # The browse API describes what the daemon pushed: its size, platform, build time.
    document = registry_process.get("/v2/team/app/manifests/v1", headers={"Accept": DOCKER}).json()
    [tag] = registry_process.get("/api/v1/repositories/team/app/-/tags").json()["tags"]
    assert tag["digest"] == digest and tag["media_type"] == DOCKER
    assert tag["bytes"] == document["config"]["size"] + sum(
        layer["size"] for layer in document["layers"]
    )
    assert [p["platform"] for p in tag["platforms"]] == [
        {"os": "linux", "architecture": "amd64", "variant": None}
    ]
    assert tag["created"] == CREATED
    # On S3 with redirects, the daemon fetched the layers from S3 itself.
    blob_gets = [
        line for line in registry_process.log.read_text().splitlines() if "/blobs/sha256" in line
    ]
    redirected = [line for line in blob_gets if "access: GET " in line and " 307 " in line]
    assert bool(redirected) == registry_process.redirects, blob_gets
    docker.run("rmi", ref)
    by_digest = f"{registry_process.host}/team/app@{digest}"
    docker.run("pull", by_digest)
    assert image_id(docker, by_digest) == expected

    # Pushing the same image again finds every layer already there.
    docker.run("tag", by_digest, ref)
    again = docker.run("push", ref).stdout
    assert again.count("Layer already exists") == 3, again
    assert "Pushed" not in again
    docker.run("rmi", "-f", expected)


def test_nested_name_and_default_latest(
    docker: Docker, registry_process: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    ref = f"{registry_process.host}/team/sub/app"
    expected = load_image(docker, tmp_path, busybox, "local/nested:loaded", "nested")
    docker.run("tag", "local/nested:loaded", ref)  # no tag given: docker means latest
    assert "latest: digest:" in docker.run("push", ref).stdout
    docker.run("rmi", f"{ref}:latest")
    docker.run("pull", ref)
    assert image_id(docker, f"{ref}:latest") == expected
    assert registry_process.get("/v2/team/sub/app/tags/list").json() == {
        "name": "team/sub/app",
        "tags": ["latest"],
    }
    docker.run("rmi", "-f", expected)


def test_persistence_across_restart(
    docker: Docker, registry_process: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    ref = f"{registry_process.host}/team/kept:v1"
    expected = load_image(docker, tmp_path, busybox, ref, "persist")
    docker.run("push", ref)
    docker.run("rmi", ref)
    registry_process.restart()
    docker.run("pull", ref)
    assert image_id(docker, ref) == expected
    docker.run("rmi", ref)
