"""Replication rules, runs and items (issue 34) against real registries: CNCF
Distribution 2.8 (Debian's docker-registry, no referrers API) and another instance of
this registry with token auth. Push rules copy from here, pull rules to here; images,
multi-platform indexes and their referrers arrive whole, tags last; what the
destination has is skipped; history says what happened to each item."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.config import Settings
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.signatures import signature_tag
from registry.wiring import Registry
from tests.api.conftest import OTHER_ADMIN_PASSWORD, PASSWORD
from tests.api.test_trust import Signer, sign
from tests.helpers import (
    assert_error,
    basic,
    config_only_manifest,
    descriptor,
    index_of,
    push_image,
    put_manifest,
    scraped,
    sha256,
    started,
)
from tests.peers.distribution import Distribution
from tests.peers.registry import RegistryProcess

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("storage_env", ["filesystem"], indirect=True),
]
MIB = 1024 * 1024
AUTH_SETTINGS = {"replication_attempts": "2", "replication_backoff_seconds": "0.01"}


@pytest.fixture
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """A Distribution of the test's own: each starts empty."""
    server = Distribution(tmp_path_factory.mktemp("distribution")).start()
    yield server
    server.stop()


@pytest.fixture
def registry(auth_app: Starlette) -> Registry:
    found: Registry = auth_app.state.registry
    return found


@pytest.fixture
async def root(auth_app: Starlette, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    await accounts.add_user("root", PASSWORD, admin=True)
    await accounts.add_namespace("team", public=False)
    transport = httpx.ASGITransport(app=auth_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry.test", headers=basic("root", PASSWORD)
    ) as client:
        yield client


@pytest.fixture
async def dist(distribution: Distribution) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=distribution.url) as client:
        yield client


async def _push_to_distribution(
    client: httpx.AsyncClient, repo: str, tag: str, layers: list[bytes]
) -> str:
    """An image pushed as Distribution takes blobs: POST, then PUT with the bytes."""
    config = json.dumps({"ref": tag}).encode()
    for blob in (config, *layers):
        started = await client.post(f"/v2/{repo}/blobs/uploads/")
        location = started.headers["location"]
        joiner = "&" if "?" in location else "?"
        r = await client.put(f"{location}{joiner}digest={sha256(blob)}", content=blob)
        assert r.status_code == 201, r.text
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar") for layer in layers],
    }
    return await put_manifest(client, repo, tag, json.dumps(manifest).encode(), OCI_MANIFEST)


async def _remote(root: httpx.AsyncClient, name: str, url: str, **extra: Any) -> None:
    r = await root.post("/api/v1/remotes", json={"name": name, "url": url, **extra})
    assert r.status_code == 201, r.text


async def _rule(root: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await root.post("/api/v1/replication/rules", json=body)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def _run(root: httpx.AsyncClient, registry: Registry, rule: str) -> dict[str, Any]:
    """Run a rule now, let the worker finish, and return the run."""
    r = await root.post(f"/api/v1/replication/rules/{rule}/run")
    assert r.status_code == 202, r.text
    await registry.replicator.drain()
    return await _run_by_id(root, r.json()["run"])


async def _run_by_id(root: httpx.AsyncClient, run: int) -> dict[str, Any]:
    answer: dict[str, Any] = (await root.get(f"/api/v1/replication/runs/{run}")).json()
    return answer


async def _items(root: httpx.AsyncClient, run: int) -> list[dict[str, Any]]:
    r = await root.get(f"/api/v1/replication/runs/{run}/items")
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda i: i["id"])


