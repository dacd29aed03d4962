"""Garbage collection, on SQLite and PostgreSQL, filesystem and S3: what nothing references
is queued the moment it becomes unreferenced (by triggers, whichever code path removes the
reference) and deleted once no lease holds it; what a push touched is kept; and the worst
interleavings of a collection pass with pushes (the pass paused at its most dangerous
points) end with every acknowledged push intact."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.digest import Digest
from registry.mediatypes import OCI_MANIFEST
from registry.metadata import gc as gc_queries
from registry.metadata.counters import counters
from registry.metadata.models import Blob, BlobTombstone, GcRun, now
from registry.services import leases
from registry.services.gc import worker_name
from tests.helpers import descriptor, pause_after, push_blob, push_image, scraped, sha256

pytestmark = pytest.mark.anyio

LEASE = 0.5  # renewals last 1 s


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Starlette]:
    application = create_app(make_settings(gc_blob_lease_seconds=str(LEASE)))
    yield application
    await application.state.registry.close()


def registry_of(app: Starlette) -> Any:
    return app.state.registry


async def collectable(app: Starlette) -> set[str]:
    garbage = await registry_of(app).gc.find()
    return {digest for digest, _ in garbage.blobs}


async def row(app: Starlette, digest: str) -> tuple[datetime | None, datetime | None] | None:
    """The blob's lease and queue times (SQLite gives them back without a zone: UTC)."""
    async with registry_of(app).db.read() as conn:
        found = (
            await conn.execute(
                select(Blob.leased_until, Blob.gc_after).where(Blob.digest == digest)
            )
        ).first()
    if found is None:
        return None
    leased_until, gc_after = (
        t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t for t in found
    )
    return leased_until, gc_after


async def stored(app: Starlette, digest: str) -> bool:
    return await registry_of(app).store.stat(Digest.parse(digest)) is not None


async def after(leases: float) -> None:
    """Sleep past this many leases (a renewal lasts two)."""
    await asyncio.sleep(leases * LEASE + 0.2)


def manifest_of(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(x, "application/vnd.oci.image.layer.v1.tar") for x in layers],
        }
    ).encode()


async def put(client: httpx.AsyncClient, repo: str, tag: str, body: bytes) -> httpx.Response:
    return await client.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )


async def pulls_whole(client: httpx.AsyncClient, repo: str, tag: str) -> None:
    """The manifest and every blob it references pull, with the right digests."""
    r = await client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    doc = r.json()
    for item in [doc["config"], *doc["layers"]]:
        blob = await client.get(f"/v2/{repo}/blobs/{item['digest']}")
        assert blob.status_code == 200, (item, blob.text)
        assert sha256(blob.content) == item["digest"]


# Finding and deleting


