"""Garbage collection finds what nothing references, from the database alone: blobs are
queued the moment they become unreferenced (by triggers, whichever code path removes the
reference), and leases keep what a push touched. (Deleting comes with the collector.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.metadata.models import Blob, now
from tests.helpers import push_blob, push_image, sha256

pytestmark = pytest.mark.anyio

LEASE = 1.0


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Starlette]:
    application = create_app(make_settings(gc_blob_lease_seconds=str(int(LEASE))))
    yield application
    await application.state.registry.close()


async def collectable(app: Starlette) -> set[str]:
    garbage = await app.state.registry.gc.find()
    return {digest for digest, _ in garbage.blobs}


async def row(app: Starlette, digest: str) -> tuple[datetime | None, datetime | None]:
    """The blob's lease and queue times (SQLite gives them back without a zone: UTC)."""
    async with app.state.registry.db.read() as conn:
        found = (
            await conn.execute(
                select(Blob.leased_until, Blob.gc_after).where(Blob.digest == digest)
            )
        ).first()
    assert found is not None
    return tuple(  # type: ignore[return-value]
        t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t for t in found
    )


async def after_the_lease() -> None:
    await asyncio.sleep(LEASE + 0.2)


async def test_an_upload_nobody_uses_is_garbage_once_its_lease_ends(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    digest = await push_blob(client, "team/app", b"pushed, never referenced")
    leased_until, gc_after = await row(app, digest)
    assert leased_until == gc_after
    assert abs(leased_until - (now() + timedelta(seconds=LEASE))) < timedelta(seconds=1)
    assert digest not in await collectable(app)
    await after_the_lease()
    garbage = await app.state.registry.gc.find()
    assert (digest, len(b"pushed, never referenced")) in garbage.blobs
    assert garbage.bytes >= len(b"pushed, never referenced")


async def test_what_a_manifest_references_is_never_garbage(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    manifest, _ = await push_image(client, "team/app", "v1", layers=[b"layer"])
    await after_the_lease()
    found = await collectable(app)
    assert not found & {manifest, sha256(b"layer"), sha256(b'{"ref": "v1"}')}


async def test_deleting_a_manifest_queues_what_it_referenced(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    manifest, _ = await push_image(client, "team/app", "v1", layers=[b"only here"])
    await push_image(client, "team/other", "o1", layers=[b"shared"])
    shared, _ = await push_image(client, "team/app", "v2", layers=[b"shared"])
    await after_the_lease()
    assert (await row(app, sha256(b"only here")))[1] is not None  # queued at upload
    assert not await collectable(app)

    assert (await client.delete(f"/v2/team/app/manifests/{manifest}")).status_code == 202
    assert (await client.delete(f"/v2/team/app/manifests/{shared}")).status_code == 202
    found = await collectable(app)
    # Its layer, its config and the manifest itself; not the layer team/other still uses.
    assert {manifest, sha256(b"only here"), sha256(b'{"ref": "v1"}'), shared} <= found
    assert sha256(b"shared") not in found


async def test_deleting_a_tag_keeps_its_manifest(app: Starlette, client: httpx.AsyncClient) -> None:
    manifest, _ = await push_image(client, "team/app", "v1", layers=[b"kept"])
    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
    await after_the_lease()
    assert not {manifest, sha256(b"kept")} & await collectable(app)


async def test_a_mount_renews_the_lease(app: Starlette, client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team/source", b"mounted later")
    await after_the_lease()
    assert digest in await collectable(app)
    r = await client.post(
        "/v2/team/target/blobs/uploads/", params={"mount": digest, "from": "team/source"}
    )
    assert r.status_code == 201
    assert digest not in await collectable(app)
    await after_the_lease()
    assert digest in await collectable(app)


async def test_pushing_a_blob_again_renews_its_lease(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    digest = await push_blob(client, "team/app", b"again")
    await after_the_lease()
    await push_blob(client, "team/app", b"again")
    assert digest not in await collectable(app)
