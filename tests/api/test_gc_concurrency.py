"""Garbage collection in a tight loop while 50 clients push images that share layers
(skipping, after a HEAD, the layers that are there, as docker does), move tags and delete
manifests: on one replica, and on two sharing the database and the blob store (each with
its own engine and collector, every request on either: on SQLite, two workers of one
host), on SQLite and PostgreSQL, filesystem and S3.

Afterwards: no push failed with MANIFEST_BLOB_UNKNOWN or BLOB_UNKNOWN within the lease;
every acknowledged manifest that was not deleted pulls whole, with the right digests; no
blob row lacks its bytes; and once the leases end, one more pass leaves no garbage and no
bytes without a row.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.digest import Digest
from registry.mediatypes import OCI_MANIFEST
from registry.metadata.models import Blob
from tests.helpers import descriptor, sha256

pytestmark = pytest.mark.anyio

LEASE = 2.0
CLIENTS = 50
ROUNDS = 3
SHARED = [f"shared layer {n}".encode() * 100 for n in range(6)]


@dataclass
class Outcome:
    acknowledged: set[str] = field(default_factory=set)  # manifests PUT with a 201
    deleted: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    late: int = 0  # failures outside the lease: allowed, counted


@pytest.fixture(params=[1, 2], ids=["one-replica", "two-replicas"])
async def replicas(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> AsyncIterator[list[Starlette]]:
    settings = make_settings(gc_blob_lease_seconds=str(LEASE), gc_interval_seconds="0")
    apps = [create_app(settings) for _ in range(request.param)]
    yield apps
    for app in apps:
        await app.state.registry.close()


async def collect_forever(app: Starlette, stop: asyncio.Event) -> int:
    passes = 0
    while not stop.is_set():
        done = await app.state.registry.gc.collect(sweep_uploads=False)
        assert done.error is None, done.error
        passes += 1
        await asyncio.sleep(0.01)
    return passes


async def send(client: httpx.AsyncClient, method: str, url: str, **kw: object) -> httpx.Response:
    """A request, sent again after a 503 as docker and containerd do: the 50 clients on
    one event loop and 10 pooled connections of a loaded machine may wait longer than
    the pool's timeout, which the registry answers with 503 and Retry-After."""
    for _ in range(10):
        r = await client.request(method, url, **kw)  # type: ignore[arg-type]
        if r.status_code != 503:
            break
        await asyncio.sleep(float(r.headers["Retry-After"]))
    return r


async def push_layer(client: httpx.AsyncClient, repo: str, data: bytes) -> float:
    """HEAD, and upload only if missing. Returns when the client asked, before the lease
    began (when the registry committed), so the lease surely lasts until this plus the
    two leases a renewal grants."""
    digest = sha256(data)
    asked = time.monotonic()
    r = await send(client, "HEAD", f"/v2/{repo}/blobs/{digest}")
    if r.status_code == 200:
        return asked
    assert r.status_code == 404, r.text
    r = await send(
        client, "POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data
    )
    assert r.status_code == 201, r.text
    return asked


async def one_client(
    number: int, clients: list[httpx.AsyncClient], outcome: Outcome, seed: int
) -> None:
    rng = random.Random(seed)
    repo = f"team/app{number % 5}"  # ten clients to a repository: tags move under them
    for round_ in range(ROUNDS):
        layers = [*rng.sample(SHARED, 2), f"own layer {number}/{round_}".encode()]
        config = json.dumps({"client": number, "round": round_}).encode()
        acknowledged = [await push_layer(rng.choice(clients), repo, x) for x in [config, *layers]]
        await asyncio.sleep(rng.uniform(0, 0.3))
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
                "layers": [descriptor(x, "application/vnd.oci.image.layer.v1.tar") for x in layers],
            }
        ).encode()
        tag = f"t{rng.randrange(3)}"
        r = await send(
            rng.choice(clients),
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            content=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        answered = time.monotonic()
        if r.status_code == 201:
            outcome.acknowledged.add(f"{repo}@{sha256(body)}")
        else:
            code = r.json()["errors"][0]["code"]
            assert code in ("MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"), r.text
            # The PUT was over (its check too) before the blobs' leases ended: a blob
            # collected under it is a broken promise. (A PUT sent within one lease of the
            # 2xx has the second lease a renewal grants to be processed in; 50 clients on
            # one event loop can make that take seconds, production never.)
            if answered - min(acknowledged) < 2 * LEASE:
                outcome.violations.append(f"{repo}:{tag} {r.text}")
            else:
                outcome.late += 1
        if r.status_code == 201 and rng.random() < 0.3:
            # Delete the manifest just pushed: what only it used becomes garbage at once.
            digest = sha256(body)
            d = await send(rng.choice(clients), "DELETE", f"/v2/{repo}/manifests/{digest}")
            assert d.status_code in (202, 404), d.text
            outcome.deleted.add(f"{repo}@{digest}")


async def pulls_whole(client: httpx.AsyncClient, reference: str) -> None:
    repo, digest = reference.split("@")
    r = await client.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, (reference, r.text)
    doc = r.json()
    for item in [doc["config"], *doc["layers"]]:
        blob = await client.get(f"/v2/{repo}/blobs/{item['digest']}")
        assert blob.status_code == 200, (reference, item, blob.text)
        assert sha256(blob.content) == item["digest"]


async def test_pushes_racing_the_collector_lose_nothing(replicas: list[Starlette]) -> None:
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r.test")
        for app in replicas
    ]
    stop = asyncio.Event()
    collectors = [asyncio.create_task(collect_forever(app, stop)) for app in replicas]
    outcome = Outcome()
    try:
        await asyncio.gather(*(one_client(n, clients, outcome, seed=n) for n in range(CLIENTS)))
    finally:
        stop.set()
        passes = await asyncio.gather(*collectors)
    assert min(passes) >= 3, passes  # the collectors really ran during the pushes
    assert outcome.violations == [], outcome.violations
    assert len(outcome.acknowledged) > CLIENTS

    registry = replicas[0].state.registry
    try:
        for reference in sorted(outcome.acknowledged - outcome.deleted):
            await pulls_whole(clients[0], reference)
        assert await rows_without_bytes(registry) == []

        # Once every lease has ended, one pass leaves no garbage and nothing orphaned.
        await asyncio.sleep(2 * LEASE + 0.5)
        await registry.gc.collect(sweep_uploads=False)
        assert (await registry.gc.find()).blobs == []
        assert await rows_without_bytes(registry) == []
        assert await bytes_without_rows(registry) == set()
        for reference in sorted(outcome.acknowledged - outcome.deleted):
            await pulls_whole(clients[-1], reference)
    finally:
        for client in clients:
            await client.aclose()


async def rows_without_bytes(registry: object) -> list[str]:
    async with registry.db.read() as conn:  # type: ignore[attr-defined]
        digests = list(await conn.scalars(select(Blob.digest)))
    store = registry.store  # type: ignore[attr-defined]
    return [d for d in digests if await store.stat(Digest.parse(d)) is None]


async def bytes_without_rows(registry: object) -> set[str]:
    async with registry.db.read() as conn:  # type: ignore[attr-defined]
        digests = set(await conn.scalars(select(Blob.digest)))
    stored = {str(d) async for d, _ in registry.store.walk()}  # type: ignore[attr-defined]
    return stored - digests
