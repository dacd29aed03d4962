"""The mirror's cache expiry and size limit (mirror.keep_days, mirror.max_bytes), through
the collection pass: the least recently pulled content goes first, what a hosted
repository also uses stays, every image pulled since still pulls, and a blob being
streamed while eviction deletes it arrives whole."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from registry.metadata import repositories
from registry.metadata.models import Repository
from tests.helpers import basic, push_image, sha256
from tests.peers.registry import RegistryProcess
from tests.proxy.conftest import (
    MIRROR_ADMIN_PASSWORD,
    MirrorFactory,
    Upstream,
    blob_digest,
    client_of,
    push_upstream,
    unique,
)

pytestmark = pytest.mark.anyio

LEASE = "0.2"  # blob leases; a renewal lasts twice as long
KEEP = 3.0  # seconds an image not pulled stays, where a test sets mirror.keep_days
PAST_LEASES = 0.5


def layer_of(seed: str, size: int) -> bytes:
    block = hashlib.sha512(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


async def images_upstream(
    upstream: Upstream, label: str, names: str, size: int
) -> tuple[dict[str, str], dict[str, bytes]]:
    """One image (tag v1, one layer of `size` bytes) per name, pushed upstream; returns
    their repositories and layers by name."""
    repos = {n: unique(f"{label}-{n}") for n in names}
    layers = {n: layer_of(repos[n], size) for n in names}
    for n in names:
        await push_upstream(upstream, repos[n], "v1", [layers[n]])
    return repos, layers


async def pull(mirror: httpx.AsyncClient, repo: str, tag: str = "v1") -> dict[str, Any]:
    """A client's pull: the manifest by tag, then its config and layers, each checked."""
    r = await mirror.get(f"/v2/{repo}/manifests/{tag}")
    assert r.status_code == 200, r.text
    manifest: dict[str, Any] = r.json()
    for descriptor in [manifest["config"], *manifest["layers"]]:
        r = await mirror.get(f"/v2/{repo}/blobs/{descriptor['digest']}")
        assert r.status_code == 200, r.text
        assert sha256(r.content) == descriptor["digest"]
    return manifest


async def pulled(app: Starlette, mirror: httpx.AsyncClient, repo: str) -> None:
    """Pull, and flush the pull counts as the worker does every few seconds."""
    await pull(mirror, repo)
    await app.state.registry.pulls.flush()


async def collect(app: Starlette) -> Any:
    await asyncio.sleep(PAST_LEASES)
    done = await app.state.registry.gc.collect(sweep_uploads=False)
    assert done.error is None
    return done


async def cache_status(mirror: httpx.AsyncClient) -> dict[str, Any]:
    r = await mirror.get("/api/v1/mirror")
    assert r.status_code == 200, r.text
    status: dict[str, Any] = r.json()
    return status


