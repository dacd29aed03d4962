"""The dashboard: pushes and pulls per day, the bytes stored day by day, the busiest
repositories, failed webhook deliveries and uploads in progress, as an admin sees them
(everything) and an owner (their namespaces); drawn as SVG in the page, with the numbers
beside each chart. Those who own nothing go on to the repositories."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from tests.api.conftest import FAST_WEBHOOKS, PASSWORD
from tests.api.console import log_in
from tests.api.test_webhooks import deliver_all
from tests.helpers import basic, push_image

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]


AUTH_SETTINGS = FAST_WEBHOOKS


def summary(html: str, title: str) -> str:
    found = re.search(rf'aria-label="({title}, [^"]+)"', html)
    assert found, html
    return found[1]


async def test_an_admin_sees_every_namespace_and_an_owner_theirs(
    web: httpx.AsyncClient, auth_app: Starlette, accounts: Accounts
) -> None:
    registry = auth_app.state.registry
    api = httpx.AsyncClient(transport=web._transport, base_url="http://registry.test")
    api.headers.update(basic("root", PASSWORD))
    await push_image(api, "team/app", "v2")  # team/app:v1 and alice/own:v1 are there too
    for _ in range(3):
        assert (await api.get("/v2/team/app/manifests/v2")).status_code == 200
    assert (await api.get("/v2/alice/own/manifests/v1")).status_code == 200
    await registry.pulls.flush()
    await registry.gc.collect()  # the day's stored bytes
    await registry.webhooks.add(
        namespace=None,
        url="http://127.0.0.1:9/",  # nothing answers: the deliveries fail
        events=["push"],
        repositories=None,
        tags=None,
        secret=None,
        form="distribution",
        created_by="root",
    )
    await push_image(api, "team/app", "v3")
    await deliver_all(auth_app)
    await api.post("/v2/team/app/blobs/uploads/")  # a session left open

    await log_in(web, "root", "/ui/dashboard")
    page = (await web.get("/ui/dashboard")).text
    assert "Every namespace" in page
    assert "4 in all" in summary(page, "Pushes per day")  # team/app v1 v2 v3, alice/own v1
    assert "4 in all" in summary(page, "Pulls per day")
    stored = summary(page, "Stored")
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    assert "from 0 B to " in stored and not stored.endswith("to 0 B")
    assert re.search(rf"<td>{today}</td><td>[1-9][\d,.]* (B|KiB)</td>", page)
    assert page.count("<rect ") == 90  # three charts of 30 days
    busiest = page.split('class="busiest"')[1].split("</ol>")[0]
    assert busiest.index("team/app") < busiest.index("alice/own") and "3 pulls" in busiest
    assert "http://127.0.0.1:9/</a>: 1 failed" in page
    assert "1 upload sessions are open now" in page

    await log_in(web, "alice", "/ui/dashboard")  # owns team and alice
    page = (await web.get("/ui/dashboard")).text
    assert "Your namespaces: alice, team" in page
    assert "Uploads in progress" not in page and "127.0.0.1:9" not in page  # a global one

    await accounts.set_member("team", "eve", "developer")
    await log_in(web, "eve", "/ui/dashboard")  # owns eve, which is empty
    page = (await web.get("/ui/dashboard")).text
    assert "0 in all" in summary(page, "Pushes per day") and "Nothing pulled yet." in page
    await accounts.add_user("dev", PASSWORD)
    await accounts.remove_namespace("dev")  # owns nothing at all
    await log_in(web, "dev", "/ui/dashboard")
    r = await web.get("/ui/dashboard")
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    await api.aclose()
