"""Pushing content through the API in tests, and checking spec error bodies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from registry.app import create_app
from registry.config import Settings
from registry.mediatypes import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert [e["code"] for e in body["errors"]] == [code], body
    assert body["errors"][0]["message"]
    return body["errors"][0]


async def push_blob(client: httpx.AsyncClient, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = await client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def session_offset(status: httpx.Response) -> int:
    """Bytes an upload session holds, from its Range header ("0-0" when it holds none:
    the tests' chunks are never one byte long)."""
    last = int(status.headers["Range"].split("-")[1])
    return last + 1 if last else 0


def descriptor(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


async def push_image(
    client: httpx.AsyncClient,
    repo: str,
    reference: str,
    *,
    layers: list[bytes] | None = None,
    media_type: str = OCI_MANIFEST,
    config: bytes | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[str, bytes]:
    """Push blobs and an image manifest; returns (digest, manifest bytes)."""
    layers = [b"layer-" + reference.encode()] if layers is None else layers
    config = config if config is not None else json.dumps({"ref": reference}).encode()
    docker = media_type == DOCKER_MANIFEST
    config_type = (
        "application/vnd.docker.container.image.v1+json"
        if docker
        else "application/vnd.oci.image.config.v1+json"
    )
    layer_type = (
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        if docker
        else "application/vnd.oci.image.layer.v1.tar"
    )
    await push_blob(client, repo, config)
    for layer in layers:
        await push_blob(client, repo, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config, config_type),
        "layers": [descriptor(layer, layer_type) for layer in layers],
        **(extra or {}),
    }
    body = json.dumps(manifest, indent=2).encode()
    return await put_manifest(client, repo, reference, body, media_type), body


async def put_manifest(
    client: httpx.AsyncClient, repo: str, reference: str, body: bytes, media_type: str
) -> str:
    r = await client.put(
        f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    return sha256(body)


async def config_only_manifest(
    client: httpx.AsyncClient,
    repo: str,
    config_type: str = "application/vnd.oci.image.config.v1+json",
    **extra: Any,
) -> bytes:
    """Push a `{}` config blob; return an OCI manifest body with that config and no layers."""
    await push_blob(client, repo, b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(b"{}", config_type),
        "layers": [],
        **extra,
    }
    return json.dumps(doc).encode()


def index_of(children: list[tuple[str, bytes, dict[str, str] | None]], **extra: Any) -> bytes:
    """An OCI index over (media type, manifest bytes, platform) children."""
    manifests = []
    for media_type, body, platform in children:
        d = descriptor(body, media_type)
        if platform:
            d["platform"] = platform
        manifests.append(d)
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests, **extra}
    return json.dumps(doc).encode()


# Authentication


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_token(
    client: httpx.AsyncClient,
    *scopes: str,
    user: str | None = None,
    password: str | None = None,
    **params: str,
) -> str:
    """A token from GET /token, as docker asks for one: HTTP Basic, or anonymous."""
    headers = basic(user, password or "") if user else {}
    query: list[tuple[str, str]] = [("service", "registry"), *params.items()]
    query += [("scope", scope) for scope in scopes]
    r = await client.get("/token", params=query, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def parse_challenge(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer", header
    return dict(re.findall(r'(\w+)="([^"]*)"', rest))


class TokenAuth(httpx.Auth):
    """The client side of the Docker token spec: answer a 401 challenge by fetching a token
    for the challenged scope (with Basic credentials, if any) and retrying."""

    requires_response_body = True

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.user, self.password = user, password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        if response.status_code != 401 or "www-authenticate" not in response.headers:
            return
        challenge = parse_challenge(response.headers["www-authenticate"])
        params = {"service": challenge["service"]}
        if "scope" in challenge:
            params["scope"] = challenge["scope"]
        headers = basic(self.user, self.password or "") if self.user else {}
        answer = yield httpx.Request("GET", challenge["realm"], params=params, headers=headers)
        if answer.status_code == 200:
            request.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        yield request


def pause_after(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str
) -> tuple[asyncio.Event, asyncio.Event]:
    """Make `module.name(conn, items)` pause after it ran on some items, until released:
    a collection pass stopped at its most dangerous point. Returns (paused, release)."""
    paused, release = asyncio.Event(), asyncio.Event()
    original = getattr(module, name)

    async def pausing(conn: Any, items: Any, *args: Any, **kwargs: Any) -> Any:
        found = await original(conn, items, *args, **kwargs)
        if items:
            paused.set()
            await release.wait()
        return found

    monkeypatch.setattr(module, name, pausing)
    return paused, release


def scraped(text: str) -> dict[str, float]:
    """A Prometheus exposition as {'name{label="v",...}': value}, labels sorted."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """An app started as `registry serve` starts one (its lifespan runs: the settings'
    group roles are written, the background workers run), and a client of it."""
    application = create_app(settings)
    transport = httpx.ASGITransport(app=application)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=transport, base_url="http://registry.test") as client,
    ):
        yield application, client
