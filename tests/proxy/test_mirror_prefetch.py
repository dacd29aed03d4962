"""Pre-warming the cache: POST /api/v1/mirror/prefetch and `registry mirror prefetch`
fetch an index's platforms (all, or those asked for) with their blobs from a real
upstream, and pulls after it are served from the cache."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.helpers import assert_error, index_of, push_image, put_manifest, sha256
from tests.peers.registry import RegistryProcess
from tests.proxy.conftest import MirrorFactory, Upstream, client_of, unique

pytestmark = pytest.mark.anyio

PLATFORMS = {"amd64": {"os": "linux", "architecture": "amd64"}}
PLATFORMS["arm64"] = {"os": "linux", "architecture": "arm64", "variant": "v8"}


async def push_index(upstream: Upstream, repo: str) -> dict[str, bytes]:
    """An index tagged v1 over an amd64 and an arm64 image; returns each one's layer."""
    layers = {arch: f"{repo} {arch} layer".encode() * 1000 for arch in PLATFORMS}
    async with upstream.client() as client:
        children = []
        for arch, platform in PLATFORMS.items():
            _, body = await push_image(client, repo, arch, layers=[layers[arch]])
            children.append((OCI_MANIFEST, body, platform))
        await put_manifest(client, repo, "v1", index_of(children), OCI_INDEX)
    return layers


async def test_prefetch_through_the_api_fetches_the_platforms_asked_for(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    repo = unique("prefetch")
    layers = await push_index(upstream, repo)
    host = upstream.host  # what a node would write: 127.0.0.1:PORT/library/...

    def fetched(arch: str) -> int:
        return upstream.requests("GET", f"/v2/{repo}/blobs/{sha256(layers[arch])}")

    async with client_of(make_mirror()) as mirror:
        r = await mirror.post(
            "/api/v1/mirror/prefetch",
            json={"references": [f"{host}/{repo}:v1"], "platforms": ["linux/arm64/v8"]},
        )
        assert r.status_code == 200, r.text
        [image] = r.json()["images"]
        assert image["error"] is None
        assert (image["repository"], image["manifests"], image["blobs"]) == (repo, 2, 2)
        assert image["platforms"] == ["linux/arm64/v8"]
        assert image["fetched_bytes"] > len(layers["arm64"])
        assert (fetched("arm64"), fetched("amd64")) == (1, 0)

        # A pull now is served from the cache; once more, prefetch finds it all there.
        r = await mirror.get(f"/v2/{repo}/manifests/arm64")
        assert r.status_code == 200
        r = await mirror.get(f"/v2/{repo}/blobs/{sha256(layers['arm64'])}")
        assert r.content == layers["arm64"]
        assert fetched("arm64") == 1
        # Without a host and the `library/`, as docker pull writes an official image.
        official = repo.removeprefix("library/")
        r = await mirror.post("/api/v1/mirror/prefetch", json={"references": [f"{official}:v1"]})
        [image] = r.json()["images"]
        assert image["repository"] == repo
        assert (image["manifests"], image["blobs"]) == (3, 4)  # every platform
        assert fetched("amd64") == 1
        assert image["cached_bytes"] > len(layers["arm64"])

        # Failures are reported one by one; the others go on.
        r = await mirror.post(
            "/api/v1/mirror/prefetch",
            json={
                "references": [
                    "ghcr.io/org/app:v1",
                    f"{repo}:nosuchtag",
                    f"{repo}@sha256:abc",
                    f"{repo}:v1",
                ],
                "platforms": ["linux/s390x"],
            },
        )
        assert r.status_code == 200, r.text
        errors = [i["error"] and i["error"]["code"] for i in r.json()["images"]]
        assert errors == ["NAME_UNKNOWN", "MANIFEST_UNKNOWN", "DIGEST_INVALID", "MANIFEST_UNKNOWN"]
        messages = [i["error"]["message"] for i in r.json()["images"]]
        assert "no upstream of that host" in messages[0]
        assert "has linux/amd64, linux/arm64/v8" in messages[3]
        r = await mirror.post(
            "/api/v1/mirror/prefetch", json={"references": [repo], "platforms": ["linux"]}
        )
        assert_error(r, 400, "NAME_INVALID")
        assert_error(await mirror.post("/api/v1/mirror/prefetch", json={}), 400, "INVALID")


def test_registry_mirror_prefetch_prints_its_progress(upstream: Upstream, tmp_path: Path) -> None:
    repo = unique("cli")
    layers = anyio.run(push_index, upstream, repo)
    mirror = RegistryProcess(
        tmp_path / "mirror",
        {"REGISTRY_MIRROR_ENABLED": "true", "REGISTRY_MIRROR_UPSTREAMS": upstream.url},
    )
    done = mirror.cli(
        "mirror", "prefetch", f"{upstream.host}/{repo}:v1", "--platform", "linux/amd64"
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{upstream.host}/{repo}:v1: {repo}@sha256:")
    assert lines[1].startswith("  linux/amd64: sha256:")
    assert f"    {sha256(layers['amd64'])}: fetched ({len(layers['amd64'])} bytes)" in lines
    assert "2 manifests, 2 blobs; " in lines[-1]
    # The server, started on the same cache, serves the image without the upstream,
    # and says from where it mirrors what.
    mirror.start()
    try:
        started = mirror.log.read_text()
        assert f"mirroring every other name from {upstream.url}, anonymously" in started
        assert "pushes are refused (mirror_only)" in started
        with httpx.Client(base_url=mirror.url, timeout=30) as client:
            r = client.get(f"/v2/{repo}/blobs/{sha256(layers['amd64'])}")
            assert r.content == layers["amd64"]
        assert upstream.requests("GET", f"/v2/{repo}/blobs/{sha256(layers['amd64'])}") == 1
    finally:
        mirror.stop()
    # `busybox:latest` is `library/busybox`, as docker pull reads it.
    official = repo.removeprefix("library/")
    failed = mirror.cli_result("mirror", "prefetch", f"{repo}:nosuchtag", f"{official}:amd64")
    assert failed.returncode == 1
    assert f"registry: {repo}:nosuchtag: " in failed.stderr
    assert f"{official}:amd64: {repo}@sha256:" in failed.stdout
    assert f"{official}:amd64: 1 manifests, 2 blobs" in failed.stdout
    plain = RegistryProcess(tmp_path / "plain")
    refused = plain.cli_result("mirror", "prefetch", "nginx")
    assert refused.returncode == 2
    assert "mirror.enabled is off" in refused.stderr
