"""A namespace's settings page in the console: immutable tags, retention with its
preview, the quota and visibility, each saved through the same services as the API (and
audited there), a mistake shown beside its form with what was typed, and the parts only
an admin may change refused to an owner and the page to a developer. The same page in a
browser, with axe-core: tests/e2e/test_console_browser.py."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from tests.api.conftest import PASSWORD
from tests.api.console import csrf_of, log_in
from tests.helpers import basic, push_image

pytestmark = pytest.mark.anyio

SETTINGS = "/ui/namespaces/team/settings"


async def post(web: httpx.AsyncClient, part: str, **form: str) -> httpx.Response:
    page = await web.get(SETTINGS)
    assert page.status_code == 200, page.text
    return await web.post(f"{SETTINGS}/{part}", data={"csrf": csrf_of(page.text), **form})


async def audited(auth_app: Starlette, action: str) -> list[dict[str, object]]:
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as api:
        api.headers.update(basic("root", PASSWORD))
        r = await api.get("/api/v1/audit", params={"namespace": "team", "action": action})
        assert r.status_code == 200, r.text
        return list(r.json()["events"])


async def test_an_owner_sets_immutable_tags_and_retention_after_a_preview(
    web: httpx.AsyncClient, auth_app: Starlette
) -> None:
    client = httpx.AsyncClient(transport=web._transport, base_url="http://registry.test")
    client.headers.update(basic("root", PASSWORD))
    for tag in ("v2", "v3", "dev-1", "dev-2"):
        await push_image(client, "team/app", tag, layers=[tag.encode()])
        await asyncio.sleep(0.01)  # pushed in this order
    await client.aclose()
    await log_in(web, "alice")

    r = await post(web, "immutable", patterns="v*\n\n  release-*  \n")
    assert r.status_code == 303 and r.headers["location"].endswith("?saved=immutable#immutable")
    page = await web.get(r.headers["location"])
    assert "Immutable tags saved." in page.text
    assert re.search(r">v\*\nrelease-\*</textarea>", page.text), page.text

    # A preview saves nothing and lists what would go: the dev tags, not v* (immutable).
    rules = {"enabled": "on", "keep_last": "1", "keep_tags": "", "older_than_days": ""}
    r = await post(web, "retention", do="preview", **rules)
    assert r.status_code == 200
    preview = r.text[r.text.index('id="retention-preview"') :]
    assert "team/app" in preview and "dev-1" in preview and "v3" not in preview
    assert "dev-2" not in preview  # the last pushed
    assert (await web.get(SETTINGS)).text.count("checked") == 0  # nothing saved yet
    r = await post(web, "retention", do="save", **rules)
    assert r.status_code == 303
    page = (await web.get(SETTINGS)).text
    assert 'name="keep_last" inputmode="numeric" value="1"' in page
    assert [e["detail"] for e in await audited(auth_app, "policy.update")] == [
        {"retention": {"keep_last": 1, "keep_tags": [], "older_than_days": None}},
        {"immutable_tags": ["v*", "release-*"]},
    ]


async def test_a_mistake_is_shown_beside_its_form_with_what_was_typed(
    web: httpx.AsyncClient,
) -> None:
    await log_in(web, "alice")
    r = await post(web, "retention", do="save", enabled="on", keep_last="three", keep_tags="x")
    assert r.status_code == 400
    assert "Keep the last: &#39;three&#39; is not a whole number" in r.text
    assert 'value="three"' in r.text and ">x</textarea>" in r.text
    r = await post(web, "retention", do="save", enabled="on", keep_last="", keep_tags="")
    assert r.status_code == 400 and "needs keep_last or older_than_days" in r.text
    r = await post(web, "immutable", patterns="ok\n" + "x" * 200)
    assert r.status_code == 400 and "a pattern is 1 to 128 printable characters" in r.text


async def test_an_owner_cannot_lift_a_rule_set_a_quota_or_change_visibility(
    web: httpx.AsyncClient, auth_app: Starlette
) -> None:
    await log_in(web, "alice")
    assert (await post(web, "immutable", patterns="v*")).status_code == 303
    r = await post(web, "immutable", patterns="")
    assert r.status_code == 403 and "only an admin may lift immutable-tag rules (v*)" in r.text
    r = await post(web, "quota", quota="1", unit="GiB")
    assert r.status_code == 403 and "only an admin may set" in r.text
    r = await post(web, "visibility", public="on")
    assert r.status_code == 403
    page = (await web.get(SETTINGS)).text
    assert "An admin sets it." in page and "An admin changes it." in page
    assert 'name="quota"' not in page and 'name="public"' not in page


async def test_an_admin_sets_the_quota_and_visibility(
    web: httpx.AsyncClient, auth_app: Starlette, accounts: Accounts
) -> None:
    await log_in(web, "root")
    r = await post(web, "quota", quota="1.5", unit="GiB")
    assert r.status_code == 303
    page = (await web.get(SETTINGS)).text
    assert 'max="1610612736"' in page and "of 1.5 GiB" in page
    r = await post(web, "quota", quota="", unit="GiB")
    assert r.status_code == 303 and "no quota" in (await web.get(SETTINGS)).text
    r = await post(web, "quota", quota="1", unit="PiB")
    assert r.status_code == 400 and "the unit is one of MiB, GiB, TiB" in r.text
    assert (await post(web, "visibility", public="on")).status_code == 303
    assert "public: anyone may pull" in (await web.get(SETTINGS)).text
    assert [e["detail"] for e in await audited(auth_app, "namespace.update")] == [{"public": True}]


async def test_others_never_see_the_settings(web: httpx.AsyncClient, accounts: Accounts) -> None:
    await accounts.set_member("team", "eve", "developer")
    await log_in(web, "eve")
    r = await web.get(SETTINGS)
    assert r.status_code == 403 and "only an owner of &#39;team&#39; or an admin" in r.text
    token = csrf_of(r.text)  # the page's log-out form: a valid token, still refused
    for part in ("retention", "immutable", "quota", "visibility"):
        r = await web.post(f"{SETTINGS}/{part}", data={"csrf": token, "enabled": "on"})
        assert r.status_code == 403, part
    await log_in(web, "alice")
    assert (await post(web, "nope")).status_code == 404
