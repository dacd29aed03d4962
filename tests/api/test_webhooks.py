"""Webhooks through a real HTTP receiver: every event type, signed; the Distribution
envelope and CloudEvents; filters; a receiver that fails for a while and then gets
everything exactly once, in order; retries that end, redelivery, the delivery log; two
processes on one database that never send an event twice. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.mediatypes import OCI_MANIFEST
from registry.services.webhooks import CLOUDEVENTS_TYPE, DISTRIBUTION_TYPE
from tests.helpers import assert_error, push_blob, push_image, sha256
from tests.peers.receiver import Receiver

pytestmark = pytest.mark.anyio

FAST = {
    "webhooks_backoff_seconds": "0.01",
    "webhooks_max_backoff_seconds": "0.05",
    "gc_blob_lease_seconds": "0.1",
    "gc_untagged_hours": "0.00001",
}


@pytest.fixture
def storage_env() -> dict[str, str]:
    return {}  # events do not depend on the blob store: the filesystem only


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[Starlette]:
    application = create_app(make_settings(**FAST))
    yield application
    await application.state.registry.close()


async def add_hook(client: httpx.AsyncClient, url: str, **fields: Any) -> dict[str, Any]:
    events = ["push", "blob", "pull", "mount", "delete", "tag", "gc", "quota"]
    body = {"url": url, "events": events}
    r = await client.post("/api/v1/webhooks", json={**body, **fields})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def deliver_all(app: Starlette, rounds: int = 200) -> None:
    """Run the delivery worker's steps until nothing is pending."""
    webhooks = app.state.registry.webhooks
    await app.state.registry.pulls.flush()
    for _ in range(rounds):
        await webhooks.step()
        if (await webhooks.backlog())["pending"] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries still pending: {await webhooks.backlog()}")