async def test_an_upload_nobody_uses_is_deleted_once_its_lease_ends(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    data = b"pushed, never referenced"
    digest = await push_blob(client, "team/app", data)
    found = await row(app, digest)
    assert found is not None
    leased_until, gc_after = found
    assert leased_until is not None and leased_until == gc_after
    assert abs(leased_until - (now() + timedelta(seconds=2 * LEASE))) < timedelta(seconds=1)
    early = await registry_of(app).gc.collect()
    assert early.blobs_deleted == 0 and await stored(app, digest)
    await after(2)
    garbage = await registry_of(app).gc.find()
    assert (digest, len(data)) in garbage.blobs
    done = await registry_of(app).gc.collect()
    assert done.error is None
    assert (done.blobs_deleted, done.bytes_freed) == (1, len(data))
    assert await row(app, digest) is None
    assert not await stored(app, digest)
    assert (await client.head(f"/v2/team/app/blobs/{digest}")).status_code == 404
    # It can be pushed again, and is a whole blob again.
    await push_blob(client, "team/app", data)
    assert (await client.get(f"/v2/team/app/blobs/{digest}")).content == data


async def test_what_a_manifest_references_is_never_deleted(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    manifest, _ = await push_image(client, "team/app", "v1", layers=[b"layer"])
    await after(2)
    assert (await registry_of(app).gc.collect()).blobs_deleted == 0
    await pulls_whole(client, "team/app", "v1")
    assert await stored(app, manifest)
    # Looked at once and found referenced: off the queue until a reference goes.
    for digest in (manifest, sha256(b"layer")):
        found = await row(app, digest)
        assert found is not None and found[1] is None


async def test_deleting_a_manifest_frees_what_only_it_referenced(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    manifest, body = await push_image(client, "team/app", "v1", layers=[b"only here"])
    await push_image(client, "team/other", "o1", layers=[b"shared"])
    shared, shared_body = await push_image(client, "team/app", "v2", layers=[b"shared"])
    await after(2)
    assert (await row(app, sha256(b"only here")) or (None, None))[1] is not None
    assert not await collectable(app)

    assert (await client.delete(f"/v2/team/app/manifests/{manifest}")).status_code == 202
    assert (await client.delete(f"/v2/team/app/manifests/{shared}")).status_code == 202
    done = await registry_of(app).gc.collect()
    gone = {manifest, sha256(b"only here"), sha256(b'{"ref": "v1"}'), shared}
    assert done.blobs_deleted >= len(gone)
    for digest in gone:
        assert await row(app, digest) is None and not await stored(app, digest)
    # What team/other still uses stays, and pulls.
    assert await stored(app, sha256(b"shared"))
    await pulls_whole(client, "team/other", "o1")
    expected = len(body) + len(shared_body) + len(b"only here") + len(b'{"ref": "v1"}')
    assert done.bytes_freed >= expected


async def test_deleting_a_tag_keeps_its_manifest(app: Starlette, client: httpx.AsyncClient) -> None:
    manifest, _ = await push_image(client, "team/app", "v1", layers=[b"kept"])
    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
    await after(2)
    assert (await registry_of(app).gc.collect()).blobs_deleted == 0
    assert await stored(app, manifest) and await stored(app, sha256(b"kept"))


async def test_a_leased_blob_is_postponed_to_its_lease_end(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    manifest, _ = await push_image(client, "team/app", "v1", layers=[b"was used"])
    await after(2)
    await registry_of(app).gc.collect()  # looked at, referenced: off the queue
    layer = sha256(b"was used")
    assert (await client.head(f"/v2/team/app/blobs/{layer}")).status_code == 200
    assert (await client.delete(f"/v2/team/app/manifests/{manifest}")).status_code == 202
    # Queued now by the trigger, but the HEAD's lease still holds the layer.
    done = await registry_of(app).gc.collect()
    assert done.postponed == 1 and done.blobs_deleted >= 2  # the manifest and its config
    found = await row(app, layer)
    assert found is not None and found[1] == found[0]
    assert found[0] is not None and found[0] > now()
    await after(2)
    assert (await registry_of(app).gc.collect()).blobs_deleted == 1


# Leases: every 2xx a push gets keeps the blob for a lease


async def test_a_head_renews_the_lease(app: Starlette, client: httpx.AsyncClient) -> None:
    checked = await push_blob(client, "team/app", b"checked by a push")
    unchecked = await push_blob(client, "team/app", b"never checked")
    await after(1.2)  # under a lease left: the HEAD renews
    assert (await client.head(f"/v2/team/app/blobs/{checked}")).status_code == 200
    await after(0.8)  # past the upload's lease, within the HEAD's
    await registry_of(app).gc.collect()
    assert await stored(app, checked) and not await stored(app, unchecked)
    # The push that checked it PUTs its manifest within the lease: it succeeds.
    r = await put(client, "team/app", "v1", manifest_of(b"checked by a push", []))
    assert r.status_code == 201, r.text


async def test_a_head_with_a_lease_left_writes_nothing(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    digest = await push_blob(client, "team/app", b"fresh")
    before = await row(app, digest)
    assert (await client.head(f"/v2/team/app/blobs/{digest}")).status_code == 200
    assert await row(app, digest) == before
    # A GET is a pull, not a push's check: it renews nothing.
    await after(1.2)
    assert (await client.get(f"/v2/team/app/blobs/{digest}")).status_code == 200
    assert await row(app, digest) == before


async def test_a_mount_renews_the_lease(app: Starlette, client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team/source", b"mounted later")
    await after(2)
    assert digest in await collectable(app)
    r = await client.post(
        "/v2/team/target/blobs/uploads/", params={"mount": digest, "from": "team/source"}
    )
    assert r.status_code == 201
    assert digest not in await collectable(app)
    assert (await registry_of(app).gc.collect()).blobs_deleted == 0
    await after(2)
    assert digest in await collectable(app)


async def test_pushing_a_blob_again_renews_its_lease(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    digest = await push_blob(client, "team/app", b"again")
    await after(2)
    await push_blob(client, "team/app", b"again")
    assert digest not in await collectable(app)


async def test_a_manifest_push_after_the_lease_names_the_collected_blob(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    """Outside the lease the registry promises nothing: the push fails, with the spec's
    error naming the blob, and pushing that blob again completes it."""
    digest = await push_blob(client, "team/app", b"late")
    await after(2)
    await registry_of(app).gc.collect()
    body = manifest_of(b"late", [])
    r = await put(client, "team/app", "v1", body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert r.json()["errors"][0]["detail"] == {"digest": digest}
    await push_blob(client, "team/app", b"late")
    assert (await put(client, "team/app", "v1", body)).status_code == 201


async def test_a_refused_manifest_leaves_bytes_the_collector_finds(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    body = manifest_of(b"never pushed", [])
    r = await put(client, "team/app", "v1", body)
    assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    # Its bytes were stored before the check; they are queued like any unused upload.
    assert await stored(app, sha256(body))
    await after(2)
    await registry_of(app).gc.collect()
    assert not await stored(app, sha256(body)) and await row(app, sha256(body)) is None


# The worst interleavings, with a pass paused at its most dangerous points


@pytest.fixture
def pause_after_lock(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """Pause collection passes once they hold the due rows locked, before they decide."""
    return pause_after(monkeypatch, gc_queries, "referenced")


@pytest.fixture
def pause_byte_deletion(app: Starlette) -> tuple[asyncio.Event, asyncio.Event]:
    """Pause collection passes while they delete bytes (rows gone, tombstones left)."""
    store = registry_of(app).store
    deleting, release = asyncio.Event(), asyncio.Event()
    delete = store.delete

    async def paused(digests: Any) -> None:
        deleting.set()
        await release.wait()
        await delete(digests)

    store.delete = paused
    return deleting, release


async def pass_paused_on(
    app: Starlette, client: httpx.AsyncClient, repo: str, data: bytes, paused: asyncio.Event
) -> tuple[str, asyncio.Task[Any]]:
    """Push a blob, let its lease end, and start a pass; returns once the pass pauses."""
    digest = await push_blob(client, repo, data)
    await after(2)
    collecting = asyncio.create_task(registry_of(app).gc.collect())
    await paused.wait()
    return digest, collecting


async def test_a_head_during_a_pass_that_deletes_the_blob_answers_404(
    app: Starlette, client: httpx.AsyncClient, pause_after_lock: tuple[asyncio.Event, ...]
) -> None:
    locked, release = pause_after_lock
    digest, collecting = await pass_paused_on(app, client, "team/app", b"expired", locked)
    # The HEAD's renewal waits for the pass (its row lock, or SQLite's writer lock) ...
    head = asyncio.create_task(client.head(f"/v2/team/app/blobs/{digest}"))
    await asyncio.sleep(0.3)
    assert not head.done()
    release.set()
    assert (await collecting).blobs_deleted == 1
    # ... and then finds the row gone: it must not promise the push a blob.
    assert (await head).status_code == 404


async def test_an_upload_of_a_digest_being_deleted_waits_and_ends_whole(
    app: Starlette, client: httpx.AsyncClient, pause_byte_deletion: tuple[asyncio.Event, ...]
) -> None:
    deleting, release = pause_byte_deletion
    data = b"deleted and pushed again at once"
    digest, collecting = await pass_paused_on(app, client, "team/app", data, deleting)
    pushing = asyncio.create_task(push_blob(client, "team/other", data))
    await asyncio.sleep(0.3)
    assert not pushing.done()  # the tombstone holds it before its bytes are placed
    release.set()
    assert (await collecting).blobs_deleted == 1
    await pushing
    assert await stored(app, digest)
    r = await client.get(f"/v2/team/other/blobs/{digest}")
    assert r.status_code == 200 and r.content == data


async def test_a_mount_during_a_pass_that_deletes_the_blob_falls_back_to_an_upload(
    app: Starlette, client: httpx.AsyncClient, pause_after_lock: tuple[asyncio.Event, ...]
) -> None:
    locked, release = pause_after_lock
    digest, collecting = await pass_paused_on(
        app, client, "team/source", b"mounted too late", locked
    )
    mount = asyncio.create_task(
        client.post(
            "/v2/team/target/blobs/uploads/", params={"mount": digest, "from": "team/source"}
        )
    )
    await asyncio.sleep(0.3)
    release.set()
    await collecting
    # 202: an upload session instead of a mount of a blob that is gone.
    assert (await mount).status_code == 202
    assert (await client.head(f"/v2/team/target/blobs/{digest}")).status_code == 404


async def test_a_manifest_put_during_a_pass_either_wins_or_names_the_blob(
    app: Starlette, client: httpx.AsyncClient, pause_after_lock: tuple[asyncio.Event, ...]
) -> None:
    locked, release = pause_after_lock
    _, collecting = await pass_paused_on(app, client, "team/app", b"racing", locked)
    putting = asyncio.create_task(put(client, "team/app", "v1", manifest_of(b"racing", [])))
    await asyncio.sleep(0.3)
    release.set()
    await collecting
    r = await putting
    if r.status_code == 201:  # never a manifest whose blob is gone
        await pulls_whole(client, "team/app", "v1")
    else:
        assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
        assert not await stored(app, sha256(b"racing"))


async def test_a_hold_keeps_every_blob_until_it_is_released(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    gc = registry_of(app).gc
    digest = await push_blob(client, "team/app", b"garbage, held for a backup")
    await after(2)
    until = await gc.hold(now() + timedelta(hours=1), "test")
    assert until is not None and until > now()
    shown = (await client.get("/api/v1/gc")).json()["held_until"]
    assert abs(datetime.fromisoformat(shown) - until) < timedelta(seconds=1)
    held = await gc.collect()
    assert held.blobs_deleted == 0 and await stored(app, digest)
    assert digest in await collectable(app)  # still due: the hold only postpones it
    assert await gc.hold(None) is None
    assert (await client.get("/api/v1/gc")).json()["held_until"] is None
    assert (await gc.collect()).blobs_deleted == 1
    assert not await stored(app, digest)
    # A hold whose time has passed holds nothing (a backup that died does not stop GC).
    await push_blob(client, "team/app", b"more garbage")
    await after(2)
    assert await gc.hold(now() - timedelta(seconds=1), "test") is None
    assert (await gc.collect()).blobs_deleted == 1


async def test_a_hold_taken_while_a_pass_decides_waits_for_it_and_holds_the_next(
    app: Starlette, client: httpx.AsyncClient, pause_after_lock: tuple[asyncio.Event, ...]
) -> None:
    """The worst moment for a backup: its hold lands while a pass is deciding. The hold
    waits for that pass to commit (the pass read the hold row FOR SHARE, or holds
    SQLite's writer lock), so once the hold is taken no pass deletes what a database
    dump taken after it references."""
    locked, release = pause_after_lock
    _, collecting = await pass_paused_on(app, client, "team/app", b"decided", locked)
    holding = asyncio.create_task(registry_of(app).gc.hold(now() + timedelta(hours=1), "t"))
    await asyncio.sleep(0.3)
    assert not holding.done()
    release.set()
    assert (await collecting).blobs_deleted == 1  # decided before the hold: it may go
    assert await holding is not None
    later = await push_blob(client, "team/app", b"queued after the hold")
    await after(2)
    assert (await registry_of(app).gc.collect()).blobs_deleted == 0
    assert await stored(app, later)


async def test_a_pass_that_died_midway_is_finished_by_the_next(app: Starlette) -> None:
    """Tombstones left by a pass that died after removing rows: the next pass deletes the
    bytes, and a pass resuming late finds none of its own, so never deletes bytes stored
    again since."""
    registry = registry_of(app)
    data = b"left by a dead pass"
    digest = Digest.of(data)
    await registry.store.put_bytes(digest, data)
    async with registry.db.write() as conn:
        await conn.execute(
            insert(BlobTombstone).values(
                digest=str(digest),
                size=len(data),
                token="dead-pass",
                created_at=now() - timedelta(minutes=5),
            )
        )
    done = await registry.gc.collect()
    assert done.blobs_deleted == 1 and not await registry.store.stat(digest)
    async with registry.db.read() as conn:
        assert not await gc_queries.tombstoned(conn, str(digest))
    # Stored again; the dead pass wakes and finishes "its" batch: nothing of it is left.
    await registry.store.put_bytes(digest, data)
    assert await registry.gc._delete_bytes(token="dead-pass") == []
    assert await registry.store.stat(digest) == len(data)


async def test_an_upload_gives_up_on_a_tombstone_that_stays(
    app: Starlette, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "WAIT_SECONDS", 0.3)
    data = b"stuck"
    async with registry_of(app).db.write() as conn:
        await conn.execute(
            insert(BlobTombstone).values(
                digest=sha256(data), size=len(data), token="t", created_at=now()
            )
        )
    r = await client.post(
        "/v2/team/app/blobs/uploads/", params={"digest": sha256(data)}, content=data
    )
    assert r.status_code == 503
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert "garbage collection" in r.json()["errors"][0]["message"]
    assert r.headers["Retry-After"] == "10"


async def test_keep_takes_a_lease_it_saw_as_good_for_a_while(
    app: Starlette, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leases.keep() asks once while a lease it saw lasts: a tag pushed 5,000 times read
    its manifest's lease each time. After KEPT_SECONDS it asks again, and renews a lease
    cut short meanwhile (as a replica with a shorter lease would leave it)."""
    digest = await push_blob(client, "team/app", b"kept")
    kept = leases.Leases(registry_of(app).db, 3600)
    asked: list[str] = []
    lease = leases.blobs.lease

    async def counted(*args: Any) -> Any:
        asked.append(args[1])
        return await lease(*args)

    monkeypatch.setattr(leases.blobs, "lease", counted)
    monkeypatch.setattr(leases, "KEPT_SECONDS", 0.2)
    for _ in range(3):
        await kept.keep(Digest.parse(digest))  # renewed to an hour (LEASE is 0.5 s), once
    assert asked == [digest]
    async with registry_of(app).db.write() as conn:
        await conn.execute(
            Blob.__table__.update()
            .where(Blob.digest == digest)
            .values(leased_until=now() - timedelta(seconds=1))
        )
    await kept.keep(Digest.parse(digest))
    assert asked == [digest]  # within KEPT_SECONDS: not seen
    await asyncio.sleep(0.3)
    await kept.keep(Digest.parse(digest))
    assert asked == [digest, digest]  # asked again, and renewed
    leased_until, _ = await row(app, digest) or (None, None)
    assert leased_until is not None and leased_until > now() + timedelta(seconds=3000)


# The worker, uploads, accounting


async def test_abandoned_uploads_are_ended_by_the_pass(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(gc_upload_ttl_hours="0.0002"))  # 0.72 s
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as client:
            r = await client.post("/v2/team/app/blobs/uploads/")
            location = r.headers["Location"]
            assert (await client.patch(location, content=b"partial")).status_code == 202
            await asyncio.sleep(1)
            done = await registry_of(app).gc.collect()
            assert done.uploads_ended == 1
            assert (await client.get(location)).status_code == 404
    finally:
        await registry_of(app).close()


async def test_the_worker_collects_in_the_background_and_records_its_runs(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(gc_blob_lease_seconds="1", gc_interval_seconds="0.2"))
    registry = registry_of(app)
    transport = httpx.ASGITransport(app=app)

    async def runs() -> list[tuple[int, str]]:
        async with registry.db.read() as conn:
            rows = await conn.execute(select(GcRun.blobs_deleted, GcRun.worker))
            return [(int(n), str(w)) for n, w in rows]

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://r.test") as client,
    ):
        digest = await push_blob(client, "team/app", b"collected by the worker")
        for _ in range(50):
            await asyncio.sleep(0.2)
            if (1, worker_name()) in await runs():
                break
        else:
            pytest.fail("the worker did not collect the blob")
        # (A GET: a HEAD would renew the lease.)
        assert (await client.get(f"/v2/team/app/blobs/{digest}")).status_code == 404
    async with registry.db.read() as conn:
        totals = await counters(conn, "gc_")
    assert totals["gc_blobs_deleted"] == 1
    assert totals["gc_runs"] >= 2
    assert totals["gc_bytes_freed"] == len(b"collected by the worker")


async def test_the_gc_api_and_metrics_show_the_queue_runs_and_totals(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    data = b"reclaimable"
    await push_blob(client, "team/app", data)
    await after(2)
    status = (await client.get("/api/v1/gc")).json()
    assert status["settings"]["blob_lease_seconds"] == LEASE
    assert status["queue"] == {
        "blobs": 1,
        "due": 1,
        "reclaimable_bytes": len(data),
        "tombstones": 0,
    }
    await registry_of(app).gc.collect()
    status = (await client.get("/api/v1/gc")).json()
    assert status["queue"]["blobs"] == 0 and status["queue"]["reclaimable_bytes"] == 0
    assert status["totals"]["gc_blobs_deleted"] == 1
    assert status["totals"]["gc_bytes_freed"] == len(data)
    run = status["runs"][0]
    assert (run["blobs_deleted"], run["bytes_freed"], run["worker"]) == (1, len(data), "cli")
    assert datetime.fromisoformat(run["started_at"]) <= now()
    text = (await client.get("/metrics")).text
    metrics = scraped(text)
    assert metrics["registry_gc_blobs_deleted_total"] == 1
    assert metrics["registry_gc_bytes_freed_total"] == len(data)
    assert metrics["registry_gc_queue_blobs"] == 0
    assert "# TYPE registry_gc_runs_total counter" in text
