import httpx
import pytest

from tests.helpers import assert_error, push_image

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
