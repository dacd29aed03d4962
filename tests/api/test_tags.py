import asyncio
import os
from pathlib import Path

import httpx
import pytest

from registry.app import create_app
from registry.config import Settings, load_settings
from registry.mediatypes import OCI_MANIFEST
from registry.metadata.migrate import upgrade
from registry.services import listing
from registry.services.tag_cache import TagCache, TagList
from tests.helpers import assert_error, push_image
from tests.peers.postgres import PostgresServer

pytestmark = pytest.mark.anyio

TAGS = ["v1", "V2", "latest", "1.0", "a_b", "Z"]


async def tagged(client: httpx.AsyncClient) -> None:
    _, body = await push_image(client, "team/app", TAGS[0])
    for tag in TAGS[1:]:
        r = await client.put(
            f"/v2/team/app/manifests/{tag}",
            content=body,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert r.status_code == 201


async def test_tags_sorted_lexically(client: httpx.AsyncClient) -> None:
    await tagged(client)
    r = await client.get("/v2/team/app/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": "team/app", "tags": sorted(TAGS)}
    assert "Link" not in r.headers


async def test_tags_pagination(client: httpx.AsyncClient) -> None:
    await tagged(client)
    seen: list[str] = []
    url = "/v2/team/app/tags/list?n=2"
    pages = 0
    while url:
        r = await client.get(url)
        tags = r.json()["tags"]
        assert len(tags) <= 2
        seen += tags
        pages += 1
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else ""
        if link:
            assert link.endswith('; rel="next"')
            assert f"last={tags[-1]}" in link
    assert seen == sorted(TAGS)
    assert pages == 3


async def test_tags_after_last(client: httpx.AsyncClient) -> None:
    await tagged(client)
    r = await client.get("/v2/team/app/tags/list", params={"last": "latest"})
    assert r.json()["tags"] == [t for t in sorted(TAGS) if t > "latest"]
    r = await client.get("/v2/team/app/tags/list", params={"n": "0"})
    assert r.json()["tags"] == []


async def test_tags_of_unknown_repository(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v2/nobody/here/tags/list"), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("n", ["-1", "abc", "1.5"])
async def test_bad_page_size(client: httpx.AsyncClient, n: str) -> None:
    await tagged(client)
    assert_error(
        await client.get("/v2/team/app/tags/list", params={"n": n}),
        400,
        "PAGINATION_NUMBER_INVALID",
    )


async def test_catalog(client: httpx.AsyncClient) -> None:
    names = ["b/app", "a/app", "a/sub/app", "library-x", "c"]
    for name in names:
        await push_image(client, name, "v1")
    r = await client.get("/v2/_catalog")
    assert r.json() == {"repositories": sorted(names)}
    r = await client.get("/v2/_catalog", params={"n": 2})
    assert r.json()["repositories"] == sorted(names)[:2]
    assert (
        r.headers["Link"]
        == f'</v2/_catalog?n=2&last={sorted(names)[1].replace("/", "%2F")}>; rel="next"'
    )
    r = await client.get("/v2/_catalog", params={"n": 10, "last": "a/sub/app"})
    assert r.json()["repositories"] == ["b/app", "c", "library-x"]
    assert "Link" not in r.headers


async def test_a_replica_sees_tags_changed_by_another(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Tag lists are cached per worker; a change made through another app on the same
    database (a replica) is seen on the next request, whatever changed the tags, and a
    tag moved there is what the next manifest GET here serves (issue 36: no read of a
    hot path may serve a tag older than an acknowledged push)."""
    await tagged(client)
    other_app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=other_app), base_url="http://replica.test"
    ) as other:

        async def listed() -> list[str]:
            return (await client.get("/v2/team/app/tags/list")).json()["tags"]

        assert await listed() == sorted(TAGS)  # now cached
        _, body = await push_image(other, "team/app", "added")
        assert await listed() == sorted([*TAGS, "added"])
        assert (await other.delete("/v2/team/app/manifests/v1")).status_code == 202
        assert await listed() == sorted([*TAGS[1:], "added"])
        # Moving a tag to another manifest leaves the list as it was.
        digest, moved = await push_image(other, "team/app", "added", layers=[b"other layer"])
        assert moved != body
        assert await listed() == sorted([*TAGS[1:], "added"])
        # A manifest GET by tag is not cached anywhere: the moved tag is served at once.
        r = await client.get("/v2/team/app/manifests/added", headers={"Accept": OCI_MANIFEST})
        assert r.headers["Docker-Content-Digest"] == digest and r.content == moved
        # Deleting a manifest takes its tags with it.
        first = (await client.get("/v2/team/app/manifests/latest")).headers["docker-content-digest"]
        assert (await other.delete(f"/v2/team/app/manifests/{first}")).status_code == 202
        assert await listed() == ["added"]
    await other_app.state.registry.close()


async def test_repositories_too_large_to_cache_are_paged_from_the_database(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "LARGEST_CACHED", 3)
    await tagged(client)
    expected = sorted(TAGS)
    r = await client.get("/v2/team/app/tags/list", params={"n": "4", "last": expected[0]})
    assert r.json()["tags"] == expected[1:5]
    assert "last=" + expected[4] in r.headers["Link"]
    r = await client.get("/v2/team/app/tags/list")
    assert r.json()["tags"] == expected
    assert "Link" not in r.headers


async def every_page(client: httpx.AsyncClient, path: str, key: str) -> list[str]:
    """The names of every page of two, each asked for after the last name of the one
    before, until a page comes without a Link to the next."""
    names: list[str] = []
    while True:
        r = await client.get(path, params={"n": "2", "last": names[-1] if names else ""})
        names += r.json()[key]
        if "Link" not in r.headers:
            return names


async def test_pages_are_in_byte_order_in_a_database_that_sorts_otherwise(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL database whose collation (ICU en-US) puts "a_b" before "V2", and "_"
    before "-": tag and catalog pages still follow the bytes, as the spec asks, and none
    is skipped."""
    monkeypatch.setattr(listing, "LARGEST_CACHED", 3)
    name = f"registry_icu_{os.getpid()}"
    # (Its helpers run their own event loop: in a thread, beside this test's.)
    await asyncio.to_thread(postgres.drop_database, name)
    await asyncio.to_thread(
        postgres.execute,
        f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
        "LOCALE 'C'",
    )
    url = postgres.url_for(name)
    await asyncio.to_thread(upgrade, url.replace("postgresql://", "postgresql+asyncpg://", 1))
    environ = {
        "REGISTRY_DATA_DIR": str(tmp_path / "data"),
        "REGISTRY_DATABASE_URL": url,
        "REGISTRY_AUTH_ENABLED": "false",
    }
    app = create_app(load_settings(None, environ))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as client:
            await tagged(client)
            # ICU puts "_" before "-"; their bytes the other way round.
            for repository in ("team/a_x", "team/a-x"):
                await push_image(client, repository, "v1")
            assert await every_page(client, "/v2/team/app/tags/list", "tags") == sorted(TAGS)
            catalog = await every_page(client, "/v2/_catalog", "repositories")
            assert catalog == ["team/a-x", "team/a_x", "team/app"]
    finally:
        await app.state.registry.close()
        await asyncio.to_thread(postgres.drop_database, name)


def test_the_tag_cache_evicts_the_least_recently_used_lists() -> None:
    cache = TagCache(capacity=10)
    cache.put(1, TagList(7, ["a", "b", "c", "d"]))
    cache.put(2, TagList(8, ["e", "f", "g"]))
    assert cache.get(1, 7) is not None  # 1 is now the most recently used
    assert cache.get(1, 8) is None  # another version is a miss
    cache.put(3, TagList(9, ["h", "i"]))  # 5 + 4 + 3 > 10: list 2 goes
    assert cache.get(2, 8) is None
    assert cache.get(1, 7) is not None
    assert cache.get(3, 9) is not None
    cache.put(1, TagList(10, None))  # replaced by a marker for a too-large repository
    assert cache.get(1, 7) is None
    assert cache.get(1, 10) == TagList(10, None)
