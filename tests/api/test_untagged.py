"""The untagged-manifest policy (gc.untagged_hours): manifests no tag has pointed at for
that long are deleted by the collection pass, and their blobs with them; never one an
index lists (in any repository), nor the subject of a referrer that stays, nor a child
of an index that stays. On SQLite and PostgreSQL, filesystem and S3."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.digest import Digest
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.metadata import gc as gc_queries
from tests.helpers import (
    config_only_manifest,
    index_of,
    pause_after,
    push_image,
    put_manifest,
    sha256,
)

pytestmark = pytest.mark.anyio

UNTAGGED_HOURS = 0.0001  # 0.36 s
WAIT = 0.6  # past it, and past the blobs' leases (renewals last 0.4 s)


def settings_env(untagged_hours: float = UNTAGGED_HOURS) -> dict[str, str]:
    return {"gc_untagged_hours": str(untagged_hours), "gc_blob_lease_seconds": "0.2"}


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Starlette]:
    application = create_app(make_settings(**settings_env()))
    yield application
    await application.state.registry.close()


async def collect(app: Starlette, wait: bool = True) -> Any:
    if wait:
        await asyncio.sleep(WAIT)
    done = await app.state.registry.gc.collect(sweep_uploads=False)
    assert done.error is None
    return done


async def present(client: httpx.AsyncClient, repo: str, digest: str) -> bool:
    r = await client.head(
        f"/v2/{repo}/manifests/{digest}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
    )
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


async def test_a_manifest_a_tag_moved_off_goes_with_its_blobs(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    old, _ = await push_image(client, "team/app", "v1", layers=[b"old layer", b"shared"])
    new, _ = await push_image(client, "team/app", "v1", layers=[b"new layer", b"shared"])
    done = await collect(app)
    assert done.manifests_deleted == 1
    assert not await present(client, "team/app", old)
    assert await present(client, "team/app", new)
    assert done.blobs_deleted == 2  # the old manifest and its own layer (the config is shared)
    store = app.state.registry.store
    assert await store.stat(Digest.parse(sha256(b"old layer"))) is None
    for blob in (b"new layer", b"shared"):
        r = await client.get(f"/v2/team/app/blobs/{sha256(blob)}")
        assert r.status_code == 200 and r.content == blob


async def test_deleted_tags_and_pushes_by_digest_count_as_untagged(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    tagged, _ = await push_image(client, "team/app", "v1")
    body = await config_only_manifest(client, "team/app")
    by_digest = await put_manifest(client, "team/app", sha256(body), body, OCI_MANIFEST)
    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
    assert (await collect(app)).manifests_deleted == 2
    assert not await present(client, "team/app", tagged)
    assert not await present(client, "team/app", by_digest)


async def test_a_manifest_tagged_again_in_time_stays(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    digest, body = await push_image(client, "team/app", "v1")
    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
    await put_manifest(client, "team/app", "v2", body, OCI_MANIFEST)
    assert (await collect(app)).manifests_deleted == 0
    assert await present(client, "team/app", digest)


async def test_keep_is_the_default(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(**settings_env(untagged_hours=0)))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as c:
            old, _ = await push_image(c, "team/app", "v1", layers=[b"a"])
            await push_image(c, "team/app", "v1", layers=[b"b"])
            assert (await collect(app)).manifests_deleted == 0
            assert await present(c, "team/app", old)
    finally:
        await app.state.registry.close()


async def children_and_index(client: httpx.AsyncClient, repo: str, tag: str) -> list[str]:
    """Two platform images pushed by digest, and an index over them tagged `tag`;
    returns [child, child, index] digests."""
    children = []
    for arch in ("amd64", "arm64"):
        _, body = await push_image(client, repo, f"{tag}-{arch}", layers=[arch.encode()])
        assert (await client.delete(f"/v2/{repo}/manifests/{tag}-{arch}")).status_code == 202
        children.append((OCI_MANIFEST, body, {"os": "linux", "architecture": arch}))
    index = index_of(children)
    index_digest = await put_manifest(client, repo, tag, index, OCI_INDEX)
    return [sha256(body) for _, body, _ in children] + [index_digest]


async def test_children_stay_with_their_index_and_go_with_it(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    *children, index = await children_and_index(client, "team/app", "multi")
    assert (await collect(app)).manifests_deleted == 0
    for digest in (*children, index):
        assert await present(client, "team/app", digest)
    assert (await client.delete("/v2/team/app/manifests/multi")).status_code == 202
    # The index goes, and nothing keeps its children then: all three in one pass.
    assert (await collect(app)).manifests_deleted == 3
    for digest in (*children, index):
        assert not await present(client, "team/app", digest)


async def test_an_index_in_another_repository_keeps_the_digest(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    *children, _ = await children_and_index(client, "team/other", "multi")
    # The same child content, untagged, in team/app: an index elsewhere lists it.
    for arch in ("amd64", "arm64"):
        digest, _ = await push_image(client, "team/app", f"multi-{arch}", layers=[arch.encode()])
        assert digest in children
        assert (await client.delete(f"/v2/team/app/manifests/multi-{arch}")).status_code == 202
    assert (await collect(app)).manifests_deleted == 0
    for digest in children:
        assert await present(client, "team/app", digest)


async def test_a_signature_keeps_its_image_and_goes_with_it(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    image, image_body = await push_image(client, "team/app", "v1")
    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
    subject = {"mediaType": OCI_MANIFEST, "digest": image, "size": len(image_body)}
    signature = await config_only_manifest(
        client,
        "team/app",
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        subject=subject,
        artifactType="application/vnd.dev.cosign.artifact.sig.v1+json",
    )
    await put_manifest(client, "team/app", "sig", signature, OCI_MANIFEST)
    assert (await collect(app)).manifests_deleted == 0
    assert await present(client, "team/app", image)
    assert (await client.delete("/v2/team/app/manifests/sig")).status_code == 202
    assert (await collect(app)).manifests_deleted == 2
    assert not await present(client, "team/app", image)
    assert not await present(client, "team/app", sha256(signature))


async def test_a_tag_pushed_while_a_pass_deletes_the_manifest_wins(
    app: Starlette, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst interleaving: the pass holds the untagged manifest and is about to
    delete it when a push tags it again. The push waits for the pass, past the end of
    its blobs' leases, then stores the manifest anew: it answers 201, and the image
    pulls."""
    digest, body = await push_image(client, "team/app", "v1", layers=[b"racing layer"])
    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
    await asyncio.sleep(WAIT)
    locked, release = pause_after(monkeypatch, gc_queries, "needed")
    # The push checks its blobs first, as docker does: the HEADs renew their leases.
    for item in [json.loads(body)["config"], *json.loads(body)["layers"]]:
        assert (await client.head(f"/v2/team/app/blobs/{item['digest']}")).status_code == 200
    collecting = asyncio.create_task(collect(app, wait=False))
    await locked.wait()
    pushing = asyncio.create_task(put_manifest(client, "team/app", "v2", body, OCI_MANIFEST))
    # The push came within the leases the HEADs renewed; the pass holds it up until
    # those leases have ended, and must still keep the blobs.
    await asyncio.sleep(0.5)
    release.set()
    await collecting
    r = await pushing
    assert r == digest
    pulled = await client.get("/v2/team/app/manifests/v2", headers={"Accept": OCI_MANIFEST})
    assert pulled.status_code == 200
    for item in [json.loads(body)["config"], *json.loads(body)["layers"]]:
        blob = await client.get(f"/v2/team/app/blobs/{item['digest']}")
        assert blob.status_code == 200, item
