"""Fixtures: databases (SQLite and PostgreSQL, a fresh one per test, cloned from a
migrated template), apps built by create_app, and in-process HTTP clients."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings, load_settings
from registry.metadata.migrate import upgrade
from tests import openapi_check
from tests.peers.postgres import PostgresServer
from tests.peers.s3 import MIN_PART, MotoServer

_counter = itertools.count()

# Property tests explore new inputs on every run here; in CI (strict) they replay the same
# ones, so that a failure is one to look at rather than the luck of the draw.
hypothesis.settings.register_profile(
    "registry",
    max_examples=300,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
    derandomize=os.environ.get("REGISTRY_TEST_STRICT") == "1",
)
hypothesis.settings.load_profile("registry")


# The one Docker daemon with bridge networks (tests/e2e/conftest.py, stack_docker): two
# would fight over the docker0 bridge, and it builds the registry's image.
STACK_GROUP = "docker-bridges"


def _module_scoped(item: pytest.Item) -> bool:
    definitions = getattr(item, "_fixtureinfo", None)
    return definitions is not None and any(
        defs[-1].scope == "module" for defs in definitions.name2fixturedefs.values()
    )


# The groups README.md names, each run alone with `-m NAME`, by the folder a test is in.
_FOLDER_MARKERS = {"unit": "unit", "cli": "unit", "api": "api", "proxy": "api", "e2e": "e2e"}


def _markers(item: pytest.Item) -> list[pytest.MarkDecorator]:
    folder = item.nodeid.split("/")[1] if item.nodeid.startswith("tests/") else ""
    names = [_FOLDER_MARKERS[folder]] if folder in _FOLDER_MARKERS else []
    names += ["browser"] if "browser" in item.fixturenames else []
    names += ["compose"] if "stack_docker" in item.fixturenames else []
    return [getattr(pytest.mark, name) for name in names]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put each item in its pytest-xdist group (with --dist loadgroup, a group runs on
    one worker), before xdist reads the marks: the bridge daemon's tests together; a
    module whose tests set up a module-scoped server (an upstream registry, nginx, a
    browser) together, so that it starts once, not on every worker; any other test
    wherever there is room. Then the groups first, the longest (the bridge daemon's:
    images built, stacks started) at the head: a long group taken late finishes alone.
    Every worker sorts the same collection the same way, as xdist requires."""
    shared = {item.nodeid.split("::", 1)[0] for item in items if _module_scoped(item)}
    groups: dict[int, str | None] = {}
    for item in items:
        for marker in _markers(item):
            item.add_marker(marker)
        module = item.nodeid.split("::", 1)[0]
        group = STACK_GROUP if "stack_docker" in item.fixturenames else None
        groups[id(item)] = group or (module if module in shared else None)
        if groups[id(item)] is not None:
            item.add_marker(pytest.mark.xdist_group(groups[id(item)]))

    def rank(item: pytest.Item) -> int:
        group = groups[id(item)]
        return 0 if group == STACK_GROUP else 1 if group is not None else 2

    items.sort(key=rank)


def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker, fail rather than run grouped tests apart: xdist marks an item's
    group by appending it to the node id, which some pytest releases ignore."""
    if not session.config.getoption("loadgroup", False):
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"pytest-xdist did not group {item.nodeid}: this pytest and pytest-xdist "
                "do not work together (pyproject.toml's pin says which pytest does)"
            )


@pytest.fixture(autouse=True, scope="session")
def answers_fit_the_openapi_document() -> Iterator[None]:
    """Every /api/v1/ answer any test gets is checked against the OpenAPI document."""
    async_send, send = httpx.AsyncClient.send, httpx.Client.send

    async def checked_async(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
        response = await async_send(self, request, **kw)
        if not kw.get("stream"):
            openapi_check.check(response)
        return response

    def checked(self: httpx.Client, request: httpx.Request, **kw: Any) -> Any:
        response = send(self, request, **kw)
        if not kw.get("stream"):
            openapi_check.check(response)
        return response

    httpx.AsyncClient.send, httpx.Client.send = checked_async, checked  # type: ignore[method-assign]
    yield
    httpx.AsyncClient.send, httpx.Client.send = async_send, send  # type: ignore[method-assign]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    template = f"registry_template_{os.getpid()}"
    server.execute(f"DROP DATABASE IF EXISTS {template}")
    server.execute(f"CREATE DATABASE {template}")
    upgrade(_async_url(server.url_for(template)))
    server.template = template  # type: ignore[attr-defined]
    yield server
    server.execute(f"DROP DATABASE IF EXISTS {template}")
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "registry.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def _async_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for one test, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "registry.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"registry_test_{os.getpid()}_{next(_counter)}"
    server.execute(f"CREATE DATABASE {name} TEMPLATE {server.template}")  # type: ignore[attr-defined]
    yield server.url_for(name)
    server.drop_database(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


def s3_environment(server: MotoServer, bucket: str) -> dict[str, str]:
    """Settings for the S3 store on a bucket of the test server."""
    return {
        "REGISTRY_STORAGE_DRIVER": "s3",
        "REGISTRY_STORAGE_S3_BUCKET": bucket,
        "REGISTRY_STORAGE_S3_ENDPOINT_URL": server.url,
        "REGISTRY_STORAGE_S3_ACCESS_KEY": "test",
        "REGISTRY_STORAGE_S3_SECRET_KEY": "test",
        "REGISTRY_STORAGE_S3_ADDRESSING_STYLE": "path",
        "REGISTRY_STORAGE_S3_PART_SIZE": str(MIN_PART),
        # In-process clients cannot follow a redirect out to S3; test_blobs_s3.py does.
        "REGISTRY_STORAGE_S3_REDIRECT": "false",
    }


@pytest.fixture(params=["filesystem", "s3"])
def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for a fresh, empty blob store, of each kind."""
    if request.param == "filesystem":
        return {}
    server: MotoServer = request.getfixturevalue("s3_server")
    return s3_environment(server, server.new_bucket())


@pytest.fixture
def make_settings(
    tmp_path: Path, database_url: str, storage_env: dict[str, str]
) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        environ = {
            "REGISTRY_DATA_DIR": str(tmp_path / "data"),
            "REGISTRY_DATABASE_URL": database_url,
            **storage_env,
            # The core API tests run on an open registry; tests/api/test_auth*.py turn it on.
            "REGISTRY_AUTH_ENABLED": "false",
            **{f"REGISTRY_{k.upper()}": v for k, v in env.items()},
        }
        return load_settings(None, environ)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings)
    yield application
    await application.state.registry.close()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry.test") as c:
        yield c
