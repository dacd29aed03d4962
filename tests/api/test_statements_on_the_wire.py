"""The statements each hot path sends to the database, as the driver sends them, against
a recorded list (statements_on_the_wire/<database>.txt): a change to how statements are
built or run cannot add a round trip, or change one, without this test saying which.
After a change that means to, `REGISTRY_RECORD_STATEMENTS=1 pytest` rewrites the lists;
read their diff before committing it."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest

from registry.app import create_app
from registry.config import Settings
from tests.helpers import descriptor, push_blob, push_image, sha256

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]

RECORDED = Path(__file__).parent / "statements_on_the_wire"
# A literal SQLite's trace expands in place of a parameter, so that runs compare.
_LITERAL = re.compile(r"'(?:[^']|'')*'|\bX'[0-9A-Fa-f]*'|(?<![\w$])-?\d+(?:\.\d+)?\b")


class Wire:
    """Every statement sent on the connections opened while it listens."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.on = False

    def heard(self, statement: str) -> None:
        if self.on:
            self.sent.append(" ".join(_LITERAL.sub("?", statement).split()))

    async def during(self, work: Callable[[], Awaitable[Any]]) -> list[str]:
        await work()  # once to warm caches (asyncpg's type lookups, the tag cache's first fill)
        await anyio.sleep(0.05)  # asyncpg calls its loggers soon after, not in order
        self.sent.clear()
        self.on = True
        try:
            await work()
            await anyio.sleep(0.05)
        finally:
            self.on = False
        return list(self.sent)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    listening = Wire()
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(listening.heard)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)  # aiosqlite's and the loop reads'
    yield listening


async def test_the_hot_paths_send_the_recorded_statements(
    make_settings: Callable[..., Settings],
    database_url: str,
    wire: Wire,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PostgreSQL: every connection of the statements' pool and of SQLAlchemy's (both
    # open theirs with asyncpg.connect, made on first use) is heard.
    connect = asyncpg.connect

    async def heard_from(*args: Any, **kw: Any) -> asyncpg.Connection:
        conn = await connect(*args, **kw)
        conn.add_query_logger(lambda r: wire.heard(r.query))
        return conn

    monkeypatch.setattr(asyncpg, "connect", heard_from)
    app = create_app(make_settings())
    db = app.state.registry.db
    if not db.is_sqlite:
        await db.engine.dispose()
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://registry.test")
    heard: list[str] = []
    try:
        _, body = await push_image(client, "team/app", "v1", layers=[b"base layer"])
        digest = sha256(body)
        layer = sha256(b"base layer")
        counter = iter(range(1000))

        async def get(url: str, status: int = 200, **kw: Any) -> None:
            r = await client.get(url, **kw)
            assert r.status_code == status, r.text

        async def head(url: str) -> None:
            assert (await client.head(url)).status_code == 200

        async def monolithic() -> None:
            await push_blob(client, "team/app", f"blob {next(counter)}".encode())

        async def chunked() -> None:
            data = f"chunked blob {next(counter)}".encode()
            start = await client.post("/v2/team/app/blobs/uploads/")
            assert start.status_code == 202, start.text
            patch = await client.patch(
                start.headers["Location"],
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert patch.status_code == 202, patch.text
            put = await client.put(patch.headers["Location"], params={"digest": sha256(data)})
            assert put.status_code == 201, put.text

        async def manifest_put() -> None:
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptor(b'{"ref": "v1"}', "application/vnd.oci.image.config.v1+json"),
                "layers": [descriptor(b"base layer", "application/vnd.oci.image.layer.v1.tar")],
                "annotations": {"n": str(next(counter))},
            }
            r = await client.put(
                f"/v2/team/app/manifests/t{next(counter)}",
                json=manifest,
                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert r.status_code == 201, r.text

        paths: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("manifest GET by tag", lambda: get("/v2/team/app/manifests/v1")),
            ("manifest GET by digest", lambda: get(f"/v2/team/app/manifests/{digest}")),
            ("manifest HEAD", lambda: head("/v2/team/app/manifests/v1")),
            ("blob HEAD", lambda: head(f"/v2/team/app/blobs/{layer}")),
            ("tags list", lambda: get("/v2/team/app/tags/list", params={"n": 2})),
            ("manifest GET unknown", lambda: get("/v2/team/app/manifests/nope", 404)),
            ("monolithic blob push", monolithic),
            ("chunked blob push", chunked),
            ("manifest push by tag", manifest_put),
        ]
        for name, work in paths:
            heard += [f"## {name}", *await wire.during(work)]
    finally:
        await client.aclose()
        await app.state.registry.close()

    backend = "sqlite" if db.is_sqlite else "postgresql"
    recorded = RECORDED / f"{backend}.txt"
    if os.environ.get("REGISTRY_RECORD_STATEMENTS"):
        recorded.parent.mkdir(exist_ok=True)
        recorded.write_text("\n".join(heard) + "\n")
    assert heard == recorded.read_text().splitlines()
