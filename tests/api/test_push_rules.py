"""The rules of a manifest push, as the rows it leaves show them, on both databases: on
SQLite a program of statements runs them (services/manifests.py), on PostgreSQL one call
of the function migration 0028 installs (metadata/push.py). Each test runs on both, so
the two cannot drift: what is stored, linked and referenced, which events are recorded
in which order, a namespace made by its first push, what is refused and that a refusal
leaves nothing behind, and immutable tags when the rules change between pushes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from registry.auth.accounts import Accounts
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.metadata.events import BLOB_TYPE
from registry.metadata.models import (
    Event,
    Manifest,
    ManifestReference,
    Member,
    Namespace,
    Repository,
    Tag,
    User,
)
from tests.api.conftest import PASSWORD
from tests.api.stored import linked, rows
from tests.helpers import (
    assert_error,
    basic,
    descriptor,
    index_of,
    push_blob,
    push_image,
    sha256,
)

pytestmark = pytest.mark.anyio


async def tags(app: Starlette, repository: str) -> dict[str, str]:
    found = await rows(
        app,
        select(Tag.name, Manifest.digest)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .join(Repository, Repository.id == Tag.repository_id)
        .where(Repository.name == repository),
    )
    return dict(found)  # type: ignore[arg-type]


async def manifests(app: Starlette, repository: str) -> dict[str, bool]:
    """Digest -> whether it is untagged, of the repository's manifests."""
    found = await rows(
        app,
        select(Manifest.digest, Manifest.untagged_at.is_not(None))
        .join(Repository, Repository.id == Manifest.repository_id)
        .where(Repository.name == repository),
    )
    return dict(found)  # type: ignore[arg-type]


async def references(app: Starlette, digest: str) -> list[tuple[str, str]]:
    found = await rows(
        app,
        select(ManifestReference.digest, ManifestReference.kind)
        .join(Manifest, Manifest.id == ManifestReference.manifest_id)
        .where(Manifest.digest == digest)
        .order_by(ManifestReference.digest),
    )
    return found  # type: ignore[return-value]


async def events(app: Starlette, *actions: str) -> list[dict[str, Any]]:
    """Events of these actions, in order; blobs' pushes left out."""
    found = await rows(app, select(Event.body).where(Event.action.in_(actions)).order_by(Event.id))
    bodies = [json.loads(body) for (body,) in found]
    return [e for e in bodies if e.get("target", {}).get("mediaType") != BLOB_TYPE]


async def put(
    client: httpx.AsyncClient,
    repo: str,
    reference: str,
    body: bytes,
    media_type: str = OCI_MANIFEST,
) -> httpx.Response:
    return await client.put(
        f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
    )


async def set_rules(client: httpx.AsyncClient, namespace: str, rules: list[str]) -> None:
    r = await client.patch(f"/api/v1/namespaces/{namespace}/policy", json={"immutable_tags": rules})
    assert r.status_code == 200, r.text