async def test_a_push_rule_copies_selected_tags_to_distribution_and_skips_what_is_there(
    root: httpx.AsyncClient, registry: Registry, distribution: Distribution, dist: httpx.AsyncClient
) -> None:
    v1, _ = await push_image(root, "team/app", "v1", layers=[b"base layer", b"app v1"])
    await push_image(root, "team/app", "v2", layers=[b"base layer", b"app v2"])
    await push_image(root, "team/app", "test-1")
    await push_image(root, "team/other", "v1")
    await _remote(root, "dist", distribution.url)
    rule = await _rule(
        root,
        name="promote",
        direction="push",
        remote="dist",
        repositories=["team/app"],
        tags=["v*", "!v2"],
        destination="prod",
        strip=1,
    )
    assert rule["kinds"] == ["image", "index", "artifact"] and rule["trigger"] == "manual"
    before = scraped((await root.get("/metrics")).text)
    run = await _run(root, registry, "promote")
    assert run["state"] == "succeeded", run
    assert run["items"]["copied"] == 1 and run["trigger"] == "manual"
    assert run["bytes"] > 0
    (item,) = await _items(root, run["id"])
    assert (item["repository"], item["reference"], item["destination"]) == (
        "team/app",
        "v1",
        "prod/app",
    )
    assert item["state"] == "copied" and item["digest"] == v1
    after = scraped((await root.get("/metrics")).text)
    for name, grown in (
        ('registry_replication_items_total{direction="push",outcome="copied"}', 1),
        ('registry_replication_bytes_total{direction="push"}', run["bytes"]),
    ):
        assert after[name] - before.get(name, 0) == grown, name
    # The run's end is an event: in the audit log, and for webhooks that want it.
    (event,) = (await root.get("/api/v1/audit", params={"action": "replication"})).json()["events"]
    assert event["outcome"] == "success"
    assert event["detail"] == {
        "rule": "promote",
        "direction": "push",
        "remote": "dist",
        "run": run["id"],
        "trigger": "manual",
        "state": "succeeded",
        "items": {"copied": 1},
        "bytes": run["bytes"],
    }
    r = await dist.head("/v2/prod/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["docker-content-digest"] == v1
    assert (await dist.get("/v2/prod/app/tags/list")).json()["tags"] == ["v1"]
    # Again: nothing to send; the item says why.
    again = await _run(root, registry, "promote")
    assert again["state"] == "succeeded" and again["items"]["skipped"] == 1
    (item,) = await _items(root, again["id"])
    assert item["error"] == "up to date" and item["bytes"] == 0
    # A new tag: only its new layer goes; the shared one is there already.
    patches = distribution.requests("PUT", "/v2/prod/app/blobs/uploads/")
    await push_image(root, "team/app", "v3", layers=[b"base layer", b"app v3"])
    third = await _run(root, registry, "promote")
    assert third["items"] == {"pending": 0, "running": 0, "copied": 1, "skipped": 1, "failed": 0}
    assert third["bytes"] == len(b"app v3") + len(json.dumps({"ref": "v3"}).encode())
    del patches
    runs = (await root.get("/api/v1/replication/runs", params={"rule": "promote"})).json()
    assert [r["id"] for r in runs["runs"]] == [third["id"], again["id"], run["id"]]


async def test_a_pull_rule_copies_from_distribution_into_a_namespace(
    root: httpx.AsyncClient, registry: Registry, distribution: Distribution, dist: httpx.AsyncClient
) -> None:
    digest = await _push_to_distribution(dist, "vendor/tool", "1.0", [b"tool 1.0"])
    await _push_to_distribution(dist, "vendor/tool", "nightly", [b"tool nightly"])
    await _remote(root, "dist", distribution.url)
    await _rule(
        root,
        name="vendor",
        direction="pull",
        remote="dist",
        repositories=["vendor/tool"],
        tags=["1.*"],
        destination="team/mirror",
    )
    run = await _run(root, registry, "vendor")
    assert run["state"] == "succeeded" and run["items"]["copied"] == 1, run
    r = await root.get(
        "/v2/team/mirror/vendor/tool/manifests/1.0", headers={"Accept": OCI_MANIFEST}
    )
    assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
    tags = (await root.get("/v2/team/mirror/vendor/tool/tags/list")).json()["tags"]
    assert tags == ["1.0"]


async def test_an_index_with_its_platforms_and_referrers_goes_to_both_kinds_of_remote(
    root: httpx.AsyncClient,
    registry: Registry,
    distribution: Distribution,
    dist: httpx.AsyncClient,
    other: RegistryProcess,
) -> None:
    amd, amd_body = await push_image(root, "team/multi", "amd64", layers=[b"amd64 layer"])
    arm, arm_body = await push_image(root, "team/multi", "arm64", layers=[b"arm64 layer"])
    index = index_of(
        [
            (OCI_MANIFEST, amd_body, {"os": "linux", "architecture": "amd64"}),
            (OCI_MANIFEST, arm_body, {"os": "linux", "architecture": "arm64"}),
        ]
    )
    top = await put_manifest(root, "team/multi", "latest", index, OCI_INDEX)
    # A signature of the index, by the referrers API (an OCI 1.1 subject).
    subject = {"mediaType": OCI_INDEX, "digest": top, "size": len(index)}
    signature = await config_only_manifest(
        root,
        "team/multi",
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        subject=subject,
        artifactType="application/vnd.dev.cosign.artifact.sig.v1+json",
    )
    signed = await put_manifest(root, "team/multi", sha256(signature), signature, OCI_MANIFEST)
    await _remote(root, "dist", distribution.url)
    await _remote(root, "other", other.url, username="admin", password=OTHER_ADMIN_PASSWORD)
    # The other registry lives as long as the module: a place of this test's own there.
    place = "t" + secrets.token_hex(4)
    for remote in ("dist", "other"):
        await _rule(
            root,
            name=f"to-{remote}",
            direction="push",
            remote=remote,
            repositories=["team/multi"],
            tags=["latest"],
            destination=place,
        )
        run = await _run(root, registry, f"to-{remote}")
        assert run["state"] == "succeeded" and run["items"]["copied"] == 1, run
    there = f"{place}/team/multi"
    async with httpx.AsyncClient(base_url=other.url) as client:
        token = (
            await client.get(
                "/token",
                params={"scope": f"repository:{there}:pull", "service": "registry"},
                auth=("admin", OTHER_ADMIN_PASSWORD),
            )
        ).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        for reg in (dist, client):
            accept = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}
            r = await reg.get(f"/v2/{there}/manifests/latest", headers=accept)
            assert r.status_code == 200 and r.headers["docker-content-digest"] == top
            for child in (amd, arm, signed):
                r = await reg.head(f"/v2/{there}/manifests/{child}", headers=accept)
                assert r.status_code == 200, (reg.base_url, child)
        # The other registry has the referrers API: the signature is listed there.
        listed = (await client.get(f"/v2/{there}/referrers/{top}")).json()["manifests"]
        assert [m["digest"] for m in listed] == [signed]
    # Distribution has none: the tag schema's index lists it, as OCI clients keep it.
    r = await dist.get(
        f"/v2/{there}/manifests/{top.replace(':', '-')}", headers={"Accept": OCI_INDEX}
    )
    assert r.status_code == 200
    assert [m["digest"] for m in r.json()["manifests"]] == [signed]


