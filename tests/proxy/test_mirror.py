"""The pull-through mirror, in process, against a real upstream: `registry serve` with token
auth on (so every fetch does the anonymous token dance) and a public `library` namespace,
reached directly or through nginx, which can be made to answer 429.

Each test runs on SQLite and PostgreSQL, with the filesystem and the S3 store. Requests
that reach the upstream are counted in its access log."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from typing import Any

import httpx
import pytest

from registry.config import UpstreamSettings
from registry.mediatypes import OCI_MANIFEST
from registry.proxy import fetches
from registry.proxy.upstream import hosts_of
from tests.helpers import TokenAuth, assert_error, basic, push_blob, scraped, sha256
from tests.peers.nginx import RATELIMIT_LIMIT, RATELIMIT_REMAINING, RETRY_AFTER, Nginx
from tests.peers.tools import free_port, logged
from tests.proxy.conftest import (
    MIRROR_ADMIN_PASSWORD,
    MirrorFactory,
    Upstream,
    blob_digest,
    client_of,
    push_upstream,
    unique,
)

pytestmark = pytest.mark.anyio


async def test_manifest_by_tag_is_fetched_once_then_served_from_the_cache(
    upstream: Upstream, mirror: httpx.AsyncClient
) -> None:
    repo = unique("app")
    digest, body = await push_upstream(upstream, repo, "v1", [b"one layer"])

    r = await mirror.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    assert r.content == body
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["content-type"] == OCI_MANIFEST
    fetched = upstream.requests("GET", f"/v2/{repo}/manifests/{digest}")
    assert fetched == 1
    # The fetch is an event (webhooks may want `mirror`), and a pull is not a push.
    r = await mirror.get("/api/v1/audit", params={"namespace": "library"})
    assert [(e["action"], e["target"]["tag"]) for e in r.json()["events"]] == [("mirror", "v1")]
    assert r.json()["events"][0]["target"]["digest"] == digest

    # Fresh: no request reaches the upstream, by tag or by digest, GET or HEAD.
    heads = upstream.requests("HEAD", f"/v2/{repo}/manifests/v1")
    for method, reference in (("GET", "v1"), ("HEAD", "v1"), ("GET", digest)):
        r = await mirror.request(method, f"/v2/{repo}/manifests/{reference}")
        assert r.status_code == 200
        assert r.headers["docker-content-digest"] == digest
    assert upstream.requests("HEAD", f"/v2/{repo}/manifests/v1") == heads
    assert upstream.requests("GET", f"/v2/{repo}/manifests/{digest}") == fetched

    # Cached repositories and tags are listed like any other.
    r = await mirror.get(f"/v2/{repo}/tags/list")
    assert r.json() == {"name": repo, "tags": ["v1"]}
    assert repo in (await mirror.get("/v2/_catalog")).json()["repositories"]


async def test_manifest_by_digest_is_verified_and_kept(
    upstream: Upstream, mirror: httpx.AsyncClient
) -> None:
    repo = unique("bydigest")
    digest, body = await push_upstream(upstream, repo, "v1", [b"digest layer"])
    r = await mirror.get(f"/v2/{repo}/manifests/{digest}")
    assert r.status_code == 200
    assert r.content == body
    # Cached by digest, not tagged: the tag stays unknown until asked for.
    assert (await mirror.get(f"/v2/{repo}/tags/list")).json()["tags"] == []
    r = await mirror.get(f"/v2/{repo}/manifests/{sha256(b'nothing')}")
    assert_error(r, 404, "MANIFEST_UNKNOWN")
    r = await mirror.get(f"/v2/{repo}/manifests/nosuchtag")
    assert_error(r, 404, "MANIFEST_UNKNOWN")
    r = await mirror.get(f"/v2/{unique('absent')}/manifests/latest")
    assert_error(r, 404, "MANIFEST_UNKNOWN")


async def test_a_stale_tag_is_revalidated_with_head_and_refetched_when_moved(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    repo = unique("moving")
    first, _ = await push_upstream(upstream, repo, "latest", [b"first"])
    async with client_of(make_mirror(mirror_tag_ttl_seconds="1")) as mirror:
        assert (await mirror.get(f"/v2/{repo}/manifests/latest")).headers[
            "docker-content-digest"
        ] == first
        second, body = await push_upstream(upstream, repo, "latest", [b"second"])
        # Within the TTL the cache answers, with the old digest.
        r = await mirror.get(f"/v2/{repo}/manifests/latest")
        assert r.headers["docker-content-digest"] == first
        await asyncio.sleep(1.1)
        r = await mirror.get(f"/v2/{repo}/manifests/latest")
        assert r.headers["docker-content-digest"] == second
        assert r.content == body
        # Stale again but unchanged: one HEAD, no GET.
        await asyncio.sleep(1.1)
        heads = upstream.requests("HEAD", f"/v2/{repo}/manifests/latest")
        gets = upstream.requests("GET", f"/v2/{repo}/manifests/{second}")
        r = await mirror.get(f"/v2/{repo}/manifests/latest")
        assert r.headers["docker-content-digest"] == second
        assert upstream.requests("HEAD", f"/v2/{repo}/manifests/latest") == heads + 1
        assert upstream.requests("GET", f"/v2/{repo}/manifests/{second}") == gets

        # Deleted upstream: gone from the cache too once stale.
        async with upstream.client() as client:
            assert (await client.delete(f"/v2/{repo}/manifests/latest")).status_code == 202
        await asyncio.sleep(1.1)
        assert_error(await mirror.get(f"/v2/{repo}/manifests/latest"), 404, "MANIFEST_UNKNOWN")
        assert (await mirror.get(f"/v2/{repo}/tags/list")).json()["tags"] == []


async def test_a_blob_miss_streams_from_the_upstream_and_is_cached(
    upstream: Upstream, mirror: httpx.AsyncClient
) -> None:
    repo = unique("blob")
    layer = bytes(range(256)) * 12_289  # about 3 MiB: several appends, several S3 segments
    await push_upstream(upstream, repo, "v1", [layer])
    digest = sha256(layer)

    r = await mirror.head(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(layer))
    r = await mirror.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == layer
    assert r.headers["docker-content-digest"] == digest
    assert upstream.requests("GET", f"/v2/{repo}/blobs/{digest}") == 1

    # Now a hit: ranges work and the upstream is not asked again.
    r = await mirror.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == layer[10:20]
    assert upstream.requests("GET", f"/v2/{repo}/blobs/{digest}") == 1

    assert_error(await mirror.get(f"/v2/{repo}/blobs/{sha256(b'none')}"), 404, "BLOB_UNKNOWN")
    assert (await mirror.head(f"/v2/{repo}/blobs/{sha256(b'none')}")).status_code == 404


async def test_a_blob_cached_for_one_repository_serves_another_only_if_upstream_has_it(
    upstream: Upstream, mirror: httpx.AsyncClient
) -> None:
    layer = b"shared layer " * 10_000
    digest = sha256(layer)
    first, second, stranger = unique("first"), unique("second"), unique("stranger")
    await push_upstream(upstream, first, "v1", [layer])
    await push_upstream(upstream, second, "v1", [layer])
    await push_upstream(upstream, stranger, "v1", [b"other layer"])
    assert (await mirror.get(f"/v2/{first}/blobs/{digest}")).content == layer

    # The upstream confirms with a HEAD; the bytes come from the cache.
    r = await mirror.head(f"/v2/{second}/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(layer))
    assert upstream.requests("HEAD", f"/v2/{second}/blobs/{digest}") == 1
    r = await mirror.get(f"/v2/{second}/blobs/{digest}")
    assert r.content == layer
    assert upstream.requests("GET", f"/v2/{second}/blobs/{digest}") == 0
    assert upstream.requests("HEAD", f"/v2/{second}/blobs/{digest}") == 1  # now linked

    # A repository the upstream does not give the blob to does not read it here.
    assert_error(await mirror.get(f"/v2/{stranger}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert (await mirror.head(f"/v2/{stranger}/blobs/{digest}")).status_code == 404


async def test_ten_clients_on_two_replicas_cause_one_upstream_fetch(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    repo = unique("crowd")
    layer = hashlib.sha512(repo.encode()).digest() * 131_072  # 8 MiB
    await push_upstream(upstream, repo, "v1", [layer])
    digest = sha256(layer)
    replicas = [client_of(make_mirror()), client_of(make_mirror())]

    async def pull(i: int) -> bytes:
        return (await replicas[i % 2].get(f"/v2/{repo}/blobs/{digest}")).content

    bodies = await asyncio.gather(*(pull(i) for i in range(10)))
    assert all(body == layer for body in bodies)
    assert upstream.requests("GET", f"/v2/{repo}/blobs/{digest}") == 1
    for client in replicas:
        await client.aclose()


async def test_a_corrupt_upstream_blob_gives_an_error_and_caches_nothing(
    upstream: Upstream, make_mirror: MirrorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    repo = unique("corrupt")
    layer = b"good bytes " * 100_000
    await push_upstream(upstream, repo, "v1", [layer])
    digest = sha256(layer)
    stored = upstream.data_dir / "storage/blobs/sha256" / digest[7:9] / digest[7:]
    stored.write_bytes(b"evil bytes " * 100_000)  # same size, other content

    app = make_mirror()
    store = app.state.registry.store
    async with client_of(app) as mirror:
        # The response has begun (the first client does not wait for the whole blob), so
        # the error can only break it off: in process, the exception reaches the caller.
        with pytest.raises(Exception):  # noqa: B017
            await mirror.get(f"/v2/{repo}/blobs/{digest}")
        assert f"upstream sent bytes with digest {sha256(b'evil bytes ' * 100_000)}" in caplog.text
        # Nothing kept: the next request fetches again (and fails again).
        assert await store.stat(blob_digest(layer)) is None
        assert (await mirror.head(f"/v2/{repo}/blobs/{digest}")).status_code == 200
        with pytest.raises(Exception):  # noqa: B017
            await mirror.get(f"/v2/{repo}/blobs/{digest}")
        assert upstream.requests("GET", f"/v2/{repo}/blobs/{digest}") == 2
        assert await store.stat(blob_digest(layer)) is None
        metrics = (await mirror.get("/api/v1/mirror")).json()["counters"]
        assert metrics["upstream_errors"] >= 1
    stored.write_bytes(layer)


async def test_an_unreachable_upstream_serves_cached_tags_and_errors_otherwise(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    repo = unique("offline")
    digest, _ = await push_upstream(upstream, repo, "v1", [b"offline layer"])
    async with client_of(make_mirror(mirror_tag_ttl_seconds="0")) as online:
        assert (await online.get(f"/v2/{repo}/manifests/v1")).status_code == 200
        assert (await online.get(f"/v2/{repo}/blobs/{sha256(b'offline layer')}")).status_code == 200
    # The same cache, now with an upstream that does not answer.
    dead = f"http://127.0.0.1:{free_port()}"
    async with client_of(make_mirror(mirror_upstreams=dead, mirror_tag_ttl_seconds="0")) as m:
        r = await m.get(f"/v2/{repo}/manifests/v1")
        assert r.status_code == 200
        assert r.headers["docker-content-digest"] == digest
        r = await m.get(f"/v2/{repo}/blobs/{sha256(b'offline layer')}")
        assert r.content == b"offline layer"
        # Not cached: a clear error.
        r = await m.get(f"/v2/{repo}/manifests/v2")
        error = assert_error(r, 503, "UNAVAILABLE")
        assert "unreachable" in error["message"]
        assert_error(await m.get(f"/v2/{repo}/blobs/{sha256(b'x')}"), 503, "UNAVAILABLE")
        counters = (await m.get("/api/v1/mirror")).json()["counters"]
        assert counters["offline_served"] == 1
    async with client_of(
        make_mirror(
            mirror_upstreams=dead, mirror_tag_ttl_seconds="0", mirror_offline_fallback="false"
        )
    ) as strict:
        assert_error(await strict.get(f"/v2/{repo}/manifests/v1"), 503, "UNAVAILABLE")


async def test_a_rate_limited_upstream_is_left_alone_until_retry_after(
    upstream: Upstream, nginx: Nginx, make_mirror: MirrorFactory
) -> None:
    repo = unique("limited")
    layer = b"limited layer"
    digest, _ = await push_upstream(upstream, repo, "v1", [layer])
    app = make_mirror(mirror_upstreams=nginx.url, mirror_tag_ttl_seconds="0")
    async with client_of(app) as mirror:

        async def state() -> dict[str, Any]:
            found: dict[str, Any] = (await mirror.get("/api/v1/mirror")).json()["upstreams"][0]
            return found

        assert (await mirror.get(f"/v2/{repo}/manifests/v1")).status_code == 200
        # What the upstream announced of its limit is shown, from whichever process.
        shown = await state()
        assert (shown["ratelimit_limit"], shown["ratelimit_remaining"]) == (
            RATELIMIT_LIMIT,
            RATELIMIT_REMAINING,
        )
        assert shown["backoff_until"] is None
        metrics = scraped((await mirror.get("/metrics")).text)
        assert metrics['registry_mirror_upstream_ratelimit_remaining{prefix=""}'] == 76
        before = nginx.answered(429)  # by the other tests' mirrors
        nginx.limit()
        try:
            # The stale tag's HEAD gets the 429: the cached copy is served.
            r = await mirror.get(f"/v2/{repo}/manifests/v1")
            assert r.status_code == 200
            assert r.headers["docker-content-digest"] == digest
            refused = logged(nginx.answered, 429, least=before + 1)
            assert refused == before + 1
            # Then nothing reaches the upstream until its Retry-After is up: the cache
            # serves, and what it lacks is refused with the time left.
            r = await mirror.get(f"/v2/{repo}/manifests/v1")
            assert r.headers["docker-content-digest"] == digest
            r = await mirror.get(f"/v2/{repo}/manifests/other")
            error = assert_error(r, 429, "TOOMANYREQUESTS")
            assert 1 <= int(r.headers["retry-after"]) <= int(RETRY_AFTER)
            assert "asked again in" in error["message"]
            r = await mirror.get(f"/v2/{repo}/blobs/{sha256(layer)}")
            assert_error(r, 429, "TOOMANYREQUESTS")
            assert nginx.answered(429) == refused
            assert (await state())["backoff_until"] is not None
            counters = (await mirror.get("/api/v1/mirror")).json()["counters"]
            assert (counters["backoff_refusals"], counters["offline_served"]) == (2, 2)
        finally:
            nginx.unlimit()
        await asyncio.sleep(int(RETRY_AFTER) + 0.2)
        r = await mirror.get(f"/v2/{repo}/blobs/{sha256(layer)}")
        assert r.content == layer
        assert (await state())["backoff_until"] is None


async def test_fifty_pulls_of_a_missing_tag_ask_the_upstream_once(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    repo = unique("missing")
    await push_upstream(upstream, repo, "v1", [b"present layer"])
    app = make_mirror(mirror_negative_ttl_seconds="1")
    async with client_of(app) as mirror:
        answers = await asyncio.gather(
            *(mirror.get(f"/v2/{repo}/manifests/nosuch") for _ in range(50))
        )
        for r in answers:
            assert_error(r, 404, "MANIFEST_UNKNOWN")
        assert logged(upstream.answered, "HEAD", f"/v2/{repo}/manifests/nosuch", 404) == 1
        # Remembered for negative_ttl_seconds: a blob the upstream lacks, too.
        missing = sha256(b"no such blob")
        for _ in range(3):
            assert_error(await mirror.get(f"/v2/{repo}/blobs/{missing}"), 404, "BLOB_UNKNOWN")
            assert (await mirror.head(f"/v2/{repo}/blobs/{missing}")).status_code == 404
        assert logged(upstream.answered, "GET", f"/v2/{repo}/blobs/{missing}", 404) == 1
        assert upstream.answered("HEAD", f"/v2/{repo}/blobs/{missing}", 404) == 0
        counters = (await mirror.get("/api/v1/mirror")).json()["counters"]
        # The 5 above, and those of the 50 that came once the miss was known.
        assert 5 <= counters["negative_hits"] <= 54
        # Then asked again: what was missing may have been pushed since.
        await asyncio.sleep(1.1)
        assert_error(await mirror.get(f"/v2/{repo}/manifests/nosuch"), 404, "MANIFEST_UNKNOWN")
        assert logged(upstream.answered, "HEAD", f"/v2/{repo}/manifests/nosuch", 404, least=2) == 2
        await push_upstream(upstream, repo, "late", [b"late layer"])
        assert (await mirror.get(f"/v2/{repo}/manifests/late")).status_code == 200


async def test_pushes_are_refused_by_a_mirror(mirror: httpx.AsyncClient) -> None:
    repo = unique("push")
    for method, path in (
        ("POST", f"/v2/{repo}/blobs/uploads/"),
        ("PUT", f"/v2/{repo}/manifests/v1"),
        ("DELETE", f"/v2/{repo}/manifests/v1"),
        ("DELETE", f"/v2/{repo}/blobs/{sha256(b'x')}"),
        ("PATCH", f"/v2/{repo}/blobs/uploads/00000000-0000-0000-0000-000000000000"),
    ):
        r = await mirror.request(method, path, content=b"{}")
        error = assert_error(r, 405, "UNSUPPORTED")
        assert "pushes and deletes are refused" in error["message"]


async def test_hosted_namespaces_beside_the_mirror(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    repo = unique("beside")
    digest, _ = await push_upstream(upstream, repo, "v1", [b"beside layer"])
    app = make_mirror(
        mirror_mirror_only="false",
        auth_enabled="true",
        admin_password=MIRROR_ADMIN_PASSWORD,
        mirror_open="true",
    )
    accounts = app.state.registry.auth.accounts
    await accounts.ensure_admin(MIRROR_ADMIN_PASSWORD)
    await accounts.add_user("dev", "dev-password-1")
    await accounts.add_namespace("team", public=False, owner="dev")
    async with client_of(app, headers=basic("dev", "dev-password-1")) as dev:
        await push_blob(dev, "team/app", b"hosted")
        assert (await dev.get(f"/v2/{repo}/manifests/v1")).status_code == 200
        assert_error(await dev.post(f"/v2/{repo}/blobs/uploads/"), 405, "UNSUPPORTED")
        catalog = (await dev.get("/v2/_catalog")).json()["repositories"]
        assert "team/app" in catalog
        assert repo in catalog
    async with client_of(app, auth=TokenAuth()) as anonymous:
        # An open mirror: anonymous pulls of mirrored repositories, not of team's.
        assert (await anonymous.get(f"/v2/{repo}/manifests/{digest}")).status_code == 200
        r = await anonymous.get("/v2/team/app/tags/list")
        assert r.status_code == 401


async def test_our_auth_applies_to_a_closed_mirror(
    upstream: Upstream, make_mirror: MirrorFactory
) -> None:
    repo = unique("closed")
    digest, _ = await push_upstream(upstream, repo, "v1", [b"closed layer"])
    app = make_mirror(auth_enabled="true", admin_password=MIRROR_ADMIN_PASSWORD)
    accounts = app.state.registry.auth.accounts
    await accounts.ensure_admin(MIRROR_ADMIN_PASSWORD)
    await accounts.add_user("reader", "reader-password-1")
    async with client_of(app, auth=TokenAuth()) as anonymous:
        # Even with the token dance, an anonymous caller gets nothing of a closed mirror.
        r = await anonymous.get(f"/v2/{repo}/manifests/v1")
        assert r.status_code == 401
        assert f'scope="repository:{repo}:pull"' in r.headers["www-authenticate"]
        assert (await anonymous.get("/metrics")).status_code == 401
    async with client_of(app, headers=basic("reader", "reader-password-1")) as reader:
        r = await reader.get(f"/v2/{repo}/manifests/v1")
        assert r.headers["docker-content-digest"] == digest
        assert repo in (await reader.get("/v2/_catalog")).json()["repositories"]
        assert_error(await reader.get("/api/v1/mirror"), 403, "DENIED")
        # Pull only, even for a logged-in user.
        assert_error(await reader.post(f"/v2/{repo}/blobs/uploads/"), 405, "UNSUPPORTED")
    async with client_of(app, headers=basic("admin", MIRROR_ADMIN_PASSWORD)) as admin:
        text = (await admin.get("/metrics")).text
        assert "# TYPE registry_mirror_manifest_misses_total counter" in text
        assert scraped(text)["registry_mirror_manifest_misses_total"] == 1


async def test_upstreams_chosen_by_prefix_and_counted(
    upstream: Upstream, nginx: Nginx, make_mirror: MirrorFactory
) -> None:
    repo = unique("prefixed")
    layer = b"prefixed layer"
    digest, body = await push_upstream(upstream, repo, "v1", [layer])
    upstreams = f'[{{url: "{nginx.url}", prefix: "via-nginx"}}, {{url: "{upstream.url}"}}]'
    async with client_of(make_mirror(mirror_upstreams=upstreams)) as mirror:
        r = await mirror.get(f"/v2/via-nginx/{repo}/manifests/v1")
        assert r.content == body
        r = await mirror.get(f"/v2/via-nginx/{repo}/blobs/{sha256(layer)}")
        assert r.content == layer
        assert f"/v2/{repo}/manifests/{digest}" in nginx.access_log.read_text()
        # The same image without the prefix comes from the other upstream, directly.
        assert (await mirror.get(f"/v2/{repo}/manifests/v1")).content == body
        status = (await mirror.get("/api/v1/mirror")).json()
        assert [u["prefix"] for u in status["upstreams"]] == ["via-nginx", ""]
        assert status["counters"]["manifest_misses"] == 2
        assert status["counters"]["blob_misses"] == 1
        assert status["counters"]["upstream_bytes"] == len(layer)
        assert status["stored"]["repositories"] == 2
        text = (await mirror.get("/metrics")).text
        assert scraped(text)["registry_mirror_blob_misses_total"] == 1


async def test_containerds_ns_parameter_picks_the_upstream_and_keeps_caches_apart(
    upstream: Upstream, nginx: Nginx, make_mirror: MirrorFactory
) -> None:
    """hosts.toml's mirror requests: the repository's name as on its own registry, and
    `?ns=` that registry's host. Each upstream's cache is its own repository here."""
    repo = unique("ns")
    layer = b"ns layer"
    digest, body = await push_upstream(upstream, repo, "v1", [layer])
    upstreams = f'[{{url: "{nginx.url}", prefix: "via-nginx"}}, {{url: "{upstream.url}"}}]'
    via_nginx = {"ns": f"127.0.0.1:{nginx.port}"}
    direct = {"ns": upstream.host}
    async with client_of(make_mirror(mirror_upstreams=upstreams)) as mirror:
        r = await mirror.get(f"/v2/{repo}/manifests/v1", params=via_nginx)
        assert r.status_code == 200 and r.content == body
        assert f"/v2/{repo}/manifests/{digest}" in nginx.access_log.read_text()
        r = await mirror.get(f"/v2/{repo}/blobs/{sha256(layer)}", params=via_nginx)
        assert r.content == layer
        r = await mirror.get(f"/v2/{repo}/tags/list", params=via_nginx)
        assert r.json() == {"name": f"via-nginx/{repo}", "tags": ["v1"]}
        r = await mirror.get(f"/v2/{repo}/referrers/{digest}", params=via_nginx)
        assert r.status_code == 200 and r.json()["manifests"] == []
        # The other upstream's host: fetched from it, into a cache of its own.
        fetched = upstream.requests("GET", f"/v2/{repo}/manifests/{digest}")
        r = await mirror.get(f"/v2/{repo}/manifests/v1", params=direct)
        assert r.content == body
        assert upstream.requests("GET", f"/v2/{repo}/manifests/{digest}") == fetched + 1
        catalog = (await mirror.get("/v2/_catalog", params={"ns": upstream.host})).json()
        assert {repo, f"via-nginx/{repo}"} <= set(catalog["repositories"])
        # Without ns, names route by prefix as before.
        assert (await mirror.get(f"/v2/via-nginx/{repo}/manifests/v1")).content == body


async def test_an_unknown_ns_is_refused_without_dialling_it(make_mirror: MirrorFactory) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        stranger = f"127.0.0.1:{listener.getsockname()[1]}"
        async with client_of(make_mirror()) as mirror:
            for path in (
                "/v2/library/app/manifests/v1",
                "/v2/library/app/blobs/sha256:" + "0" * 64,
            ):
                r = await mirror.get(path, params={"ns": stranger})
                error = assert_error(r, 404, "NAME_UNKNOWN")
                assert error["detail"]["ns"] == stranger
                assert stranger in error["message"] and "mirror.upstreams" in error["message"]
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came


async def test_allow_hosts_lets_https_hosts_in_by_name_and_never_an_address(
    make_mirror: MirrorFactory,
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        stranger = f"127.0.0.1:{listener.getsockname()[1]}"
        app = make_mirror(mirror_allow_hosts="*.invalid, *", mirror_timeout_seconds="5")
        async with client_of(app) as mirror:
            # A host a pattern matches is dialled over HTTPS, into a cache of its own
            # name, by ns or by prefix (.invalid never resolves: the error says so).
            for path, params in (
                ("/v2/org/app/manifests/v1", {"ns": "registry.nosuch.invalid"}),
                ("/v2/registry.nosuch.invalid/org/app/manifests/v1", {}),
            ):
                r = await mirror.get(path, params=params)
                error = assert_error(r, 503, "UNAVAILABLE")
                assert "https://registry.nosuch.invalid unreachable" in error["message"]
            status = (await mirror.get("/api/v1/mirror")).json()
            assert status["allow_hosts"] == ["*.invalid", "*"]
            assert [(u["prefix"], u["url"]) for u in status["upstreams"]][-2:] == [
                ("*.invalid", "https://*.invalid"),
                ("*", "https://*"),
            ]
            # Never an address, a port or a name without a dot, whatever the patterns.
            for ns in (stranger, "127.0.0.1", "10.0.0.5", "localhost", "a.invalid:8443"):
                r = await mirror.get("/v2/org/app/manifests/v1", params={"ns": ns})
                error = assert_error(r, 404, "NAME_UNKNOWN")
                assert "hosts matching *.invalid, *" in error["message"]
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came
    async with client_of(make_mirror(mirror_allow_hosts="*.invalid")) as mirror:
        r = await mirror.get("/v2/org/app/manifests/v1", params={"ns": "registry.example.com"})
        assert_error(r, 404, "NAME_UNKNOWN")


def test_docker_hubs_aliases_all_name_it() -> None:
    hosts = hosts_of(
        [
            UpstreamSettings(url="https://registry-1.docker.io"),
            UpstreamSettings(url="https://user@ghcr.io", prefix="ghcr.io"),
            UpstreamSettings(url="http://10.0.0.5:5000", prefix="local"),
        ]
    )
    assert hosts == {
        "docker.io": "",
        "index.docker.io": "",
        "registry-1.docker.io": "",
        "ghcr.io": "ghcr.io",
        "10.0.0.5:5000": "local",
    }


async def test_a_dead_fetchers_claim_is_taken_over(
    upstream: Upstream, make_mirror: MirrorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = unique("takeover")
    layer = b"orphaned fetch"
    await push_upstream(upstream, repo, "v1", [layer])
    app = make_mirror()
    registry = app.state.registry
    # A replica claimed the blob and died: its heartbeat stops.
    from registry.metadata import mirror as mq
    from registry.metadata.models import now

    async with registry.db.write() as conn:
        await mq.claim_fetch(conn, sha256(layer), "dead-upload", now())
    monkeypatch.setattr(fetches, "STALE_SECONDS", 0)
    async with client_of(app) as mirror:
        r = await mirror.get(f"/v2/{repo}/blobs/{sha256(layer)}")
        assert r.content == layer
