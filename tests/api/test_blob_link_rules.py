"""The rules of a blob's push, as the rows it leaves show them, on both databases: on
SQLite a program of statements links the blob (metadata/blobs.py, link_pushed), on
PostgreSQL one call of the function migration 0029 installs. Each test runs on both, so
the two cannot drift: the repository made with its namespace's signature policy, the
blob leased and linked, the upload session ended, one push event per push, and a link
the quota refuses leaving no link and no event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from registry.metadata.events import BLOB_TYPE
from registry.metadata.models import Blob, Event, Repository, Upload, utc
from tests.api.stored import linked, rows
from tests.helpers import assert_error, push_blob, sha256

pytestmark = pytest.mark.anyio


async def lease_of(app: Starlette, digest: str) -> datetime | None:
    found = await rows(app, select(Blob.leased_until).where(Blob.digest == digest))
    return utc(found[0][0]) if found else None


async def blob_pushes(app: Starlette) -> list[dict[str, Any]]:
    found = await rows(app, select(Event.body).where(Event.action == "push").order_by(Event.id))
    bodies = [json.loads(body) for (body,) in found]
    return [e["target"] for e in bodies if e["target"].get("mediaType") == BLOB_TYPE]


async def test_a_monolithic_and_a_chunked_push_lease_link_and_record(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    r = await client.patch("/api/v1/namespaces/team/policy", json={"signature_policy": "audit"})
    assert r.status_code == 200, r.text
    before = datetime.now(UTC)
    one = await push_blob(client, "team/app", b"monolithic")
    [(policy,)] = await rows(
        app, select(Repository.signature_policy).where(Repository.name == "team/app")
    )
    assert policy == "audit"  # made with its namespace's policy
    assert await linked(app, "team/app", one)
    lease = await lease_of(app, one)
    assert lease is not None and lease > before + timedelta(minutes=30)

    start = await client.post("/v2/team/app/blobs/uploads/")
    location = start.headers["Location"]
    r = await client.patch(location, content=b"chunk one, ")
    assert r.status_code == 202, r.text
    data = b"chunk one, chunk two"
    r = await client.put(
        r.headers["Location"], params={"digest": sha256(data)}, content=b"chunk two"
    )
    assert r.status_code == 201, r.text
    two = sha256(data)
    assert await linked(app, "team/app", two)
    assert await rows(app, select(Upload.id)) == []  # the session ended with the link
    assert [(t["digest"], t["size"], t["repository"]) for t in await blob_pushes(app)] == [
        (one, len(b"monolithic"), "team/app"),
        (two, len(data), "team/app"),
    ]

    # The same bytes again: the lease is renewed, and the push recorded again.
    first = await lease_of(app, one)
    await push_blob(client, "team/app", b"monolithic")
    renewed = await lease_of(app, one)
    assert first is not None and renewed is not None and renewed >= first
    assert len(await blob_pushes(app)) == 3
    # Into another repository: linked there too, one blob row.
    await push_blob(client, "team/other", b"monolithic")
    assert await linked(app, "team/other", one)
    assert len(await rows(app, select(Blob.digest).where(Blob.digest == one))) == 1


async def test_a_link_the_quota_refuses_leaves_no_link_and_no_event(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    await push_blob(client, "team/app", b"a" * 100)
    r = await client.patch("/api/v1/namespaces/team/policy", json={"quota_bytes": 150})
    assert r.status_code == 200, r.text
    big = b"b" * 100

    start = await client.post("/v2/team/app/blobs/uploads/")
    location = start.headers["Location"]
    r = await client.put(location, params={"digest": sha256(big)}, content=big)
    assert_error(r, 403, "DENIED")
    assert not await linked(app, "team/app", sha256(big))
    assert [t["digest"] for t in await blob_pushes(app)] == [sha256(b"a" * 100)]
    # The session ended with the refusal, on both databases.
    assert_error(await client.patch(location, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    # Its bytes' row stays, leased, for garbage collection to take.
    assert await lease_of(app, sha256(big)) is not None
