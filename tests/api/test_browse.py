"""The browse API: /api/v1/repositories, a repository's tags, one manifest, deletes, and
pull counts (batched in memory, flushed by Pulls.flush)."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.mediatypes import OCI_MANIFEST
from tests.api.conftest import PASSWORD
from tests.helpers import (
    assert_error,
    basic,
    bearer,
    get_token,
    index_of,
    push_blob,
    push_image,
    put_manifest,
    sha256,
)

pytestmark = pytest.mark.anyio

CONFIG = json.dumps(
    {
        "created": "2026-11-30T10:00:00Z",
        "os": "linux",
        "architecture": "arm64",
        "variant": "v8",
        "config": {
            "Entrypoint": ["/app"],
            "Cmd": ["--serve"],
            "Env": ["PATH=/bin", "SECRET=hunter2"],
            "Labels": {"org.opencontainers.image.title": "<script>alert(1)</script>"},
        },
        "history": [{"created": "2026-11-30T10:00:00Z", "created_by": "COPY app /app"}],
    }
).encode()


async def test_repositories_with_their_sizes_and_tags(client: httpx.AsyncClient) -> None:
    await push_image(client, "team/app", "v1", layers=[b"a" * 100])
    await push_image(client, "team/app", "v2", layers=[b"a" * 100, b"b" * 50])
    await push_image(client, "other/tool", "latest", layers=[b"c" * 10])
    r = await client.get("/api/v1/repositories")
    assert r.status_code == 200, r.text
    listed = {repo["name"]: repo for repo in r.json()["repositories"]}
    assert list(listed) == ["other/tool", "team/app"]
    app = listed["team/app"]
    assert app["namespace"] == "team" and app["tags"] == 2
    assert app["pulls"] == 0 and app["pulled_at"] is None and app["pushed_at"]
    # Each blob once: two layers, two configs and two manifests.
    [v1, v2] = [(await client.get(f"/v2/team/app/manifests/{t}")).content for t in ("v1", "v2")]
    configs = sum(len(json.dumps({"ref": t}).encode()) for t in ("v1", "v2"))
    assert app["bytes"] == 150 + configs + len(v1) + len(v2)

    r = await client.get("/api/v1/repositories", params={"q": "app"})
    assert [x["name"] for x in r.json()["repositories"]] == ["team/app"]
    r = await client.get("/api/v1/repositories", params={"q": "%"})
    assert r.json()["repositories"] == []  # a LIKE wildcard is matched as text


async def test_repositories_page_keeps_the_search(client: httpx.AsyncClient) -> None:
    for name in ("a/one", "a/two", "a/three", "b/one"):
        await push_image(client, name, "t")
    r = await client.get("/api/v1/repositories", params={"q": "one", "n": 1})
    assert [x["name"] for x in r.json()["repositories"]] == ["a/one"]
    assert r.headers["link"] == '</api/v1/repositories?q=one&n=1&last=a%2Fone>; rel="next"'
    r = await client.get("/api/v1/repositories", params={"q": "one", "n": 1, "last": "a/one"})
    assert [x["name"] for x in r.json()["repositories"]] == ["b/one"]
    assert "link" not in r.headers


async def test_tags_with_sizes_platforms_and_build_times(client: httpx.AsyncClient) -> None:
    digest, _ = await push_image(client, "team/app", "v1", layers=[b"x" * 70], config=CONFIG)
    r = await client.get("/api/v1/repositories/team/app/-/tags")
    assert r.status_code == 200, r.text
    [tag] = r.json()["tags"]
    assert tag["name"] == "v1" and tag["digest"] == digest
    assert tag["media_type"] == OCI_MANIFEST
    assert tag["bytes"] == 70 + len(CONFIG)
    assert tag["created"] == "2026-11-30T10:00:00Z"
    assert tag["platforms"] == [
        {
            "digest": "",
            "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            "bytes": 70 + len(CONFIG),
        }
    ]


async def test_an_index_shows_each_platform(client: httpx.AsyncClient) -> None:
    amd, amd_body = await push_image(client, "team/multi", "amd", layers=[b"1" * 30])
    arm, arm_body = await push_image(client, "team/multi", "arm", layers=[b"2" * 40, b"3" * 5])
    index = index_of(
        [
            (OCI_MANIFEST, amd_body, {"os": "linux", "architecture": "amd64"}),
            (OCI_MANIFEST, arm_body, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ]
    )
    await put_manifest(
        client, "team/multi", "latest", index, "application/vnd.oci.image.index.v1+json"
    )
    r = await client.get("/api/v1/repositories/team/multi/-/tags")
    tags = {t["name"]: t for t in r.json()["tags"]}
    latest = tags["latest"]
    sizes = [p["bytes"] for p in latest["platforms"]]
    assert [p["digest"] for p in latest["platforms"]] == [amd, arm]
    assert [p["platform"]["architecture"] for p in latest["platforms"]] == ["amd64", "arm64"]
    config_amd, config_arm = (len(json.dumps({"ref": t}).encode()) for t in ("amd", "arm"))
    assert sizes == [30 + config_amd, 45 + config_arm]
    assert latest["bytes"] == sum(sizes)

    r = await client.get(f"/api/v1/repositories/team/multi/-/manifests/{sha256(index)}")
    detail = r.json()
    assert [p["digest"] for p in detail["platforms"]] == [amd, arm]
    assert detail["layers"] == [] and detail["config"] is None


async def test_tags_sorted_by_push_time_page_by_page(client: httpx.AsyncClient) -> None:
    for tag in ("c", "a", "d", "b"):
        await push_image(client, "team/app", tag)
    r = await client.get("/api/v1/repositories/team/app/-/tags", params={"sort": "pushed", "n": 3})
    assert [t["name"] for t in r.json()["tags"]] == ["b", "d", "a"]
    assert r.headers["link"] == (
        '</api/v1/repositories/team/app/-/tags?sort=pushed&n=3&last=a>; rel="next"'
    )
    r = await client.get(
        "/api/v1/repositories/team/app/-/tags", params={"sort": "pushed", "n": 3, "last": "a"}
    )
    assert [t["name"] for t in r.json()["tags"]] == ["c"]
    r = await client.get("/api/v1/repositories/team/app/-/tags", params={"n": 2, "last": "a"})
    assert [t["name"] for t in r.json()["tags"]] == ["b", "c"]
    r = await client.get("/api/v1/repositories/team/app/-/tags", params={"sort": "size"})
    assert_error(r, 400, "INVALID")


async def test_one_manifest_in_full(client: httpx.AsyncClient) -> None:
    digest, body = await push_image(client, "team/app", "v1", layers=[b"x" * 70], config=CONFIG)
    signature = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": await push_blob(client, "team/app", b"{}"),
                "size": 2,
            },
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)},
        }
    ).encode()
    await put_manifest(client, "team/app", sha256(signature), signature, OCI_MANIFEST)
    for reference in ("v1", digest):
        r = await client.get(f"/api/v1/repositories/team/app/-/manifests/{reference}")
        assert r.status_code == 200, r.text
        detail = r.json()
        assert detail["digest"] == digest and detail["bytes"] == len(body)
        assert detail["document"] == json.loads(body)
    assert detail["layers"] == [
        {
            "digest": sha256(b"x" * 70),
            "media_type": "application/vnd.oci.image.layer.v1.tar",
            "size": 70,
        }
    ]
    config = detail["config"]
    assert config["entrypoint"] == ["/app"] and config["cmd"] == ["--serve"]
    assert config["env"] == ["PATH", "SECRET"]  # names only
    assert "hunter2" not in r.text
    assert config["labels"] == {"org.opencontainers.image.title": "<script>alert(1)</script>"}
    assert config["history"] == [
        {"created": "2026-11-30T10:00:00Z", "created_by": "COPY app /app", "empty_layer": False}
    ]
    assert detail["referrers"] == [
        {
            "digest": sha256(signature),
            "media_type": OCI_MANIFEST,
            "artifact_type": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "bytes": len(signature),
        }
    ]


async def test_unknown_repository_tag_and_manifest(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/repositories/team/none/-/tags")
    assert_error(r, 404, "NAME_UNKNOWN")
    await push_image(client, "team/app", "v1")
    r = await client.get("/api/v1/repositories/team/app/-/manifests/nope")
    assert_error(r, 404, "MANIFEST_UNKNOWN")
    r = await client.get("/api/v1/repositories/team/app/-/manifests/sha256:bad")
    assert_error(r, 400, "DIGEST_INVALID")
    r = await client.get("/api/v1/repositories/Team/App/-/tags")
    assert_error(r, 400, "NAME_INVALID")


async def test_delete_a_tag_then_a_manifest(client: httpx.AsyncClient) -> None:
    digest, _ = await push_image(client, "team/app", "v1")
    r = await client.get("/v2/team/app/manifests/v1")
    await put_manifest(client, "team/app", "v2", r.content, OCI_MANIFEST)
    r = await client.delete("/api/v1/repositories/team/app/-/tags/v1")
    assert r.status_code == 204, r.text
    assert (await client.get("/v2/team/app/manifests/v1")).status_code == 404
    assert (await client.get("/v2/team/app/manifests/v2")).status_code == 200
    assert_error(
        await client.delete("/api/v1/repositories/team/app/-/tags/v1"), 404, "MANIFEST_UNKNOWN"
    )
    r = await client.delete(f"/api/v1/repositories/team/app/-/manifests/{digest}")
    assert r.status_code == 204, r.text
    assert (await client.get(f"/v2/team/app/manifests/{digest}")).status_code == 404
    r = await client.delete("/api/v1/repositories/team/app/-/manifests/v2")
    assert_error(r, 400, "DIGEST_INVALID")


async def test_pulls_are_counted_in_batches(app: Starlette, client: httpx.AsyncClient) -> None:
    digest, _ = await push_image(client, "team/app", "v1")
    for _ in range(3):
        assert (await client.get("/v2/team/app/manifests/v1")).status_code == 200
    assert (await client.head("/v2/team/app/manifests/v1")).status_code == 200  # not a pull
    pulls = app.state.registry.pulls
    # Nothing written yet: a GET only counts in memory.
    listed = (await client.get("/api/v1/repositories")).json()["repositories"]
    assert listed[0]["pulls"] == 0
    assert await pulls.flush() == 3
    assert await pulls.flush() == 0
    [repo] = (await client.get("/api/v1/repositories")).json()["repositories"]
    assert repo["pulls"] == 3 and repo["pulled_at"]
    [tag] = (await client.get("/api/v1/repositories/team/app/-/tags")).json()["tags"]
    assert tag["pulled_at"] == repo["pulled_at"]
    # Counts of a manifest deleted before the flush are dropped with it; the
    # repository's stay (another image keeps it listed).
    await push_image(client, "team/app", "v2")
    await client.get(f"/v2/team/app/manifests/{digest}")
    assert (await client.delete(f"/v2/team/app/manifests/{digest}")).status_code == 202
    assert await pulls.flush() == 1
    [repo] = (await client.get("/api/v1/repositories")).json()["repositories"]
    assert repo["pulls"] == 4


@pytest.fixture
async def team(auth_app: Starlette, accounts: Accounts) -> httpx.AsyncClient:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_user("alice", PASSWORD)
    await accounts.add_user("eve", PASSWORD)
    await accounts.add_namespace("team", public=False, owner="alice")
    await accounts.set_member("team", "eve", "guest")
    await accounts.add_namespace("open", public=True)
    transport = httpx.ASGITransport(app=auth_app)
    client = httpx.AsyncClient(transport=transport, base_url="http://registry.test")
    root = basic("root", PASSWORD)
    for name in ("team/app", "open/tool", "alice/own"):
        client.headers.update(root)
        await push_image(client, name, "v1")
    client.headers.pop("authorization")
    return client


async def test_a_user_sees_only_what_they_may_pull(team: httpx.AsyncClient) -> None:
    async def names(who: str | None) -> list[str]:
        # Anonymous: with the token /token gives anyone, as docker gets one.
        headers = basic(who, PASSWORD) if who else bearer(await get_token(team))
        r = await team.get("/api/v1/repositories", headers=headers)
        assert r.status_code == 200, r.text
        return [x["name"] for x in r.json()["repositories"]]

    assert await names("root") == ["alice/own", "open/tool", "team/app"]
    assert await names("alice") == ["alice/own", "open/tool", "team/app"]
    assert await names("eve") == ["open/tool", "team/app"]
    assert await names(None) == ["open/tool"]
    assert (await team.get("/api/v1/repositories")).status_code == 401
    # Private repositories answer as /v2/ does: no way to tell whether they exist.
    eve, anon = basic("eve", PASSWORD), {}
    r = await team.get("/api/v1/repositories/alice/own/-/tags", headers=eve)
    assert_error(r, 403, "DENIED")
    r = await team.get("/api/v1/repositories/alice/none/-/tags", headers=eve)
    assert_error(r, 403, "DENIED")
    assert (await team.get("/api/v1/repositories/team/app/-/tags", headers=anon)).status_code == 401
    # A guest pulls but does not delete.
    assert (await team.get("/api/v1/repositories/team/app/-/tags", headers=eve)).status_code == 200
    r = await team.delete("/api/v1/repositories/team/app/-/tags/v1", headers=eve)
    assert_error(r, 403, "DENIED")
    r = await team.delete(
        "/api/v1/repositories/team/app/-/tags/v1", headers=basic("alice", PASSWORD)
    )
    assert r.status_code == 204


async def test_repositories_by_push_and_by_pulls(app: Starlette, client: httpx.AsyncClient) -> None:
    for name in ("a/old", "b/mid", "c/new"):
        await push_image(client, name, "v1")
    await push_blob(client, "d/blobs-only", b"nothing pushed as an image")
    for name, times in (("b/mid", 3), ("a/old", 1)):
        for _ in range(times):
            await client.get(f"/v2/{name}/manifests/v1")
    await app.state.registry.pulls.flush()

    async def page(**params: str | int) -> tuple[list[str], str | None]:
        r = await client.get("/api/v1/repositories", params=params)
        assert r.status_code == 200, r.text
        return [x["name"] for x in r.json()["repositories"]], r.headers.get("link")

    # A repository with blobs only (a push under way, or an image deleted) is not listed.
    assert (await page(sort="pushed"))[0] == ["c/new", "b/mid", "a/old"]
    first, link = await page(sort="pushed", n=2)
    assert first == ["c/new", "b/mid"] and link and "sort=pushed" in link
    assert (await page(sort="pushed", n=2, last="b/mid"))[0] == ["a/old"]
    assert (await page(sort="pulls"))[0] == ["b/mid", "a/old", "c/new"]
    assert (await page(sort="pulls", n=2, last="a/old"))[0] == ["c/new"]
    assert (await page(sort="pulls", last="gone/away"))[0] == []
    r = await client.get("/api/v1/repositories", params={"sort": "size"})
    assert_error(r, 400, "INVALID")
    html = (await client.get("/ui/", params={"sort": "pulls"})).text
    assert html.index("b/mid") < html.index("a/old") < html.index("c/new")