async def test_the_size_limit_evicts_the_least_recently_pulled_first(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    names = "abc"
    repos, layers = await images_upstream(upstream, "lru", names, 200_000)
    limit = 450_000  # two images and their manifests and configs, not three
    app = make_mirror(mirror_max_bytes=str(limit), gc_blob_lease_seconds=LEASE)
    store = app.state.registry.store

    async def stored(n: str) -> bool:
        return await store.stat(blob_digest(layers[n])) is not None

    async def fetched(n: str) -> int:
        return upstream.requests("GET", f"/v2/{repos[n]}/blobs/{sha256(layers[n])}")

    async with client_of(app) as mirror:
        for n in names:
            await pulled(app, mirror, repos[n])
        status = await cache_status(mirror)
        assert status["upstreams"][0]["max_bytes"] == limit
        assert status["upstreams"][0]["bytes"] > 600_000

        done = await collect(app)
        assert done.manifests_deleted == 1
        assert [await stored(n) for n in names] == [False, True, True]
        status = await cache_status(mirror)
        assert status["upstreams"][0]["bytes"] <= limit
        assert status["counters"]["manifests_evicted"] == 1
        assert (await mirror.get(f"/v2/{repos['a']}/tags/list")).json()["tags"] == []

        # `a` again: fetched anew, and now `b` is the least recently pulled.
        await pulled(app, mirror, repos["a"])
        assert await fetched("a") == 2
        await collect(app)
        assert [await stored(n) for n in names] == [True, False, True]
        assert (await cache_status(mirror))["upstreams"][0]["bytes"] <= limit
        # Everything pulled since still pulls, from the cache.
        for n in "ca":
            await pull(mirror, repos[n])
        assert [await fetched(n) for n in names] == [2, 1, 1]
        # Deletions by the mirror are events, with their reason.
        r = await mirror.get("/api/v1/audit", params={"action": "delete"})
        events = r.json()["events"]
        assert [(e["detail"], e["actor"]["name"]) for e in events] == [
            ({"reason": "evicted"}, "mirror")
        ] * 2


async def test_content_not_pulled_for_keep_days_expires_but_what_a_hosted_image_uses_stays(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    old, recent = unique("old"), unique("recent")
    shared, own = layer_of(old + "shared", 50_000), layer_of(old + "own", 50_000)
    await push_upstream(upstream, old, "v1", [shared, own])
    await push_upstream(upstream, recent, "v1", [layer_of(recent, 50_000)])
    # Expiry after 3 s: "recent", pulled again 1.2 s before the pass, keeps 1.8 s to
    # spare for a pass slowed by a loaded machine (with 1.5 s and 0.6 s, a parallel run
    # once expired it too).
    app = make_mirror(
        mirror_keep_days=str(KEEP / 86_400),
        gc_blob_lease_seconds=LEASE,
        mirror_mirror_only="false",
        auth_enabled="true",
        admin_password=MIRROR_ADMIN_PASSWORD,
        mirror_open="true",
    )
    registry = app.state.registry
    await registry.auth.accounts.ensure_admin(MIRROR_ADMIN_PASSWORD)
    await registry.auth.accounts.add_namespace("team", public=True)
    async with client_of(app, headers=basic("admin", MIRROR_ADMIN_PASSWORD)) as mirror:
        await pulled(app, mirror, old)
        await pulled(app, mirror, recent)
        # A hosted image with one of the old image's layers.
        await push_image(mirror, "team/app", "v1", layers=[shared])
        await asyncio.sleep(KEEP - 1.0)
        await pulled(app, mirror, recent)  # keeps it from expiring
        await asyncio.sleep(1.2)

        done = await collect(app)
        assert done.manifests_deleted == 1
        assert (await mirror.get(f"/v2/{old}/tags/list")).json()["tags"] == []
        assert await registry.store.stat(blob_digest(own)) is None
        assert await registry.store.stat(blob_digest(shared)) is not None
        assert (await mirror.get(f"/v2/{recent}/tags/list")).json()["tags"] == ["v1"]
        assert (await mirror.get("/v2/team/app/blobs/" + sha256(shared))).content == shared
        status = await cache_status(mirror)
        assert status["counters"]["manifests_expired"] == 1
        assert status["upstreams"][0]["keep_days"] == pytest.approx(KEEP / 86_400)
        # The hosted namespace is no upstream's cache: nothing of it expires.
        await asyncio.sleep(KEEP + 0.1)
        await collect(app)
        assert (await mirror.get("/v2/team/app/tags/list")).json()["tags"] == ["v1"]
        # The expired image pulls again, from the upstream.
        await pull(mirror, old)
        assert upstream.requests("GET", f"/v2/{old}/blobs/{sha256(own)}") == 2


async def test_two_replicas_evicting_at_once_evict_for_the_excess_once(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    names = "abcd"
    repos, layers = await images_upstream(upstream, "pair", names, 100_000)
    env = {"mirror_max_bytes": "350000", "gc_blob_lease_seconds": LEASE}
    first, second = make_mirror(**env), make_mirror(**env)
    async with client_of(first) as mirror:
        for n in names:
            await pulled(first, mirror, repos[n])
        await asyncio.sleep(PAST_LEASES)
        passes = await asyncio.gather(
            first.state.registry.gc.collect(sweep_uploads=False),
            second.state.registry.gc.collect(sweep_uploads=False),
        )
        # 4 images of about 100 kB over a limit of 350 kB: one goes, not one per replica.
        assert sum(p.manifests_deleted for p in passes) == 1
        store = first.state.registry.store
        kept = [await store.stat(blob_digest(layers[n])) is not None for n in names]
        assert kept == [False, True, True, True]


def test_a_blob_streamed_while_eviction_deletes_it_arrives_whole(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Through a real server: the client reads a 32 MiB blob slowly while passes evict
    its image. Within its lease the blob is kept; past it, the pass deletes the file
    while the stream still has it open, and the client still gets every byte."""
    repo = unique("streamed")
    layer = layer_of(repo, 32 * 1024 * 1024)
    anyio.run(push_upstream, upstream, repo, "v1", [layer])
    mirror = RegistryProcess(
        tmp_path / "mirror",
        {
            "REGISTRY_MIRROR_ENABLED": "true",
            "REGISTRY_MIRROR_UPSTREAMS": upstream.url,
            "REGISTRY_MIRROR_MAX_BYTES": "1000",
            "REGISTRY_GC_BLOB_LEASE_SECONDS": "4",  # the fetch leases it for 8 s
            "REGISTRY_GC_INTERVAL_SECONDS": "0",
        },
    ).start()
    try:
        digest = sha256(layer)
        blob = mirror.data_dir / "storage/blobs/sha256" / digest[7:9] / digest[7:]
        with httpx.Client(base_url=mirror.url, timeout=60) as client:
            assert client.get(f"/v2/{repo}/manifests/v1").status_code == 200
            assert client.get(f"/v2/{repo}/blobs/{digest}").content == layer  # fetched
            lease_end = time.monotonic() + 8
            assert blob.exists()
            with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
                assert response.status_code == 200
                pieces = response.iter_bytes(64 * 1024)
                received = bytearray(next(pieces))
                # Within the lease the GET renewed: the image goes, its layer waits.
                # (The manifest's own bytes, leased when it was fetched, may go now or
                # next: a loaded machine once took past that lease to start the command.)
                first = re.fullmatch(
                    r"deleted 1 manifests, ([01]) blobs.*", mirror.cli("gc").stdout.strip()
                )
                assert first is not None
                assert blob.exists()
                # Past it: the pass deletes the file under the open stream.
                time.sleep(max(0.0, lease_end - time.monotonic()) + 0.5)
                out = mirror.cli("gc").stdout
                # The layer, and the manifest's bytes if they were still there.
                assert out.startswith(f"deleted 0 manifests, {2 - int(first[1])} blobs"), out
                assert not blob.exists()
                for piece in pieces:
                    received += piece
            assert hashlib.sha256(received).hexdigest() == digest[7:]
            # Pulled again, it is fetched again.
            assert client.get(f"/v2/{repo}/manifests/v1").status_code == 200
            assert client.get(f"/v2/{repo}/blobs/{digest}").content == layer
    finally:
        mirror.stop()


async def test_each_cache_is_the_repositories_its_upstream_serves(
    make_mirror: MirrorFactory,
) -> None:
    upstreams = (
        '[{url: "https://ghcr.io", prefix: "ghcr.io"}, {url: "https://registry-1.docker.io"}]'
    )
    app = make_mirror(mirror_upstreams=upstreams, mirror_allow_hosts="*.k8s.io")
    registry = app.state.registry
    names = {
        "library/nginx": "",
        "bitnami/redis": "",
        "k8s.io/x": "",  # not *.k8s.io: Docker Hub's
        "ghcr.io/org/app": "ghcr.io",
        "registry.k8s.io/pause": "*.k8s.io",
        "a.b.k8s.io/c": "*.k8s.io",
    }
    async with registry.db.write() as conn:
        for name in names:
            await repositories.ensure_repository(conn, name)
    found = {}
    async with registry.db.read() as conn:
        for cache in registry.gc.expiry.caches:
            rows = await conn.scalars(select(Repository.name).where(cache.repositories))
            found.update({name: cache.prefix for name in rows if name in names})
    assert found == names


async def test_a_pull_rule_from_the_mirrors_upstream_keeps_hosted_copies_that_never_expire(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    """The same image pulled through the mirror (cache: it expires) and copied by a pull
    rule from the same upstream into a hosted namespace (it stays)."""
    repo = unique("vendor")
    layer = layer_of(repo, 50_000)
    await push_upstream(upstream, repo, "v1", [layer])
    app = make_mirror(
        mirror_keep_days=str(KEEP / 86_400),
        gc_blob_lease_seconds=LEASE,
        mirror_mirror_only="false",
        auth_enabled="true",
        admin_password=MIRROR_ADMIN_PASSWORD,
        replication_allow_private_targets="true",
    )
    registry = app.state.registry
    await registry.auth.accounts.ensure_admin(MIRROR_ADMIN_PASSWORD)
    async with client_of(app, headers=basic("admin", MIRROR_ADMIN_PASSWORD)) as mirror:
        await pulled(app, mirror, repo)
        r = await mirror.post("/api/v1/remotes", json={"name": "hub", "url": upstream.url})
        assert r.status_code == 201, r.text
        rule = {
            "name": "vendor",
            "direction": "pull",
            "remote": "hub",
            "repositories": [repo],
            "destination": "thirdparty",
        }
        assert (await mirror.post("/api/v1/replication/rules", json=rule)).status_code == 201
        assert (await mirror.post("/api/v1/replication/rules/vendor/run")).status_code == 202
        await registry.replicator.drain()
        # Hosted: its namespace was made by the copy.
        namespaces = (await mirror.get("/api/v1/namespaces")).json()["namespaces"]
        assert "thirdparty" in [n["name"] for n in namespaces]
        await asyncio.sleep(KEEP + 0.2)
        done = await collect(app)
        assert done.manifests_deleted == 1  # the cached one
        assert (await mirror.get(f"/v2/{repo}/tags/list")).json()["tags"] == []
        copied = f"thirdparty/{repo}"
        assert (await mirror.get(f"/v2/{copied}/tags/list")).json()["tags"] == ["v1"]
        assert (await mirror.get(f"/v2/{copied}/blobs/{sha256(layer)}")).content == layer


async def test_a_mirror_only_registry_takes_no_pull_rule(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    app = make_mirror(auth_enabled="true", admin_password=MIRROR_ADMIN_PASSWORD)
    await app.state.registry.auth.accounts.ensure_admin(MIRROR_ADMIN_PASSWORD)
    async with client_of(app, headers=basic("admin", MIRROR_ADMIN_PASSWORD)) as mirror:
        r = await mirror.post("/api/v1/remotes", json={"name": "hub", "url": upstream.url})
        assert r.status_code == 201, r.text
        rule = {"name": "in", "direction": "pull", "remote": "hub", "destination": "x"}
        r = await mirror.post("/api/v1/replication/rules", json=rule)
        assert r.status_code == 400 and "mirror only" in r.json()["errors"][0]["message"]
