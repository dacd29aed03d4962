"""containerd pulling through the mirror with one `_default/hosts.toml`, as a Kubernetes
node would: two registries (Distribution, Debian's `docker-registry`) hold different
images under the same name; `ctr` pulls each by its own name, containerd tells the mirror
which registry with `?ns=`, and each image arrives with its upstream's digest, into a
cache of its own. With both upstreams gone, the same pulls come from the cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Containerd, Docker
from tests.e2e.images import load_image
from tests.helpers import TokenAuth
from tests.peers.distribution import Distribution
from tests.peers.registry import RegistryProcess
from tests.peers.tools import logged

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Distribution]]:
    servers = [Distribution(tmp_path_factory.mktemp(f"registry{i}")).start() for i in (1, 2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def mirror(
    upstreams: list[Distribution], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    first, second = upstreams
    server = RegistryProcess(
        tmp_path_factory.mktemp("mirror") / "data",
        {
            "REGISTRY_AUTH_ENABLED": "true",
            "REGISTRY_MIRROR_ENABLED": "true",
            "REGISTRY_MIRROR_OPEN": "true",
            "REGISTRY_MIRROR_UPSTREAMS": json.dumps(
                [{"url": first.url}, {"url": second.url, "prefix": "second"}]
            ),
            "REGISTRY_LOG_LEVEL": "info",
        },
    )
    yield server.start()
    server.stop()


def manifest_digest(upstream: Distribution, repo: str, tag: str) -> str:
    r = httpx.get(f"{upstream.url}/v2/{repo}/manifests/{tag}", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 200, r.text
    return r.headers["docker-content-digest"]


def pulled_digest(containerd: Containerd, namespace: str, ref: str) -> str:
    listed = containerd.run("-n", namespace, "images", "ls").stdout.splitlines()
    row = next(line.split() for line in listed if line.startswith(ref + " "))
    return row[2]  # REF TYPE DIGEST SIZE ...


def test_containerd_pulls_two_registries_through_one_hosts_toml(
    containerd: Containerd,
    docker: Docker,
    upstreams: list[Distribution],
    mirror: RegistryProcess,
    tmp_path: Path,
    busybox: bytes,
) -> None:
    refs, digests = [], []
    for number, upstream in enumerate(upstreams, 1):
        ref = f"127.0.0.1:{upstream.port}/library/app:v1"
        load_image(docker, tmp_path, busybox, ref, f"registry {number}")
        docker.run("push", ref)
        docker.run("rmi", ref)
        refs.append(ref)
        digests.append(manifest_digest(upstream, "library/app", "v1"))
    assert digests[0] != digests[1]  # the same name, different images

    hosts = tmp_path / "certs.d" / "_default"
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(
        f'[host."{mirror.url}"]\n  capabilities = ["pull", "resolve"]\n'
    )

    def pull_all(namespace: str) -> None:
        for ref, digest in zip(refs, digests, strict=True):
            pull = ("images", "pull", "--hosts-dir", str(hosts.parent), "--snapshotter", "native")
            containerd.run("-n", namespace, *pull, ref)
            assert pulled_digest(containerd, namespace, ref) == digest

    pull_all("through-the-mirror")
    # Each upstream was asked for its own image only: ns picked the upstream.
    for upstream, own, other in zip(upstreams, digests, reversed(digests), strict=True):
        assert upstream.requests("GET", f"/v2/library/app/manifests/{own}") >= 1
        assert upstream.requests("GET", f"/v2/library/app/manifests/{other}") == 0
    # The access log has the names containerd asked for, and the ns of each.
    for upstream in upstreams:
        asked = f"/v2/library/app/manifests/v1?ns=127.0.0.1:{upstream.port}"
        assert logged(mirror.answered, "HEAD", asked, 200) == 1
    # Cached apart: the second upstream's under its prefix.
    password = (mirror.data_dir / "admin-password").read_text().strip()
    with httpx.Client(base_url=mirror.url, auth=TokenAuth("admin", password)) as admin:
        catalog = admin.get("/v2/_catalog").json()["repositories"]
    assert {"library/app", "second/library/app"} <= set(catalog)

    # Both upstreams gone: a namespace of containerd's with nothing in it pulls the same
    # images, every manifest and blob from the mirror's cache.
    for upstream in upstreams:
        upstream.stop()
    try:
        pull_all("from-the-cache")
    finally:
        for upstream in upstreams:
            upstream.start()