async def test_every_event_type_arrives_signed_in_the_distribution_envelope(
    app: Starlette, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = await add_hook(client, receiver.url)
    assert len(hook["secret"]) >= 32
    registry = app.state.registry
    await registry.pulls.flush()  # the worker learns that pulls are wanted
    first, body = await push_image(client, "team/app", "v1", layers=[b"one"])
    second, _ = await push_image(client, "team/app", "v1", layers=[b"two"])  # moves v1
    r = await client.post(
        "/v2/team/copy/blobs/uploads/", params={"mount": sha256(b"two"), "from": "team/app"}
    )
    assert r.status_code == 201
    r = await client.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert (await client.delete(f"/v2/team/app/manifests/{second}")).status_code == 202
    await client.patch("/api/v1/namespaces/quota/policy", json={"quota_bytes": 10})
    r = await client.post(
        "/v2/quota/app/blobs/uploads/", params={"digest": sha256(b"x" * 100)}, content=b"x" * 100
    )
    assert_error(r, 403, "DENIED")
    await asyncio.sleep(0.2)
    assert (await registry.gc.collect(sweep_uploads=False)).manifests_deleted == 1  # first
    await deliver_all(app)

    got = receiver.accepted()
    events = [r.event for r in got]
    actions = [e["action"] for e in events]
    assert set(actions) == {"push", "tag", "mount", "pull", "delete", "quota", "gc"}, actions
    for received in got:
        assert received.signed_with(hook["secret"])
        assert received.headers["content-type"] == DISTRIBUTION_TYPE
        assert received.headers["x-registry-event"] == received.event["action"]
        assert received.headers["x-registry-event-id"] == received.event["id"]
        assert int(received.headers["x-registry-timestamp"]) > 0
        assert not received.signed_with("another secret")
    assert len({e["id"] for e in events}) == len(events)

    pushes = [e for e in events if e["action"] == "push"]
    manifest = next(e for e in pushes if e["target"]["digest"] == first)
    assert manifest["target"] == {
        "mediaType": OCI_MANIFEST,
        "digest": first,
        "size": len(body),
        "length": len(body),
        "repository": "team/app",
        "tag": "v1",
        "url": f"http://registry.test/v2/team/app/manifests/{first}",
        "artifactType": "application/vnd.oci.image.config.v1+json",
    }
    assert manifest["request"]["method"] == "PUT"
    assert manifest["request"]["host"] == "registry.test"
    assert len(manifest["request"]["id"]) == 32
    assert manifest["source"]["instanceID"]
    assert manifest["actor"] == {"name": "", "kind": "anonymous"}
    blob = next(e for e in pushes if e["target"]["digest"] == sha256(b"one"))
    assert blob["target"]["mediaType"] == "application/octet-stream"
    assert blob["target"]["size"] == 3
    (moved,) = [e for e in events if e["action"] == "tag"]
    assert moved["target"]["tag"] == "v1"
    assert moved["target"]["digest"] == second
    assert moved["target"]["previousDigest"] == first
    (mount,) = [e for e in events if e["action"] == "mount"]
    assert mount["target"]["repository"] == "team/copy"
    assert mount["target"]["fromRepository"] == "team/app"
    (pull,) = [e for e in events if e["action"] == "pull"]
    assert pull["target"]["tag"] == "v1" and pull["target"]["digest"] == second
    deletes = [e for e in events if e["action"] == "delete"]
    assert {d["target"]["digest"] for d in deletes} == {second, first}
    by_gc = next(d for d in deletes if d["target"]["digest"] == first)
    assert by_gc["actor"] == {"name": "gc", "kind": "system"}
    assert by_gc["detail"] == {"reason": "untagged"}
    (quota,) = [e for e in events if e["action"] == "quota"]
    assert quota["outcome"] == "denied"
    assert quota["detail"]["limit"] == 10
    (gc,) = [e for e in events if e["action"] == "gc"]
    assert gc["detail"]["manifests_deleted"] == 1


async def test_cloudevents_and_filters(
    app: Starlette, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await add_hook(
        client,
        receiver.url,
        events=["push"],
        format="cloudevents",
        repositories="team/*",
        tags="release-*",
    )
    await push_image(client, "team/app", "dev", layers=[b"a"])
    digest, _ = await push_image(client, "team/app", "release-1", layers=[b"a"])
    await push_image(client, "other/app", "release-1", layers=[b"a"])
    await deliver_all(app)
    (only,) = receiver.accepted()
    assert only.headers["content-type"] == CLOUDEVENTS_TYPE
    document = only.document
    assert document["specversion"] == "1.0"
    assert document["type"] == "io.registry.push"
    assert document["subject"] == "team/app"
    assert document["id"] == document["data"]["id"]
    assert document["data"]["target"]["digest"] == digest
    assert document["data"]["target"]["tag"] == "release-1"


async def test_push_is_manifests_and_blob_is_blobs(
    app: Starlette, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    images = Receiver()
    try:
        await add_hook(client, images.url, events=["push"])
        await add_hook(client, receiver.url, events=["blob"])
        digest, _ = await push_image(client, "team/app", "v1", layers=[b"layer"])
        await deliver_all(app)
        (image,) = images.accepted()
        assert image.event["target"]["digest"] == digest
        blobs = [r.event for r in receiver.accepted()]
        # Distribution's form: action push, a blob's media type.
        assert {e["action"] for e in blobs} == {"push"}
        assert {e["target"]["mediaType"] for e in blobs} == {"application/octet-stream"}
        assert sha256(b"layer") in {e["target"]["digest"] for e in blobs}
        assert len(blobs) == 2  # the layer and the config
    finally:
        images.close()


async def test_a_receiver_that_fails_for_a_while_gets_everything_once_in_order(
    app: Starlette, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Down from the fourth request on, for six: in the middle of a claimed batch.
    receiver.answer = lambda n: 503 if 3 <= n < 9 else 200
    hook = await add_hook(client, receiver.url, events=["push", "blob"])
    tags = [f"v{i}" for i in range(8)]
    for tag in tags:
        await push_image(client, "team/app", tag, layers=[tag.encode()])
    await deliver_all(app)
    got = receiver.accepted()
    events = [r.event for r in got]
    assert len(receiver.received) == len(got) + 6
    # Blobs and manifests, each once, in the order they were pushed.
    assert len({e["id"] for e in events}) == len(events) == 3 * len(tags)
    manifest_tags = [e["target"]["tag"] for e in events if "tag" in e["target"]]
    assert manifest_tags == tags
    audit = (await client.get("/api/v1/audit", params={"action": "push", "n": 100})).json()
    assert [e["id"] for e in reversed(audit["events"])] == [e["id"] for e in events]
    # The log: three sent, the fourth failing six times and then sent, then the rest.
    r = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", params={"n": 100})
    deliveries = list(reversed(r.json()["deliveries"]))
    assert {d["state"] for d in deliveries} == {"delivered"}
    assert [d["attempts"] for d in deliveries] == [1, 1, 1, 7] + [1] * (len(events) - 4)
    fourth = deliveries[3]
    assert fourth["last_attempt"]["status"] == 200
    assert fourth["last_attempt"]["response"] == "ok"
    r = await client.get(f"/api/v1/webhooks/{hook['id']}/attempts", params={"n": 100})
    log = list(reversed(r.json()["attempts"]))
    assert [a["status"] for a in log] == [200] * 3 + [503] * 6 + [200] * (len(events) - 3)
    assert {a["delivery"] for a in log[3:10]} == {fourth["id"]}
    assert all(a["response"] == "receiver is down for now" for a in log[3:9])
    assert all(a["seconds"] >= 0 and a["worker"] for a in log)
    page = await client.get(f"/api/v1/webhooks/{hook['id']}/attempts", params={"n": 7})
    assert len(page.json()["attempts"]) == 7 and 'rel="next"' in page.headers["Link"]


async def test_retries_end_as_failed_and_failed_deliveries_can_be_sent_again(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    app = create_app(make_settings(**FAST, webhooks_retry_hours="0.0001"))  # 0.36 s
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as client:
            receiver.answer = lambda n: 500
            hook = await add_hook(client, receiver.url, events=["blob"])
            await push_blob(client, "team/app", b"one")
            await push_blob(client, "team/app", b"two")
            await deliver_all(app)  # pending until given up
            r = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
            deliveries = r.json()["deliveries"]
            assert [d["state"] for d in deliveries] == ["failed", "failed"]
            # The first was retried; the second waited behind it, in order, until its own
            # time was up too.
            assert deliveries[1]["attempts"] > 1 and deliveries[0]["attempts"] >= 1
            failed = await client.get(
                f"/api/v1/webhooks/{hook['id']}/deliveries", params={"state": "failed", "n": 1}
            )
            assert len(failed.json()["deliveries"]) == 1 and "Link" in failed.headers
            assert not receiver.accepted()

            receiver.answer = lambda n: 200
            r = await client.post(f"/api/v1/webhooks/{hook['id']}/redeliver")
            assert r.status_code == 202 and r.json() == {"queued": 2}
            await deliver_all(app)
            assert [x.event["target"]["digest"] for x in receiver.accepted()] == [
                sha256(b"one"),
                sha256(b"two"),
            ]
            one = deliveries[0]["id"]
            r = await client.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{one}/redeliver")
            assert r.json() == {"queued": 1}
            await deliver_all(app)
            assert receiver.accepted()[-1].event["id"] == deliveries[0]["event"]
            r = await client.post(f"/api/v1/webhooks/{hook['id']}/deliveries/999999/redeliver")
            assert_error(r, 404, "NOT_FOUND")
    finally:
        await app.state.registry.close()


async def test_two_processes_never_send_an_event_twice(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    """Two apps on one database, as two replicas: both run the delivery worker while
    pushes come in, and every event arrives once, in order."""
    settings = make_settings(**FAST)
    one, two = create_app(settings), create_app(settings)
    one.state.registry.webhooks.worker = "replica-1"
    two.state.registry.webhooks.worker = "replica-2"
    transport = httpx.ASGITransport(app=one)
    stop = asyncio.Event()

    async def work(app: Starlette) -> None:
        while not stop.is_set():
            await app.state.registry.webhooks.step()
            await asyncio.sleep(0)

    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as client:
            await add_hook(client, receiver.url, events=["push", "blob"])
            workers = [asyncio.create_task(work(app)) for app in (one, two)]
            tags = [f"t{i}" for i in range(12)]
            for tag in tags:
                await push_image(client, "team/app", tag, layers=[tag.encode()])
            await deliver_all(one)
            stop.set()
            await asyncio.gather(*workers)
            r = await client.get("/api/v1/webhooks/1/attempts", params={"n": 100})
            workers_seen = {a["worker"] for a in r.json()["attempts"]}
        events = [r.event for r in receiver.received]
        assert len(events) == 3 * len(tags)
        assert len({e["id"] for e in events}) == len(events)
        assert [e["target"]["tag"] for e in events if "tag" in e["target"]] == tags
        assert workers_seen <= {"replica-1", "replica-2"}
    finally:
        await one.state.registry.close()
        await two.state.registry.close()


async def test_a_namespace_webhook_may_not_reach_private_addresses(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    for allowed in (False, True):
        app = create_app(make_settings(**FAST, webhooks_allow_private_targets=str(allowed)))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://r.test") as c:
                hook = await add_hook(
                    c, receiver.url, namespace="team", events=["blob"], secret="s" * 20
                )
                assert hook["namespace"] == "team"
                await push_blob(c, "team/app", f"{allowed}".encode())
                await push_blob(c, "other/app", b"not for team")
                await app.state.registry.webhooks.step()
                r = await c.get(f"/api/v1/webhooks/{hook['id']}/attempts")
                (attempt,) = r.json()["attempts"]
                if allowed:
                    assert attempt["status"] == 200
                else:
                    assert attempt["status"] is None
                    assert "127.0.0.1" in attempt["error"]
                    assert "webhooks.allow_private_targets" in attempt["error"]
                assert (await c.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 204
        finally:
            await app.state.registry.close()
    (only,) = receiver.accepted()
    assert only.signed_with("s" * 20)
    assert only.event["target"]["repository"] == "team/app"


async def test_webhook_bodies_and_changes(app: Starlette, client: httpx.AsyncClient) -> None:
    for bad, field_name in (
        ({"url": "ftp://example.com", "events": ["push"]}, "url"),
        ({"url": "http://u:p@example.com", "events": ["push"]}, "url"),
        ({"url": "http://example.com", "events": ["launch"]}, "events"),
        ({"url": "http://example.com", "events": []}, "events"),
        ({"url": "http://example.com", "events": ["push"], "format": "xml"}, "format"),
        ({"url": "http://example.com", "events": ["push"], "secret": "short"}, "secret"),
        ({"url": "http://example.com", "events": ["push"], "namespace": "Bad Name"}, "name"),
    ):
        r = await client.post("/api/v1/webhooks", json=bad)
        error = assert_error(r, 400, "INVALID" if field_name != "name" else "NAME_INVALID")
        assert field_name in json.dumps(error), error
    hook = await add_hook(client, "http://example.com/hook", events=["push"])
    ident = hook["id"]
    r = await client.patch(f"/api/v1/webhooks/{ident}", json={"enabled": False, "tags": "v*"})
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["tags"] == "v*"
    assert "secret" not in r.json()
    assert_error(
        await client.patch(f"/api/v1/webhooks/{ident}", json={"url": None}), 400, "INVALID"
    )
    assert_error(
        await client.patch(f"/api/v1/webhooks/{ident}", json={"url": "gopher://x"}), 400, "INVALID"
    )
    listed = (await client.get("/api/v1/webhooks")).json()["webhooks"]
    assert [w["id"] for w in listed] == [ident]
    assert (await client.get(f"/api/v1/webhooks/{ident}")).json()["url"] == hook["url"]
    assert (await client.delete(f"/api/v1/webhooks/{ident}")).status_code == 204
    assert_error(await client.get(f"/api/v1/webhooks/{ident}"), 404, "NOT_FOUND")
    assert_error(await client.delete(f"/api/v1/webhooks/{ident}"), 404, "NOT_FOUND")
    huge = 10**30  # past every integer column: still a plain 404
    assert_error(await client.get(f"/api/v1/webhooks/{huge}"), 404, "NOT_FOUND")
    other = await add_hook(client, "http://example.com/other", events=["push"])
    r = await client.post(f"/api/v1/webhooks/{other['id']}/deliveries/{huge}/redeliver")
    assert_error(r, 404, "NOT_FOUND")
    r = await client.get(f"/api/v1/webhooks/{other['id']}/deliveries", params={"last": "x"})
    assert_error(r, 400, "INVALID")
    changes = (await client.get("/api/v1/audit", params={"action": "webhook."})).json()["events"]
    assert [e["action"] for e in changes] == [
        "webhook.create",
        "webhook.delete",
        "webhook.update",
        "webhook.create",
    ]
    assert changes[2]["detail"] == {"webhook": ident, "enabled": False, "tags": "v*"}


async def test_a_test_delivery_pings_the_receiver_now_and_says_how_it_answered(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = await add_hook(client, receiver.url, events=["push"])
    r = await client.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["ok"] is True and answer["status"] == 200 and answer["response"] == "ok"
    assert answer["error"] is None and answer["seconds"] >= 0
    [ping] = receiver.received
    assert ping.event["action"] == "ping" and ping.event["detail"] == {"webhook": hook["id"]}
    assert ping.headers["x-registry-delivery"] == "test"
    assert ping.signed_with(hook["secret"])
    # Not queued, not logged: the deliveries are the events'.
    r = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
    assert r.json()["deliveries"] == []

    receiver.answer = lambda n: 503
    answer = (await client.post(f"/api/v1/webhooks/{hook['id']}/test")).json()
    assert answer["ok"] is False and answer["status"] == 503
    r = await client.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": "http://127.0.0.1:9/"})
    assert r.status_code == 200, r.text  # nothing listens there
    answer = (await client.post(f"/api/v1/webhooks/{hook['id']}/test")).json()
    assert answer["ok"] is False and answer["status"] is None and answer["error"]
    assert_error(await client.post("/api/v1/webhooks/999999/test"), 404, "NOT_FOUND")
