"""`registry check`: one walk of the storage against the index finds bytes without a row,
rows without bytes and sizes that disagree; `--repair` does the safe repairs. On SQLite
and PostgreSQL, filesystem and S3."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette

from registry.digest import Digest
from tests.helpers import push_blob, push_image, sha256

pytestmark = pytest.mark.anyio


# Leases of 0.2 s (renewals 0.4 s), for tests/api/conftest.py's app.
SETTINGS = {"gc_blob_lease_seconds": "0.2"}


async def test_a_consistent_registry_checks_clean(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await push_image(client, "team/app", "v1", layers=[b"a", b"b"])
    await push_blob(client, "team/app", b"unused upload")
    report = await app.state.registry.check.run()
    assert report.findings == []
    assert report.blobs_stored == report.rows == 5  # manifest, config, 2 layers, 1 upload


async def test_every_kind_of_damage_is_found_and_the_safe_ones_repaired(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    registry = app.state.registry
    store = registry.store
    manifest, body = await push_image(client, "team/app", "v1", layers=[b"lost layer"])
    await push_blob(client, "team/app", b"wrong size")
    orphan = Digest.of(b"bytes nobody knows")
    await store.put_bytes(orphan, b"bytes nobody knows")
    await store.delete([Digest.parse(manifest), Digest.parse(sha256(b"lost layer"))])
    await store.delete([Digest.parse(sha256(b"wrong size"))])
    await store.put_bytes(Digest.parse(sha256(b"wrong size")), b"other")

    report = await registry.check.run()
    found = {(f.kind, f.digest): f for f in report.findings}
    assert set(found) == {
        ("bytes-without-row", str(orphan)),
        ("row-without-bytes", manifest),
        ("row-without-bytes", sha256(b"lost layer")),
        ("size-mismatch", sha256(b"wrong size")),
    }
    assert f"team/app@{manifest}" in found[("row-without-bytes", sha256(b"lost layer"))].detail
    assert "10 bytes, the storage holds 5" in found[("size-mismatch", sha256(b"wrong size"))].detail
    assert not any(f.repaired for f in report.findings)  # a check alone changes nothing
    assert await store.stat(orphan) == len(b"bytes nobody knows")

    repaired = await registry.check.run(repair=True)
    assert {(f.kind, f.digest) for f in repaired.unrepaired} == {
        ("row-without-bytes", sha256(b"lost layer")),
        ("size-mismatch", sha256(b"wrong size")),
    }
    assert await store.read_bytes(Digest.parse(manifest)) == body
    # The orphan has a row now, queued: the collector deletes it after the lease.
    await asyncio.sleep(0.6)
    assert (await registry.gc.collect()).blobs_deleted >= 1
    assert await store.stat(orphan) is None
    # (The mis-sized blob was an unused upload: collected too, bytes and row.)
    after = {(f.kind, f.digest) for f in (await registry.check.run()).findings}
    assert after == {("row-without-bytes", sha256(b"lost layer"))}
