"""What deleting frees, and when: a deleted tag leaves its image as an untagged manifest,
listed by the API and the console and deleted there; GET /api/v1/gc says what waits for
a pass, a lease or a deletion; a repository's size is what its manifests reference, and
a repository whose last manifest is gone leaves the lists."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.metadata.models import now
from tests.api.conftest import PASSWORD
from tests.api.console import csrf_of, log_in
from tests.api.test_referrers import EMPTY_CONFIG, push_artifact
from tests.helpers import assert_error, basic, index_of, push_image, put_manifest

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]

# A renewal lasts 2 * LEASE: the steps from v1's push to the look at its lease must fit
# in that on a loaded CI machine (1 s did not, once, on PostgreSQL).
LEASE = 2.0


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Starlette]:
    application = create_app(make_settings(gc_blob_lease_seconds=str(LEASE)))
    yield application
    await application.state.registry.close()


async def untagged(client: httpx.AsyncClient, repo: str = "team/app") -> list[dict[str, Any]]:
    r = await client.get(f"/api/v1/repositories/{repo}/-/untagged")
    assert r.status_code == 200, r.text
    return list(r.json()["manifests"])


async def waiting(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/v1/gc")
    assert r.status_code == 200, r.text
    return dict(r.json()["waiting"])


async def repositories(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    listed = (await client.get("/api/v1/repositories")).json()["repositories"]
    return {repo["name"]: repo for repo in listed}


def config_of(tag: str) -> bytes:
    return json.dumps({"ref": tag}).encode()  # as push_image makes it


async def test_a_deleted_tag_leaves_an_untagged_manifest_until_it_is_deleted(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    layer = b"only v1 uses this" * 100
    v1, v1_body = await push_image(client, "team/app", "v1", layers=[layer])
    await push_image(client, "team/app", "v2", layers=[b"v2 layer"])
    signature, signature_body = await push_artifact(client, v1_body, "application/x.sig", b"sig")
    # An index's platform images are untagged too, but go with their index: not listed.
    _, amd = await push_image(client, "team/app", "amd64-build", layers=[b"amd"])
    await put_manifest(
        client, "team/app", "multi", index_of([(OCI_MANIFEST, amd, None)]), OCI_INDEX
    )
    assert (await client.delete("/v2/team/app/manifests/amd64-build")).status_code == 202
    assert await untagged(client) == []
    size = (await repositories(client))["team/app"]["bytes"]

    assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
    [left] = await untagged(client)
    assert left["digest"] == v1 and left["referrers"] == 1  # the signature goes with it
    assert left["bytes"] == len(layer) + len(config_of("v1"))
    assert left["media_type"] == OCI_MANIFEST
    pushed = datetime.fromisoformat(left["pushed_at"]).replace(microsecond=0)
    assert datetime.fromisoformat(left["untagged_at"]) >= pushed  # triggers keep seconds
    # Deleting the tag freed nothing: the repository's size and what is due are as before.
    assert (await repositories(client))["team/app"]["bytes"] == size
    held = (await waiting(client))["untagged"]
    image = len(v1_body) + len(layer) + len(config_of("v1"))
    artifact = len(signature_body) + len(b"sig") + len(EMPTY_CONFIG)
    assert held["manifests"] == 2  # v1 and its signature
    assert held["bytes"] == image + artifact
    assert held["first_due"] is None  # gc.untagged_hours is 0: kept until deleted

    # Deleted: it leaves the list, its signature shows (its subject is gone), and the
    # repository's size drops by what only it referenced.
    assert (await client.delete(f"/api/v1/repositories/team/app/-/manifests/{v1}")).status_code
    assert [m["digest"] for m in await untagged(client)] == [signature]
    assert (await repositories(client))["team/app"]["bytes"] <= size - image
    # Its blobs are unreferenced now: leased by the push a moment ago, then due.
    leased = (await waiting(client))["leased"]
    assert leased["bytes"] >= image and leased["blobs"] >= 3
    assert datetime.fromisoformat(leased["until"]) <= now() + timedelta(seconds=2 * LEASE + 1)
    await asyncio.sleep(2 * LEASE + 0.2)
    state = await waiting(client)
    assert state["leased"]["blobs"] == 0 and state["due"]["bytes"] >= image
    done = await app.state.registry.gc.collect()
    assert done.bytes_freed >= image
    assert (await waiting(client))["due"] == {"blobs": 0, "bytes": 0}


async def test_untagged_manifests_are_paged_newest_first(client: httpx.AsyncClient) -> None:
    pushed = []
    for i in range(3):
        digest, _ = await push_image(client, "team/app", f"t{i}", layers=[f"l{i}".encode()])
        pushed.append(digest)
        assert (await client.delete(f"/v2/team/app/manifests/t{i}")).status_code == 202
        await asyncio.sleep(0.01)  # pushed at distinct moments
    r = await client.get("/api/v1/repositories/team/app/-/untagged", params={"n": 2})
    first = [m["digest"] for m in r.json()["manifests"]]
    assert first == [pushed[2], pushed[1]]
    assert f"last={pushed[1]}" in r.headers["link"].replace("%3A", ":")
    r = await client.get(
        "/api/v1/repositories/team/app/-/untagged", params={"n": 2, "last": pushed[1]}
    )
    assert [m["digest"] for m in r.json()["manifests"]] == [pushed[0]]
    assert "link" not in r.headers
    r = await client.get("/api/v1/repositories/team/none/-/untagged")
    assert_error(r, 404, "NAME_UNKNOWN")


async def test_a_repository_whose_last_manifest_is_gone_leaves_the_list(
    client: httpx.AsyncClient,
) -> None:
    digest, _ = await push_image(client, "team/app", "v1")
    await push_image(client, "team/other", "v1")
    assert set(await repositories(client)) == {"team/app", "team/other"}
    assert (await client.delete(f"/v2/team/app/manifests/{digest}")).status_code == 202
    assert set(await repositories(client)) == {"team/other"}
    # Its page still answers, as empty, with its delete.
    r = await client.get("/api/v1/repositories/team/app/-/tags")
    assert r.status_code == 200 and r.json()["tags"] == []
    assert await untagged(client) == []


async def test_untagged_hours_say_when_the_first_goes(
    make_settings: Callable[..., Settings],
) -> None:
    application = create_app(make_settings(gc_untagged_hours="2"))
    transport = httpx.ASGITransport(app=application)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            await push_image(client, "team/app", "v1")
            assert (await client.delete("/v2/team/app/manifests/v1")).status_code == 202
            held = (await waiting(client))["untagged"]
            due = datetime.fromisoformat(held["first_due"])
            assert timedelta(hours=2) - timedelta(minutes=1) < due - now() <= timedelta(hours=2)
            lines = application.state.registry.gc.explain(await waiting(client))
            assert any("deleted 2 hours after it lost its last tag" in line for line in lines)
    finally:
        await application.state.registry.close()


# The console


async def as_root(browser: httpx.AsyncClient, call: Any) -> Any:
    """A /v2/ call with root's credentials; the console's own calls go with its cookie."""
    browser.headers.update(basic("root", PASSWORD))
    try:
        return await call
    finally:
        del browser.headers["authorization"]


async def test_the_console_deletes_a_tag_with_its_image_when_no_other_tag_has_it(
    web: httpx.AsyncClient,
) -> None:
    await log_in(web, "root")
    v2, v2_body = await as_root(web, push_image(web, "team/app", "v2", layers=[b"v2"]))
    await as_root(web, put_manifest(web, "team/app", "also-v2", v2_body, OCI_MANIFEST))
    # v1 has no other tag: the confirmation offers its image, ticked.
    form = await web.get("/ui/r/team/app/-/tags/v1/delete")
    v1 = (await as_root(web, web.head("/v2/team/app/manifests/v1"))).headers[
        "Docker-Content-Digest"
    ]
    assert f'name="image" value="{v1}" checked' in form.text
    assert "no other tag points to it" in form.text
    # v2 has another: the image stays, and the page says under which tag.
    other = await web.get("/ui/r/team/app/-/tags/v2/delete")
    assert 'name="image"' not in other.text and "stays under the tags also-v2" in other.text

    r = await web.post(
        "/ui/r/team/app/-/tags/v1/delete", data={"csrf": csrf_of(form.text), "image": v1}
    )
    assert r.status_code == 303
    assert (await as_root(web, web.head(f"/v2/team/app/manifests/{v1}"))).status_code == 404
    page = (await web.get("/ui/r/team/app/-/tags")).text
    assert "Untagged manifests" not in page

    # Without the tick, the image stays, listed as untagged, and is deleted from there.
    form = await web.get("/ui/r/team/app/-/tags/v2/delete")
    await web.post("/ui/r/team/app/-/tags/v2/delete", data={"csrf": csrf_of(form.text)})
    await web.post("/ui/r/team/app/-/tags/also-v2/delete", data={"csrf": csrf_of(form.text)})
    page = (await web.get("/ui/r/team/app/-/tags")).text
    assert "Untagged manifests" in page and f"/ui/r/team/app/-/manifests/{v2}/delete" in page
    confirm = await web.get(f"/ui/r/team/app/-/manifests/{v2}/delete")
    assert confirm.status_code == 200 and "Its referrers" in confirm.text
    r = await web.post(
        f"/ui/r/team/app/-/manifests/{v2}/delete", data={"csrf": csrf_of(confirm.text)}
    )
    assert r.status_code == 303
    page = (await web.get("/ui/r/team/app/-/tags")).text
    assert "This repository is empty" in page and "Delete the repository" in page
    assert "team/app" not in (await web.get("/ui/")).text.replace("/ui/r/team/app", "")


async def test_an_image_tagged_again_since_the_page_was_shown_stays(
    web: httpx.AsyncClient,
) -> None:
    await log_in(web, "root")
    v1, body = await as_root(web, push_image(web, "team/app", "v1", layers=[b"v1"]))
    form = await web.get("/ui/r/team/app/-/tags/v1/delete")
    assert f'name="image" value="{v1}"' in form.text
    await as_root(web, put_manifest(web, "team/app", "pinned", body, OCI_MANIFEST))  # meanwhile
    r = await web.post(
        "/ui/r/team/app/-/tags/v1/delete", data={"csrf": csrf_of(form.text), "image": v1}
    )
    assert r.status_code == 409
    assert f"{v1} is tagged again (pinned) since it was shown untagged: it stays" in r.text
    assert (await as_root(web, web.head("/v2/team/app/manifests/v1"))).status_code == 404
    assert (await as_root(web, web.head("/v2/team/app/manifests/pinned"))).status_code == 200
