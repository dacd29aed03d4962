"""A Docker daemon whose daemon.json lists our registry in `registry-mirrors` pulls Docker
Hub names through it. Docker Hub is played by CNCF Distribution (Debian's
`docker-registry`); the machine has no internet, so a pull that succeeds came through the
mirror. The mirror runs with token auth on and `mirror.open`, as a public mirror would."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Docker
from tests.e2e.images import image_id, load_image
from tests.helpers import TokenAuth
from tests.peers.distribution import Distribution
from tests.peers.registry import RegistryProcess
from tests.peers.tools import logged

TTL = 2
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    upstream = Distribution(tmp_path_factory.mktemp("hub")).start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def mirror(
    hub: Distribution, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    server = RegistryProcess(
        tmp_path_factory.mktemp("mirror") / "data",
        {
            "REGISTRY_AUTH_ENABLED": "true",
            "REGISTRY_MIRROR_ENABLED": "true",
            "REGISTRY_MIRROR_OPEN": "true",
            "REGISTRY_MIRROR_UPSTREAMS": hub.url,
            "REGISTRY_MIRROR_TAG_TTL_SECONDS": str(TTL),
            "REGISTRY_LOG_LEVEL": "info",
        },
    )
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def mirrored_docker(mirror: RegistryProcess) -> Iterator[Docker]:
    """A daemon of its own: registry-mirrors is read when the daemon starts."""
    root = Path(tempfile.mkdtemp(prefix="registry-docker-mirror-"))
    daemon = Docker(root, {"registry-mirrors": [mirror.url]})
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)


def publish(
    docker: Docker, hub: Distribution, tmp_path: Path, busybox: bytes, name: str, salt: str
) -> str:
    """Push an image to the stand-in Docker Hub; returns its image ID."""
    ref = f"127.0.0.1:{hub.port}/library/{name}:latest"
    expected = load_image(docker, tmp_path, busybox, ref, salt)
    docker.run("push", ref)
    docker.run("rmi", ref)
    return expected


def layers(hub: Distribution, name: str) -> list[str]:
    r = httpx.get(
        f"{hub.url}/v2/library/{name}/manifests/latest", headers={"Accept": DOCKER_MANIFEST}
    )
    return [layer["digest"] for layer in r.json()["layers"]]


def test_docker_pulls_through_the_mirror_and_from_its_cache(
    docker: Docker,
    mirrored_docker: Docker,
    hub: Distribution,
    mirror: RegistryProcess,
    tmp_path: Path,
    busybox: bytes,
) -> None:
    first = publish(docker, hub, tmp_path, busybox, "busybox", "first")
    mirrored_docker.run("pull", "busybox")
    assert image_id(mirrored_docker, "busybox") == first
    assert logged(mirror.answered, "HEAD", "/v2/library/busybox/manifests/latest", 200)

    # The upstream goes away; the cache serves the image, past the TTL.
    mirrored_docker.run("rmi", "busybox")
    hub.stop()
    try:
        time.sleep(TTL + 0.5)
        mirrored_docker.run("pull", "busybox")
        assert image_id(mirrored_docker, "busybox") == first
        assert "serving library/busybox:latest from the cache" in mirror.log.read_text()
    finally:
        hub.start()

    # The tag moves upstream: seen once the TTL has passed.
    second = publish(docker, hub, tmp_path, busybox, "busybox", "second")
    time.sleep(TTL + 0.5)
    mirrored_docker.run("pull", "busybox")
    assert image_id(mirrored_docker, "busybox") == second
    mirrored_docker.run("rmi", "-f", first, second)


def test_ten_concurrent_pulls_of_a_missing_blob_cause_one_upstream_get(
    docker: Docker, hub: Distribution, mirror: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    publish(docker, hub, tmp_path, busybox, "crowd", "crowd")
    layer = layers(hub, "crowd")[-1]  # 2 MiB of random bytes, fetched by no one yet
    expected = hub.blob_file(layer).read_bytes()

    def pull(_: int) -> bytes:
        with httpx.Client(base_url=mirror.url, auth=TokenAuth(), timeout=60) as client:
            r = client.get(f"/v2/library/crowd/blobs/{layer}")
            assert r.status_code == 200
            return r.content

    with ThreadPoolExecutor(10) as pool:
        bodies = list(pool.map(pull, range(10)))
    assert all(body == expected for body in bodies)
    assert hub.requests("GET", f"/v2/library/crowd/blobs/{layer}") == 1

    with httpx.Client(base_url=mirror.url, auth=TokenAuth()) as client:
        # As the admin API counts it too (the printed admin password is in the data folder).
        password = (mirror.data_dir / "admin-password").read_text().strip()
        status = client.get("/api/v1/mirror", auth=("admin", password)).json()
    assert status["counters"]["blob_misses"] >= 1
    assert status["counters"]["upstream_bytes"] >= len(expected)


def test_a_corrupt_upstream_blob_is_refused_and_not_cached(
    docker: Docker, hub: Distribution, mirror: RegistryProcess, tmp_path: Path, busybox: bytes
) -> None:
    publish(docker, hub, tmp_path, busybox, "corrupt", "corrupt")
    layer = layers(hub, "corrupt")[-1]
    data = hub.blob_file(layer)
    size = data.stat().st_size
    data.write_bytes(b"\0" * size)

    client = httpx.Client(base_url=mirror.url, auth=TokenAuth(), timeout=60)
    # The bytes start flowing before the digest can be checked; the check then breaks the
    # response off before its last byte.
    with client, pytest.raises(httpx.HTTPError):
        r = client.get(f"/v2/library/corrupt/blobs/{layer}")
        assert len(r.content) < size
    algorithm, hex_ = layer.split(":")
    cached = mirror.data_dir / "storage/blobs" / algorithm / hex_[:2] / hex_
    assert not cached.exists()
    uploads = mirror.data_dir / "storage/uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    log = mirror.log.read_text()
    assert "upstream sent bytes with digest sha256:" in log
    assert layer in log
