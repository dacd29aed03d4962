"""Garbage collection from the console's status page: an admin holds deletions for a
backup and releases them (audited), and runs a pass now, which says what it freed; the
hold keeps that pass from deleting. Others cannot."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette

from registry.digest import Digest
from tests.api.conftest import PASSWORD
from tests.api.console import csrf_of, log_in
from tests.helpers import basic, push_image

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]
LEASE = 0.2


AUTH_SETTINGS = {"gc_blob_lease_seconds": str(LEASE)}


async def post(web: httpx.AsyncClient, path: str, **form: str) -> httpx.Response:
    shown = await web.get("/ui/status")
    assert shown.status_code == 200, shown.text
    return await web.post(path, data={"csrf": csrf_of(shown.text), **form})


async def test_an_admin_holds_releases_and_runs_a_pass(web: httpx.AsyncClient) -> None:
    api = httpx.AsyncClient(transport=web._transport, base_url="http://registry.test")
    api.headers.update(basic("root", PASSWORD))
    digest, _ = await push_image(api, "team/gone", "v1", layers=[b"only here" * 100])
    assert (await api.delete(f"/v2/team/gone/manifests/{digest}")).status_code == 202
    await asyncio.sleep(2 * LEASE + 0.1)  # the blobs' leases end
    await log_in(web, "root")

    r = await post(web, "/ui/status/hold", hours="2")
    assert r.status_code == 303 and r.headers["location"] == "/ui/status#collection"
    page = (await web.get("/ui/status")).text
    assert "Deletions are held until" in page and "Release the hold" in page  # (explain)
    r = await post(web, "/ui/status/collect")
    assert "The pass deleted 0 tags, 0 manifests and 0 blobs" in r.text  # held

    r = await post(web, "/ui/status/hold", action="release")
    assert r.status_code == 303
    r = await post(web, "/ui/status/collect")
    assert r.status_code == 200 and 'id="pass-result"' in r.text
    result = r.text.split('id="pass-result"')[1].split("</div>")[0]
    assert "and 2 blobs, freeing" in result, result  # the layer, the manifest (its config: shared)

    r = await post(web, "/ui/status/hold", hours="1000")
    assert "Hold for: a number of hours above 0 and up to 168" in r.text
    audit = await api.get("/api/v1/audit", params={"action": "gc."})
    assert [e["action"] for e in audit.json()["events"]] == ["gc.release", "gc.hold"]
    assert audit.json()["events"][1]["detail"]["holder"] == "console:root"
    await api.aclose()


async def test_others_cannot_hold_or_run(web: httpx.AsyncClient) -> None:
    await log_in(web, "alice")
    page = await web.get("/ui/namespaces/team")
    token = csrf_of(page.text)
    for path in ("/ui/status/hold", "/ui/status/collect", "/ui/status/check"):
        r = await web.post(path, data={"csrf": token, "hours": "1"})
        assert r.status_code == 403 and "only an admin may do this" in r.text


async def test_an_admin_checks_the_storage_from_the_status_page(
    web: httpx.AsyncClient, auth_app: Starlette
) -> None:
    await log_in(web, "root")
    r = await post(web, "/ui/status/check")
    result = r.text.split('id="check-result"')[1].split("</div>")[0]
    assert "stored blobs against" in result and "no problem." in result
    orphan = Digest.of(b"bytes nobody knows")
    await auth_app.state.registry.store.put_bytes(orphan, b"bytes nobody knows")
    r = await post(web, "/ui/status/check")
    result = r.text.split('id="check-result"')[1].split("</div>")[0]
    assert "1 problems" in result and f"bytes-without-row: <code>{orphan}</code>" in result
    assert await auth_app.state.registry.store.stat(orphan) is not None  # no repair here
