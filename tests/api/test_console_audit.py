"""The audit log in the console: filters, paging, links to what an event concerns, the
export as JSON lines; an owner reads their namespaces' events only, a developer none,
an admin everything. Attacker-written text (a tag, a URL) is shown as text."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from registry.auth.accounts import Accounts
from tests.api.conftest import PASSWORD
from tests.api.console import log_in
from tests.helpers import basic, push_image

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]


def rows(html: str) -> list[str]:
    body = html.split("<tbody>")[1].split("</tbody>")[0] if "<tbody>" in html else ""
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


async def test_filters_links_paging_and_export(web: httpx.AsyncClient, accounts: Accounts) -> None:
    api = httpx.AsyncClient(transport=web._transport, base_url="http://registry.test")
    api.headers.update(basic("root", PASSWORD))
    for i in range(55):  # more than a page
        await accounts.set_member("team", "eve", "developer" if i % 2 else "maintainer")
    await push_image(api, "team/app", "v2")
    await log_in(web, "root")

    page = (await web.get("/ui/audit", params={"namespace": "team"})).text
    shown = rows(page)
    assert len(shown) == 50 and "push" in shown[0]
    assert 'href="/ui/r/team/app/-/manifests/sha256:' in shown[0] and "team/app:v2" in shown[0]
    older = re.search(r'href="/ui/audit\?([^"]+)">Older events', page)
    assert older and "before=" in older[1]
    rest = rows((await web.get(f"/ui/audit?{older[1].replace('&amp;', '&')}")).text)
    every = (await web.get("/ui/audit/export", params={"namespace": "team"})).text.splitlines()
    assert len(shown) + len(rest) == len(every) > 55  # the pages, without gap or overlap

    only = rows(
        (await web.get("/ui/audit", params={"action": "member.", "outcome": "success"})).text
    )
    assert len(only) == 50 and all("member.set" in r for r in only)
    assert rows((await web.get("/ui/audit", params={"actor": "nobody"})).text) == []
    r = await web.get(
        "/ui/audit", params={"since": "2026-12-04T10:00", "until": "2026-12-04T09:00"}
    )
    assert "since must come before until" in r.text
    r = await web.get("/ui/audit", params={"since": "yesterday"})
    assert "&#39;yesterday&#39; is not a date and time" in r.text

    export = await web.get("/ui/audit/export", params={"namespace": "team", "action": "member."})
    assert export.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert len(lines) == 55 and {e["action"] for e in lines} == {"member.set"}
    await api.aclose()


async def test_an_owner_reads_their_namespaces_only_and_a_developer_none(
    web: httpx.AsyncClient, accounts: Accounts
) -> None:
    await accounts.set_member("team", "eve", "developer")
    await log_in(web, "alice")  # owns team and alice
    page = (await web.get("/ui/audit")).text
    select = page.split('id="audit-namespace"')[1].split("</select>")[0]
    assert re.findall(r"<option[^>]*>([^<]+)</option>", select) == ["alice", "team"]
    team = rows((await web.get("/ui/audit", params={"namespace": "team"})).text)
    assert any("member.set" in r for r in team)
    r = await web.get("/ui/audit", params={"namespace": "eve"})
    assert "only owners of &#39;eve&#39; read its audit log" in r.text and not rows(r.text)
    r = await web.get("/ui/audit/export", params={"namespace": "eve"})
    assert r.status_code == 403

    await log_in(web, "eve")  # owns only eve: reads eve's
    assert "member.set" not in (await web.get("/ui/audit")).text