async def test_cosign_tags_travel_with_what_they_sign_whatever_the_tag_filter(
    root: httpx.AsyncClient, registry: Registry, distribution: Distribution, dist: httpx.AsyncClient
) -> None:
    digest, _ = await push_image(root, "team/signed", "v1")
    signature, _ = await push_image(
        root, "team/signed", digest.replace(":", "-") + ".sig", layers=[b"a signature"]
    )
    await _remote(root, "dist", distribution.url)
    await _rule(
        root,
        name="signed",
        direction="push",
        remote="dist",
        repositories=["team/signed"],
        tags=["v1"],
    )
    run = await _run(root, registry, "signed")
    assert run["state"] == "succeeded" and run["items"]["copied"] == 1, run
    r = await dist.head(
        f"/v2/team/signed/manifests/{digest.replace(':', '-')}.sig",
        headers={"Accept": OCI_MANIFEST},
    )
    assert r.status_code == 200 and r.headers["docker-content-digest"] == signature


async def test_an_event_rule_copies_each_push_and_deletion(
    root: httpx.AsyncClient, registry: Registry, distribution: Distribution, dist: httpx.AsyncClient
) -> None:
    await _remote(root, "dist", distribution.url)
    await _rule(
        root,
        name="follow",
        direction="push",
        remote="dist",
        repositories=["team/live"],
        trigger="event",
        deletions=True,
        destination="dr",
    )
    lag = "registry_replication_lag_seconds_count"
    before = scraped((await root.get("/metrics")).text).get(lag, 0)
    digest, _ = await push_image(root, "team/live", "v1")
    await push_image(root, "team/live", "v2")
    await registry.webhooks.step()  # the outbox's fan-out queues the copy
    await registry.replicator.drain()
    r = await dist.head("/v2/dr/team/live/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
    (run,) = (await root.get("/api/v1/replication/runs")).json()["runs"]
    assert run["trigger"] == "event" and run["state"] == "succeeded"
    assert run["items"]["copied"] == 2
    assert scraped((await root.get("/metrics")).text)[lag] - before == 2
    # A tag deleted here, its manifest kept: Distribution deletes no tag alone, and
    # deleting the manifest there would take what is still here: the item says so.
    assert (await root.delete("/v2/team/live/manifests/v2")).status_code == 202
    await registry.webhooks.step()
    await registry.replicator.drain()
    runs = (await root.get("/api/v1/replication/runs")).json()["runs"]
    (item,) = await _items(root, runs[0]["id"])
    assert item["action"] == "delete" and item["state"] == "skipped"
    assert "stays, as its manifest is still at the source" in item["error"]
    # Deleted here: deleted there. Distribution deletes no tag alone; the manifest goes,
    # since nothing here has it any more.
    assert (await root.delete(f"/v2/team/live/manifests/{digest}")).status_code == 202
    await registry.webhooks.step()
    await registry.replicator.drain()
    r = await dist.head("/v2/dr/team/live/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 404
    runs = (await root.get("/api/v1/replication/runs")).json()["runs"]
    assert runs[0]["state"] == "succeeded" and runs[0]["items"]["copied"] == 1


async def test_a_pull_rule_with_deletions_removes_what_the_remote_no_longer_has(
    root: httpx.AsyncClient, registry: Registry, distribution: Distribution, dist: httpx.AsyncClient
) -> None:
    kept = await _push_to_distribution(dist, "vendor/tool", "1.0", [b"tool 1.0"])
    gone = await _push_to_distribution(dist, "vendor/tool", "1.1", [b"tool 1.1"])
    await _remote(root, "dist", distribution.url)
    await _rule(
        root,
        name="vendor",
        direction="pull",
        remote="dist",
        repositories=["vendor/*"],
        destination="team",
        deletions=True,
    )
    run = await _run(root, registry, "vendor")
    assert run["items"]["copied"] == 2, run
    assert (await dist.delete(f"/v2/vendor/tool/manifests/{gone}")).status_code == 202
    run = await _run(root, registry, "vendor")
    assert run["state"] == "succeeded", run
    items = {(i["action"], i["reference"]): i for i in await _items(root, run["id"])}
    assert items[("copy", "1.0")]["state"] == "skipped"
    assert items[("delete", "1.1")]["state"] == "copied"
    assert (await root.get("/v2/team/vendor/tool/tags/list")).json()["tags"] == ["1.0"]
    r = await root.head("/v2/team/vendor/tool/manifests/1.0", headers={"Accept": OCI_MANIFEST})
    assert r.headers["docker-content-digest"] == kept


async def test_a_blob_interrupted_by_the_remote_resumes_from_its_offset(
    make_settings: Callable[..., Settings], distribution: Distribution, dist: httpx.AsyncClient
) -> None:
    """Distribution stopped in the middle of a blob sent in chunks, then started again:
    the copy goes on in the same upload, from the offset Distribution reports."""
    size, chunk = 6 * MIB, 256 * 1024
    layer = random.randbytes(size)
    settings = make_settings(
        auth_enabled="true",
        replication_chunk_bytes=str(chunk),
        replication_backoff_seconds="0.5",
        replication_poll_seconds="0.05",
    )
    async with started(settings) as (application, client):
        registry: Registry = application.state.registry
        await registry.auth.accounts.add_user("root", PASSWORD, admin=True)
        client.headers.update(basic("root", PASSWORD))
        digest, _ = await push_image(client, "team/big", "v1", layers=[layer])
        await _remote(client, "dist", distribution.url)
        # 2 MiB/s: three seconds to send it, time enough to stop Distribution midway.
        await _rule(
            client,
            name="big",
            direction="push",
            remote="dist",
            repositories=["team/big"],
            bandwidth=2 * MIB,
        )
        run = (await client.post("/api/v1/replication/rules/big/run")).json()["run"]
        path = "/v2/team/big/blobs/uploads/"
        for _ in range(200):
            if distribution.requests_under("PATCH", path) >= 4:  # 1 MiB is there
                break
            await asyncio.sleep(0.05)
        distribution.stop()
        await asyncio.sleep(1)  # the attempt fails; its retry waits for the remote
        distribution.start()
        for _ in range(300):
            found = await _run_by_id(client, run)
            if found["state"] != "running":
                break
            await asyncio.sleep(0.1)
        assert found["state"] == "succeeded", found
        # One upload session for the layer (and one for the config): it went on.
        assert distribution.requests_under("POST", path) == 2
        (item,) = await _items(client, run)
        assert item["attempts"] >= 2 and item["state"] == "copied"
        # What was sent again is at most the chunk in flight when it stopped.
        config = len(json.dumps({"ref": "v1"}).encode())
        assert size + config <= item["bytes"] <= size + config + chunk
    r = await dist.head(f"/v2/team/big/blobs/{sha256(layer)}")
    assert r.status_code == 200 and int(r.headers["content-length"]) == size
    r = await dist.head("/v2/team/big/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.headers["docker-content-digest"] == digest


async def test_failures_are_retried_then_said_and_can_be_retried(
    root: httpx.AsyncClient, registry: Registry, distribution: Distribution
) -> None:
    await push_image(root, "team/app", "v1")
    await _remote(root, "dist", distribution.url)
    # A destination Distribution refuses (an upper-case name is no repository name).
    await _rule(root, name="bad", direction="push", remote="dist", repositories=["team/app"])
    distribution.stop()
    try:
        run = await _run(root, registry, "bad")
    finally:
        distribution.start()
    assert run["state"] == "failed" and run["items"]["failed"] == 1, run
    (item,) = await _items(root, run["id"])
    assert item["attempts"] == 2 and "could not be reached" in item["error"], item
    r = await root.post(f"/api/v1/replication/runs/{run['id']}/retry")
    assert r.status_code == 202, r.text
    await registry.replicator.drain()
    retried = await _run_by_id(root, r.json()["run"])
    assert retried["trigger"] == "retry" and retried["state"] == "succeeded", retried
    r = await root.post(f"/api/v1/replication/runs/{retried['id']}/retry")
    assert "no failed items" in assert_error(r, 409, "CONFLICT")["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"tags": ["{a,b"]}, "a { without its }"),
        ({"kinds": ["images"]}, "kinds: expected some of image, index, artifact"),
        ({"trigger": "schedule", "schedule": "every day"}, "schedule: a cron expression"),
        ({"trigger": "event", "direction": "pull"}, "hears no events"),
        ({"remote": "nowhere"}, "has no remote named 'nowhere'"),
        ({"destination": "Not A Path"}, "destination: a repository path"),
        ({"blobs_at_once": 0}, "blobs_at_once"),
    ],
)
async def test_bad_rules_are_refused_with_the_reason(
    root: httpx.AsyncClient, distribution: Distribution, body: dict[str, Any], words: str
) -> None:
    await _remote(root, "dist", distribution.url)
    base = {"name": "r", "direction": "push", "remote": "dist"}
    r = await root.post("/api/v1/replication/rules", json={**base, **body})
    assert words in assert_error(r, 400, "INVALID")["message"]


async def test_rules_are_managed_and_one_run_at_a_time(
    root: httpx.AsyncClient, registry: Registry, distribution: Distribution
) -> None:
    await _remote(root, "dist", distribution.url)
    await _rule(
        root,
        name="nightly",
        direction="push",
        remote="dist",
        trigger="schedule",
        schedule="0 3 * * *",
    )
    got = (await root.get("/api/v1/replication/rules/nightly")).json()
    assert got["schedule"] == "0 3 * * *" and got["next_run_at"].endswith("03:00:00Z")
    r = await root.post(
        "/api/v1/replication/rules", json={"name": "nightly", "direction": "push", "remote": "dist"}
    )
    assert_error(r, 409, "CONFLICT")
    r = await root.patch(
        "/api/v1/replication/rules/nightly", json={"tags": ["v*"], "enabled": False}
    )
    assert r.status_code == 200 and r.json()["tags"] == ["v*"] and not r.json()["enabled"]
    first = await root.post("/api/v1/replication/rules/nightly/run")
    assert first.status_code == 202
    r = await root.post("/api/v1/replication/rules/nightly/run")
    assert f"run {first.json()['run']} going on" in assert_error(r, 409, "CONFLICT")["message"]
    await registry.replicator.drain()
    # The remote is in use: it stays until its rules go.
    r = await root.delete("/api/v1/remotes/dist")
    assert "used by the replication rules nightly" in assert_error(r, 409, "CONFLICT")["message"]
    assert (await root.delete("/api/v1/replication/rules/nightly")).status_code == 204
    assert_error(await root.get("/api/v1/replication/rules/nightly"), 404, "NOT_FOUND")
    assert_error(
        await root.get(f"/api/v1/replication/runs/{first.json()['run']}"), 404, "NOT_FOUND"
    )
    assert (await root.delete("/api/v1/remotes/dist")).status_code == 204
    events = (await root.get("/api/v1/audit", params={"action": "replication."})).json()
    assert {e["action"] for e in events["events"]} >= {
        "replication.rule.create",
        "replication.rule.update",
        "replication.rule.delete",
        "replication.run",
    }


async def test_a_signed_only_rule_copies_what_a_trusted_key_signed_both_ways(
    root: httpx.AsyncClient, registry: Registry, distribution: Distribution, dist: httpx.AsyncClient
) -> None:
    """Push: the source namespace's keys decide; pull: the destination's, from the
    cosign signatures at the remote (Distribution: the `.sig` tags)."""
    ours, theirs = Signer(), Signer()
    r = await root.post(
        "/api/v1/namespaces/team/trust/keys", json={"name": "ours", "pem": ours.pem}
    )
    assert r.status_code == 201, r.text
    signed, _ = await push_image(root, "team/app", "signed", layers=[b"signed"])
    await sign(root, "team/app", signed, ours)
    other, _ = await push_image(root, "team/app", "other", layers=[b"other key"])
    await sign(root, "team/app", other, theirs)
    await push_image(root, "team/app", "unsigned", layers=[b"unsigned"])
    await _remote(root, "dist", distribution.url)
    await _rule(
        root, name="out", direction="push", remote="dist", repositories=["team/app"],
        signed_only=True,
    )  # fmt: skip
    run = await _run(root, registry, "out")
    assert run["state"] == "succeeded" and run["items"]["copied"] == 1, run
    reasons = {i["reference"]: i["error"] for i in await _items(root, run["id"])}
    refused = "no key that namespace 'team' trusts signed it at the source"
    assert refused in reasons["other"] and refused in reasons["unsigned"]
    tags = (await dist.get("/v2/team/app/tags/list")).json()["tags"]
    assert sorted(tags) == sorted(["signed", signature_tag(signed)])

    # Back from Distribution into team, with an unsigned image pushed there directly.
    await _push_to_distribution(dist, "team/app", "extra", [b"pushed to the remote"])
    await _rule(
        root, name="back", direction="pull", remote="dist", repositories=["team/app"],
        destination="team/back", signed_only=True,
    )  # fmt: skip
    run = await _run(root, registry, "back")
    items = {i["reference"]: i for i in await _items(root, run["id"])}
    assert items["signed"]["state"] == "copied" and items["extra"]["state"] == "skipped"
    assert refused in items["extra"]["error"]
    back = (await root.get("/v2/team/back/team/app/tags/list")).json()["tags"]
    assert sorted(back) == sorted(["signed", signature_tag(signed)])
    # The rule says so in the API.
    rule = (await root.get("/api/v1/replication/rules/back")).json()
    assert rule["signed_only"] is True
