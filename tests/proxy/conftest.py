"""What the mirror tests share: a real upstream (`registry serve` with token auth and a
public `library` namespace, or nginx in front of it, which can answer 429) and mirror
apps in process on one test's database and store, like replicas."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.digest import Digest
from tests.helpers import basic, push_image, sha256
from tests.peers.nginx import Nginx
from tests.peers.registry import RegistryProcess

ADMIN_PASSWORD = "upstream-admin-password"
MIRROR_ADMIN_PASSWORD = "mirror-admin-password"


class Upstream(RegistryProcess):
    def requests(self, method: str, path: str) -> int:
        """Requests answered with success (not the 401s of the token dance)."""
        return self.answered(method, path, 200)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers=basic("admin", ADMIN_PASSWORD), timeout=30
        )


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    root = tmp_path_factory.mktemp("upstream")
    server = Upstream(
        root / "data",
        {
            "REGISTRY_AUTH_ENABLED": "true",
            "REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "REGISTRY_LOG_LEVEL": "info",
        },
    )
    server.start()
    server.cli("namespace", "add", "library", "--public")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nginx(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), upstream.port).start()
    yield proxy
    proxy.stop()


MirrorFactory = Callable[..., Starlette]


@pytest.fixture
async def make_mirror(
    make_settings: Callable[..., Settings], upstream: Upstream
) -> AsyncIterator[MirrorFactory]:
    """Mirror apps; apps made by one test share its database and store, like replicas."""
    apps: list[Starlette] = []

    def make(**env: str) -> Starlette:
        settings = {
            "mirror_enabled": "true",
            "mirror_upstreams": upstream.url,
            "mirror_tag_ttl_seconds": "300",
            **env,
        }
        app = create_app(make_settings(**settings))
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.state.registry.close()


def client_of(app: Starlette, **kwargs: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://mirror.test", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def mirror(make_mirror: MirrorFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(make_mirror()) as client:
        yield client


def unique(prefix: str) -> str:
    return f"library/{prefix}-{time.monotonic_ns()}"


async def push_upstream(
    upstream: Upstream, repo: str, tag: str, layers: list[bytes]
) -> tuple[str, bytes]:
    async with upstream.client() as client:
        return await push_image(client, repo, tag, layers=layers)


def blob_digest(data: bytes) -> Digest:
    return Digest.parse(sha256(data))