async def test_a_push_stores_links_and_references(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    layers = [b"layer b", b"layer a", b"layer b"]  # listed twice: referenced once
    digest, body = await push_image(client, "team/app", "v1", layers=layers)
    assert await manifests(app, "team/app") == {digest: False}
    assert await tags(app, "team/app") == {"v1": digest}
    assert await linked(app, "team/app", digest)  # its own bytes, as a blob of the repository
    config = json.loads(body)["config"]["digest"]
    assert await references(app, digest) == sorted(
        [(config, "blob"), (sha256(b"layer a"), "blob"), (sha256(b"layer b"), "blob")]
    )
    [event] = await events(app, "push")
    assert event["target"]["digest"] == digest and event["target"]["tag"] == "v1"
    assert event["target"]["repository"] == "team/app"

    # By digest, with no tag: stored untagged; the same again changes nothing.
    _, other = await push_image(client, "team/app", "scratch", layers=[b"other"])
    await client.delete("/v2/team/app/manifests/scratch")
    assert (await put(client, "team/app", sha256(other), other)).status_code == 201
    assert (await manifests(app, "team/app"))[sha256(other)] is True
    # Tagged again: no longer untagged, and its references are not written twice.
    assert (await put(client, "team/app", "again", other)).status_code == 201
    assert (await manifests(app, "team/app"))[sha256(other)] is False
    assert len(await references(app, sha256(other))) == 2


async def test_a_digest_push_with_tags_and_repeated_tags(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    _, body = await push_image(client, "team/app", "base")
    digest = sha256(body)
    r = await client.put(
        f"/v2/team/app/manifests/{digest}",
        params=[("tag", "a"), ("tag", "b"), ("tag", "a")],
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    assert await tags(app, "team/app") == {"base": digest, "a": digest, "b": digest}
    pushed = [e["target"].get("tag") for e in await events(app, "push")]
    assert pushed == ["base", "a", "b"]

    wrong = "sha256:" + "0" * 64
    assert_error(await put(client, "team/app", wrong, body), 400, "DIGEST_INVALID")
    assert wrong not in await manifests(app, "team/app")


async def test_moving_a_tag_records_where_it_pointed(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    first, _ = await push_image(client, "team/app", "v1", layers=[b"one"])
    _, body = await push_image(client, "team/app", "v2", layers=[b"two"])
    second = sha256(body)
    r = await client.put(
        f"/v2/team/app/manifests/{second}",
        params=[("tag", "v1"), ("tag", "new")],
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    assert await tags(app, "team/app") == {"v1": second, "v2": second, "new": second}
    assert await manifests(app, "team/app") == {first: True, second: False}
    recorded = [
        (e["action"], e["target"].get("tag"), e["target"].get("previousDigest"))
        for e in await events(app, "push", "tag")
    ]
    assert recorded == [
        ("push", "v1", None),
        ("push", "v2", None),
        ("push", "v1", None),
        ("tag", "v1", first),
        ("push", "new", None),
    ]
    moved = (await events(app, "tag"))[0]
    assert moved["target"]["digest"] == second and moved["target"]["repository"] == "team/app"


async def test_what_a_manifest_lists_must_be_in_the_repository(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    config = await push_blob(client, "team/app", b"{}")
    here = await push_blob(client, "team/app", b"here")
    elsewhere = await push_blob(client, "other/app", b"elsewhere")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": 2,
        },
        "layers": [
            descriptor(b"here", "application/vnd.oci.image.layer.v1.tar"),
            descriptor(b"elsewhere", "application/vnd.oci.image.layer.v1.tar"),
            descriptor(b"nowhere", "application/vnd.oci.image.layer.v1.tar"),
        ],
    }
    body = json.dumps(manifest).encode()
    error = assert_error(await put(client, "team/app", "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    first = min(elsewhere, sha256(b"nowhere"))  # the first in byte order
    assert error["detail"] == {"digest": first}
    assert "which is not in repository team/app" in error["message"]
    # Nothing stays: no manifest, tag, event or link of its bytes.
    assert sha256(body) not in await manifests(app, "team/app")
    assert await tags(app, "team/app") == {}
    assert await events(app, "push", "tag") == []
    assert not await linked(app, "team/app", sha256(body))
    assert await linked(app, "team/app", here)

    # An index: its children must be manifests of the repository, blobs are not enough.
    child, child_body = await push_image(client, "team/app", "child")
    missing = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "x": 1}).encode()
    index = index_of([(OCI_MANIFEST, child_body, None), (OCI_MANIFEST, missing, None)])
    error = assert_error(
        await put(client, "team/app", "multi", index, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN"
    )
    assert error["detail"] == {"digest": sha256(missing)}
    assert sha256(index) not in await manifests(app, "team/app")
    fine = index_of([(OCI_MANIFEST, child_body, None)])
    assert (await put(client, "team/app", "multi", fine, OCI_INDEX)).status_code == 201
    assert await references(app, sha256(fine)) == [(child, "manifest")]


async def test_immutable_rules_hold_as_they_change_between_pushes(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    """A process remembers the rules its pushes last met (PostgreSQL's push matches the
    tags against them before its call): rules set or lifted since are still kept."""
    first, body = await push_image(client, "team/app", "v1", layers=[b"one"])
    _, other = await push_image(client, "team/app", "scratch", layers=[b"two"])
    await set_rules(client, "team", ["v*"])
    error = assert_error(await put(client, "team/app", "v1", other), 409, "DENIED")
    assert error["detail"] == {"tag": "v1", "rule": "v*"}
    assert await tags(app, "team/app") == {"v1": first, "scratch": sha256(other)}
    # The refusal left no event.
    assert [e["target"].get("tag") for e in await events(app, "push")] == ["v1", "scratch"]
    # A new immutable tag is set, once; the same manifest again is no move.
    assert (await put(client, "team/app", "v2", other)).status_code == 201
    assert (await put(client, "team/app", "v2", other)).status_code == 201
    assert_error(await put(client, "team/app", "v2", body), 409, "DENIED")

    await set_rules(client, "team", ["release-*"])
    assert (await put(client, "team/app", "v1", other)).status_code == 201
    assert (await put(client, "team/app", "release-1", body)).status_code == 201
    error = assert_error(await put(client, "team/app", "release-1", other), 409, "DENIED")
    assert error["detail"] == {"tag": "release-1", "rule": "release-*"}
    await set_rules(client, "team", [])
    assert (await put(client, "team/app", "release-1", other)).status_code == 201
    assert await tags(app, "team/app") == {
        "v1": sha256(other),
        "v2": sha256(other),
        "scratch": sha256(other),
        "release-1": sha256(other),
    }


async def test_rules_set_while_pushes_race(client: httpx.AsyncClient, app: Starlette) -> None:
    """Pushes moving tags while the rule that covers them is set: each push either
    moved its tag before the rule, or was refused; none moved a tag the rule covered
    once it was set."""
    _, a = await push_image(client, "team/app", "a", layers=[b"a"])
    _, b = await push_image(client, "team/app", "b", layers=[b"b"])
    await asyncio.gather(*(put(client, "team/app", f"v{i}", a) for i in range(8)))

    async def moves() -> list[int]:
        return [(await put(client, "team/app", f"v{i}", b)).status_code for i in range(8)]

    statuses, _ = await asyncio.gather(moves(), set_rules(client, "team", ["v*"]))
    assert set(statuses) <= {201, 409}
    after = await tags(app, "team/app")
    # Once set, every later move was refused: the tags still on `a` are those after it.
    assert all(
        after[f"v{i}"] == sha256(b if status == 201 else a) for i, status in enumerate(statuses)
    )
    for i in range(8):
        assert_error(
            await put(client, "team/app", f"v{i}", a if after[f"v{i}"] != sha256(a) else b),
            409,
            "DENIED",
        )


@pytest.fixture
async def root(accounts: Accounts, anon: httpx.AsyncClient) -> httpx.AsyncClient:
    await accounts.add_user("root", PASSWORD, admin=True)
    anon.headers.update(basic("root", PASSWORD))
    return anon


async def test_a_first_push_makes_its_namespace_once(
    root: httpx.AsyncClient, auth_app: Starlette
) -> None:
    await push_image(root, "tools/one", "v1")
    await push_image(root, "tools/two", "v1")
    owners = await rows(
        auth_app,
        select(Namespace.name, User.name, Member.role)
        .join(Member, Member.namespace_id == Namespace.id)
        .join(User, User.id == Member.user_id)
        .where(Namespace.name == "tools"),
    )
    assert owners == [("tools", "root", "owner")]
    [made] = await events(auth_app, "namespace.create")
    assert made["detail"] == {"public": False, "owner": "root", "first_push": "tools/one"}
    assert made["namespace"] == "tools"

    # A refused first push makes no namespace.
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(b"{}", "application/vnd.oci.image.config.v1+json"),
            "layers": [],
        }
    ).encode()
    assert_error(await put(root, "empty/app", "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert await rows(auth_app, select(Namespace.id).where(Namespace.name == "empty")) == []
    assert len(await events(auth_app, "namespace.create")) == 1
