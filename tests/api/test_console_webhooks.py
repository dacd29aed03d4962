"""Webhooks in the console, against a real receiver: an owner adds one for their
namespace (its secret shown once), tests it, sees its deliveries and each attempt, sends
the failed ones again and changes or removes it; a developer sees none and reaches none.
Each change is audited by the same service as the API's."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from tests.api.conftest import FAST_WEBHOOKS, PASSWORD
from tests.api.console import csrf_of, log_in
from tests.api.test_webhooks import deliver_all
from tests.helpers import basic, push_blob
from tests.peers.receiver import Receiver

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]


# The receiver is on 127.0.0.1, where only an admin's webhook may go otherwise.
AUTH_SETTINGS = {**FAST_WEBHOOKS, "webhooks_allow_private_targets": "true"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


async def submit(web: httpx.AsyncClient, page: str, action: str, **form: object) -> httpx.Response:
    shown = await web.get(page)
    assert shown.status_code == 200, shown.text
    return await web.post(action, data={"csrf": csrf_of(shown.text), **form})


async def test_an_owner_adds_tests_watches_and_removes_a_webhook(
    web: httpx.AsyncClient, auth_app: Starlette, receiver: Receiver
) -> None:
    await log_in(web, "alice")
    r = await submit(
        web,
        "/ui/webhooks",
        "/ui/webhooks",
        namespace="team",
        url=receiver.url,
        events=["blob", "push"],
        repositories="team/*",
        format="distribution",
    )
    assert r.status_code == 200, r.text
    secret = re.search(r'<code id="webhook-secret">([^<]+)</code>', r.text)
    assert secret and len(secret[1]) >= 32
    link = re.search(r'href="(/ui/webhooks/(\d+))"', r.text)
    assert link, r.text
    page, ident = link[1], link[2]
    assert secret[1] not in (await web.get("/ui/webhooks")).text  # shown once
    assert secret[1] not in (await web.get(page)).text

    r = await submit(web, page, f"{page}/test")
    assert "The receiver answered 200 in" in r.text
    [ping] = receiver.received
    assert ping.event["action"] == "ping" and ping.signed_with(secret[1])

    # A blob push, delivered; then the receiver fails and the next one ends failed.
    pusher = httpx.AsyncClient(transport=web._transport, base_url="http://registry.test")
    pusher.headers.update(basic("alice", PASSWORD))
    await push_blob(pusher, "team/app", b"first")
    await deliver_all(auth_app)
    receiver.answer = lambda n: 503
    await push_blob(pusher, "team/app", b"second")
    await deliver_all(auth_app)
    shown = (await web.get(page)).text
    assert shown.count("<td>delivered</td>") == 1 and shown.count("<td>failed</td>") == 1
    assert "HTTP 503: <code>receiver is down for now</code>" in shown
    failed = (await web.get(page, params={"state": "failed"})).text
    assert failed.count("<td>failed</td>") == 1 and "<td>delivered</td>" not in failed

    receiver.answer = lambda n: 200
    r = await submit(web, page, f"{page}/redeliver")
    assert "1 deliveries queued again." in r.text
    await deliver_all(auth_app)
    assert len(receiver.accepted()) == 3  # the ping, the first, the second again

    r = await submit(
        web, page, f"{page}/change", url=receiver.url, events=["push"], format="cloudevents"
    )
    assert r.status_code == 303 and r.headers["location"].endswith("?saved=1")
    shown = (await web.get(r.headers["location"])).text
    assert "Webhook saved." in shown and "<strong>off</strong>" in shown  # not ticked: off
    r = await submit(
        web, page, f"{page}/change", url="ftp://x", events=["push"], format="distribution"
    )
    assert r.status_code == 400 and 'role="alert"' in r.text

    r = await submit(web, f"{page}/remove", f"{page}/remove")
    assert r.status_code == 303 and r.headers["location"] == "/ui/webhooks"
    assert (await web.get(page)).status_code == 404
    await pusher.aclose()

    pusher = httpx.AsyncClient(transport=web._transport, base_url="http://registry.test")
    pusher.headers.update(basic("root", PASSWORD))
    audit = await pusher.get("/api/v1/audit", params={"namespace": "team", "action": "webhook."})
    actions = [e["action"] for e in audit.json()["events"]]
    assert actions == ["webhook.delete", "webhook.update", "webhook.create"], actions
    assert ident
    await pusher.aclose()


async def test_a_developer_sees_no_webhook_and_reaches_none(
    web: httpx.AsyncClient, accounts: Accounts, receiver: Receiver, auth_app: Starlette
) -> None:
    hook, _ = await auth_app.state.registry.webhooks.add(
        namespace="team",
        url=receiver.url,
        events=["push"],
        repositories=None,
        tags=None,
        secret=None,
        form="distribution",
        created_by="alice",
    )
    await accounts.set_member("team", "eve", "developer")
    await log_in(web, "eve")
    listed = await web.get("/ui/webhooks")
    assert listed.status_code == 200 and receiver.url not in listed.text
    # She may add one only for the namespace she owns, her own.
    select = listed.text.split('id="hook-namespace"')[1].split("</select>")[0]
    assert re.findall(r"<option[^>]*>([^<]+)</option>", select) == ["eve"]
    page = f"/ui/webhooks/{hook.id}"
    assert (await web.get(page)).status_code == 403
    r = await web.post(f"{page}/test", data={"csrf": csrf_of(listed.text)})
    assert r.status_code == 403 and not receiver.received
    r = await web.post(
        "/ui/webhooks",
        data={
            "csrf": csrf_of(listed.text),
            "namespace": "team",
            "url": receiver.url,
            "events": "push",
        },
    )
    assert r.status_code == 403 and "only an owner of &#39;team&#39;" in r.text
    r = await web.post(
        "/ui/webhooks",
        data={"csrf": csrf_of(listed.text), "namespace": "", "url": receiver.url, "events": "push"},
    )
    assert r.status_code == 403
    assert (await web.get("/ui/webhooks/99999")).status_code == 404
