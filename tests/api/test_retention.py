"""Retention policies: which tags of each repository go, with the manifests they leave
untagged, their referrers and platform children; never what something kept needs, never
an immutable tag; `dry_run` changes nothing and says exactly what a run does. On SQLite and
PostgreSQL, filesystem and S3."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from tests.helpers import config_only_manifest, index_of, push_image, put_manifest, sha256

pytestmark = pytest.mark.anyio


# Leases of 0.2 s (renewals 0.4 s), for tests/api/conftest.py's app.
SETTINGS = {"gc_blob_lease_seconds": "0.2"}


async def policy(client: httpx.AsyncClient, namespace: str = "team", **changes: Any) -> None:
    r = await client.patch(f"/api/v1/namespaces/{namespace}/policy", json=changes)
    assert r.status_code == 200, r.text


async def tags(client: httpx.AsyncClient, repo: str) -> list[str]:
    r = await client.get(f"/v2/{repo}/tags/list")
    return r.json()["tags"] if r.status_code == 200 else []


async def present(client: httpx.AsyncClient, repo: str, digest: str) -> bool:
    accept = f"{OCI_MANIFEST}, {OCI_INDEX}"
    r = await client.head(f"/v2/{repo}/manifests/{digest}", headers={"Accept": accept})
    return r.status_code == 200


async def test_keep_last_deletes_the_oldest_and_a_dry_run_says_so_first(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    registry = app.state.registry
    pushed = {}
    for n in range(1, 5):
        pushed[f"v{n}"], _ = await push_image(client, "team/app", f"v{n}", layers=[b"l%d" % n])
    await policy(client, retention={"keep_last": 2})

    [planned] = await registry.retention.run(dry_run=True)
    assert (planned.repository, planned.tags) == ("team/app", ["v1", "v2"])
    assert planned.manifests == sorted([pushed["v1"], pushed["v2"]])
    assert planned.bytes_freed > len(b"l1") + len(b"l2")
    assert await tags(client, "team/app") == ["v1", "v2", "v3", "v4"]  # nothing changed

    [done] = await registry.retention.run()
    assert (done.tags, done.manifests, done.bytes_freed) == (
        planned.tags,
        planned.manifests,
        planned.bytes_freed,
    )
    assert await tags(client, "team/app") == ["v3", "v4"]
    assert not await present(client, "team/app", pushed["v1"])
    # Audited as retention's, the dry run not at all.
    r = await client.get("/api/v1/audit", params={"action": "delete", "actor": "retention"})
    deleted = [e["target"] for e in r.json()["events"]]
    assert sorted(t.get("tag") or t["digest"] for t in deleted) == sorted(
        ["v1", "v2", pushed["v1"], pushed["v2"]]
    )
    assert all(t["repository"] == "team/app" for t in deleted)
    assert await registry.retention.run() == []  # nothing more to do
    await asyncio.sleep(0.6)
    collected = await registry.gc.collect()
    assert collected.bytes_freed == planned.bytes_freed
    assert await registry.store.stat(Digest.of(b"l1")) is None
    assert await registry.store.stat(Digest.of(b"l3")) == 2


async def test_patterns_immutable_tags_and_age_keep_tags(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    for tag in ("v1", "v2", "latest", "old"):
        await push_image(client, "team/app", tag)
    await policy(
        client,
        immutable_tags=["v1"],
        retention={"keep_last": 0, "keep_tags": ["latest"], "older_than_days": 0.00001},
    )
    await asyncio.sleep(1)  # past 0.86 s
    await push_image(client, "team/app", "fresh")
    [done] = await app.state.registry.retention.run()
    assert done.tags == ["old", "v2"]
    assert await tags(client, "team/app") == ["fresh", "latest", "v1"]


async def test_a_manifest_keeps_a_tag_that_stays(app: Starlette, client: httpx.AsyncClient) -> None:
    digest, body = await push_image(client, "team/app", "build-1")
    await put_manifest(client, "team/app", "stable", body, OCI_MANIFEST)
    await policy(client, retention={"keep_last": 0, "keep_tags": ["stable"]})
    [done] = await app.state.registry.retention.run()
    assert (done.tags, done.manifests) == (["build-1"], [])
    assert await present(client, "team/app", digest)


async def test_referrers_and_platform_children_go_with_their_index(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    children = []
    for arch in ("amd64", "arm64"):
        _, body = await push_image(client, "team/app", f"multi-{arch}", layers=[arch.encode()])
        assert (await client.delete(f"/v2/team/app/manifests/multi-{arch}")).status_code == 202
        children.append((OCI_MANIFEST, body, {"os": "linux", "architecture": arch}))
    index = index_of(children)
    index_digest = await put_manifest(client, "team/app", "multi", index, OCI_INDEX)
    subject = {"mediaType": OCI_INDEX, "digest": index_digest, "size": len(index)}
    sbom = await config_only_manifest(client, "team/app", "application/spdx+json", subject=subject)
    sbom_digest = await put_manifest(client, "team/app", sha256(sbom), sbom, OCI_MANIFEST)
    await policy(client, retention={"keep_last": 0})
    [done] = await app.state.registry.retention.run()
    every = {index_digest, sbom_digest, *(sha256(body) for _, body, _ in children)}
    assert set(done.manifests) == every
    for digest in every:
        assert not await present(client, "team/app", digest)


async def test_a_kept_referrer_keeps_its_subject(app: Starlette, client: httpx.AsyncClient) -> None:
    image, image_body = await push_image(client, "team/app", "v1")
    subject = {"mediaType": OCI_MANIFEST, "digest": image, "size": len(image_body)}
    signature = await config_only_manifest(
        client, "team/app", "application/vnd.dev.cosign.artifact.sig.v1+json", subject=subject
    )
    await put_manifest(client, "team/app", "sig-v1", signature, OCI_MANIFEST)
    await policy(client, retention={"keep_last": 0, "keep_tags": ["sig-*"]})
    [done] = await app.state.registry.retention.run()
    assert (done.tags, done.manifests) == (["v1"], [])
    assert await present(client, "team/app", image)


async def test_an_index_elsewhere_keeps_its_child_and_other_namespaces_are_untouched(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    child, body = await push_image(client, "team/app", "v1", layers=[b"amd64"])
    await push_image(client, "other/app", "v1", layers=[b"amd64"])
    index = index_of([(OCI_MANIFEST, body, {"os": "linux", "architecture": "amd64"})])
    await put_manifest(client, "other/app", "multi", index, OCI_INDEX)
    await policy(client, retention={"keep_last": 0})
    [done] = await app.state.registry.retention.run()
    assert (done.tags, done.manifests) == (["v1"], [])  # other/app's index lists it
    assert await present(client, "team/app", child)
    assert await tags(client, "other/app") == ["multi", "v1"]


async def test_the_collector_applies_retention_when_asked(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await push_image(client, "team/app", "v1")
    await push_image(client, "team/app", "v2")
    await policy(client, retention={"keep_last": 1})
    assert (await app.state.registry.gc.collect()).tags_deleted == 0
    done = await app.state.registry.gc.collect(retention=True)
    assert (done.tags_deleted, done.manifests_deleted) == (1, 1)
    assert await tags(client, "team/app") == ["v2"]
    totals = await app.state.registry.gc.totals()
    assert totals["gc_tags_deleted"] == 1 and totals["gc_manifests_deleted"] == 1
