"""Garbage collection under a real Docker daemon: push two images sharing a layer, move a
tag, delete the image nobody tags, and the worker of `registry serve` frees exactly that
image's own blobs (the storage shrinks by their sizes); what remains pulls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Docker, RegistryProcess, store_environment
from tests.e2e.images import image_id, load_image

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)


@pytest.fixture(params=["filesystem", "s3-stream"])
def collecting_registry(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[RegistryProcess]:
    """`registry serve` whose worker collects every half second, with leases of a second."""
    env = store_environment(request, request.param)
    env.update({"REGISTRY_GC_BLOB_LEASE_SECONDS": "1", "REGISTRY_GC_INTERVAL_SECONDS": "0.5"})
    server = RegistryProcess(tmp_path / "data", env)
    yield server.start()
    server.stop()


def stored_bytes(registry: RegistryProcess) -> int:
    return int(registry.get("/api/v1/usage").json()["stored_bytes"])


def blob_files(registry: RegistryProcess) -> int | None:
    root = registry.data_dir / "storage" / "blobs"
    if not root.exists():
        return None  # on S3
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def test_deleting_an_image_frees_its_own_blobs_and_the_rest_pulls(
    docker: Docker, collecting_registry: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    registry = collecting_registry
    v1, v2 = f"{registry.host}/team/app:v1", f"{registry.host}/team/app:v2"
    old = load_image(docker, tmp_path, busybox, v1, "gc-old")
    docker.run("push", v1)
    new = load_image(docker, tmp_path, busybox, v2, "gc-new")
    docker.run("push", v2)
    manifest = registry.get("/v2/team/app/manifests/v1", headers={"Accept": MANIFEST_TYPES})
    old_digest, old_doc = manifest.headers["Docker-Content-Digest"], manifest.json()
    kept = registry.get("/v2/team/app/manifests/v2", headers={"Accept": MANIFEST_TYPES}).json()
    kept_blobs = {item["digest"] for item in [kept["config"], *kept["layers"]]}
    own = [
        item for item in [old_doc["config"], *old_doc["layers"]] if item["digest"] not in kept_blobs
    ]
    assert len(own) == 3  # its config, its motd and its random layer; busybox is shared
    expected = len(manifest.content) + sum(item["size"] for item in own)

    # v1 moves to the new image; the old one, untagged now, is deleted by digest.
    docker.run("tag", v2, v1)
    docker.run("push", v1)
    before, files_before = stored_bytes(registry), blob_files(registry)
    r = registry.get("/v2/team/app/manifests/v1", headers={"Accept": MANIFEST_TYPES})
    assert r.headers["Docker-Content-Digest"] != old_digest
    assert httpx.delete(f"{registry.url}/v2/team/app/manifests/{old_digest}").status_code == 202

    # (Blobs go as their leases end: in one pass or several.)
    deadline = time.monotonic() + 30
    while before - stored_bytes(registry) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert before - stored_bytes(registry) == expected
    if files_before is not None:
        assert files_before - (blob_files(registry) or 0) == expected
    totals = registry.get("/api/v1/gc").json()["totals"]
    assert totals["gc_bytes_freed"] == expected and totals["gc_blobs_deleted"] == 4
    assert "garbage collection: deleted" in registry.log.read_text()

    for ref in (v1, v2):
        docker.run("rmi", "-f", ref)
    docker.run("rmi", "-f", old, check=False)
    for ref in (v1, v2):
        docker.run("pull", ref)
        assert image_id(docker, ref) == new
        docker.run("rmi", ref)
