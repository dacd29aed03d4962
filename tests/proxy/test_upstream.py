"""The upstream client against a real registry (ours, in process, with token auth on):
the token dance, token reuse, credentials, digests checked, errors told apart."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import load_settings
from registry.proxy.upstream import (
    BACKOFF_SECONDS,
    MAX_BACKOFF_SECONDS,
    Upstream,
    UpstreamError,
    retry_after_seconds,
)
from tests.helpers import basic, push_image, sha256

pytestmark = pytest.mark.anyio

PASSWORD = "upstream-password"


class Counting(httpx.AsyncBaseTransport):
    """Passes requests to the app, counting them by path."""

    def __init__(self, app: Starlette) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.paths: list[str] = []
        self.fail_with: int | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, headers={"Retry-After": "30"})
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def upstream_app(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Starlette]:
    database = tmp_path / "upstream.db"
    shutil.copy(sqlite_template, database)
    settings = load_settings(
        None,
        {
            "REGISTRY_DATA_DIR": str(tmp_path / "upstream"),
            "REGISTRY_DATABASE_URL": f"sqlite:///{database}",
        },
    )
    app = create_app(settings)
    accounts = app.state.registry.auth.accounts
    await accounts.add_user("owner", PASSWORD)
    await accounts.add_namespace("library", public=True, owner="owner")
    yield app
    await app.state.registry.close()


@pytest.fixture
def transport(upstream_app: Starlette) -> Counting:
    return Counting(upstream_app)


async def _push(app: Starlette, repo: str) -> tuple[str, bytes]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://upstream.test", headers=basic("owner", PASSWORD)
    ) as client:
        return await push_image(client, repo, "v1", layers=[b"layer of " + repo.encode()])


async def test_anonymous_pull_with_the_token_dance(
    upstream_app: Starlette, transport: Counting
) -> None:
    digest, body = await _push(upstream_app, "library/app")
    async with httpx.AsyncClient(transport=transport) as client:
        upstream = Upstream("http://upstream.test", client)
        manifest = await upstream.manifest("library/app", "v1")
        assert manifest is not None
        assert manifest.digest == digest
        assert manifest.content == body
        assert manifest.media_type == "application/vnd.oci.image.manifest.v1+json"
        assert await upstream.manifest_digest("library/app", "v1") == digest
        by_digest = await upstream.manifest("library/app", digest)
        assert by_digest is not None and by_digest.content == body
        layer = sha256(b"layer of library/app")
        async with upstream.blob("library/app", layer) as response:
            assert b"".join([piece async for piece in response.aiter_bytes()]) == (
                b"layer of library/app"
            )
        assert await upstream.manifest("library/app", "v2") is None
    # One token, fetched once and reused for every later request of the same scope.
    assert transport.paths.count("/token") == 1


async def test_credentials_reach_a_private_namespace(
    upstream_app: Starlette, transport: Counting
) -> None:
    digest, _ = await _push(upstream_app, "owner/app")
    async with httpx.AsyncClient(transport=transport) as client:
        anonymous = Upstream("http://upstream.test", client)
        with pytest.raises(UpstreamError) as refused:
            await anonymous.manifest("owner/app", "v1")
        assert refused.value.status == 401
        with_login = Upstream("http://upstream.test", client, "owner", PASSWORD)
        manifest = await with_login.manifest("owner/app", "v1")
        assert manifest is not None and manifest.digest == digest


async def test_errors_keep_the_upstream_status(transport: Counting) -> None:
    transport.fail_with = 429
    async with httpx.AsyncClient(transport=transport) as client:
        upstream = Upstream("http://upstream.test", client)
        with pytest.raises(UpstreamError) as limited:
            await upstream.manifest("library/app", "v1")
    assert limited.value.status == 429
    assert limited.value.retry_after == "30"
    async with httpx.AsyncClient() as client:
        down = Upstream("http://127.0.0.1:9", client)
        with pytest.raises(UpstreamError) as unreachable:
            await down.manifest_digest("library/app", "v1")
    assert unreachable.value.status == 0
    assert "unreachable" in str(unreachable.value)


async def test_a_manifest_that_does_not_match_its_digest_is_refused(
    upstream_app: Starlette,
) -> None:
    await _push(upstream_app, "library/app")

    async def lying(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=b'{"schemaVersion": 2}',
            headers={"Docker-Content-Digest": sha256(b"something else")},
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(lying)) as client:
        upstream = Upstream("http://upstream.test", client)
        with pytest.raises(UpstreamError) as refused:
            await upstream.manifest("library/app", "v1")
    assert refused.value.status == 502
    assert "does not match" in str(refused.value)


def test_docker_hub_official_images_live_under_library() -> None:
    hub = Upstream("https://registry-1.docker.io", httpx.AsyncClient())
    assert hub.remote_name("busybox") == "library/busybox"
    assert hub.remote_name("team/app") == "team/app"
    other = Upstream("https://mirror.example", httpx.AsyncClient())
    assert other.remote_name("busybox") == "busybox"


def test_retry_after_is_read_as_seconds_or_a_date_within_bounds() -> None:
    moment = datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", moment) == 7
    assert retry_after_seconds("Wed, 02 Dec 2026 08:01:30 GMT", moment) == 90
    assert retry_after_seconds("Wed, 02 Dec 2026 07:59:00 GMT", moment) == 0  # past
    assert retry_after_seconds("999999999999", moment) == MAX_BACKOFF_SECONDS
    for useless in (None, "", "soon", "-5", "1.5"):
        assert retry_after_seconds(useless, moment) == BACKOFF_SECONDS
