"""Faults survived by `registry serve` with two workers: the database going away and
coming back, and kill -9 of a worker or of the whole server in the middle of pushes.
Every acknowledged write must survive; failures must be clear and short."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.peers.postgres import PostgresServer
from tests.peers.registry import RegistryProcess, workers_of
from tests.peers.tools import wait_for_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = b'{"architecture": "amd64", "os": "linux"}'


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client: httpx.Client, repo: str, data: bytes, chunked: bool) -> None:
    """Push `data` monolithically or in three chunks; raises unless acknowledged."""
    digest = digest_of(data)
    if not chunked:
        r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
        r.raise_for_status()
        return
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    location = r.headers["Location"]
    cut = sorted(random.sample(range(1, len(data)), 2))
    for start, end in ((0, cut[0]), (cut[0], cut[1])):
        r = client.patch(
            location, content=data[start:end], headers={"Content-Range": f"{start}-{end - 1}"}
        )
        r.raise_for_status()
        location = r.headers["Location"]
    r = client.put(location, params={"digest": digest}, content=data[cut[1] :])
    r.raise_for_status()


def manifest_for(layer: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(CONFIG),
                "size": len(CONFIG),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()


@dataclass
class Acknowledged:
    blobs: dict[str, str] = field(default_factory=dict)  # digest -> repository
    tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, tag) -> digest
    lock: threading.Lock = field(default_factory=threading.Lock)


def pusher(url: str, name: str, stop: threading.Event, seen: Acknowledged) -> None:
    """Push images until told to stop; remember what the registry acknowledged. Errors
    (a worker killed under the request) are expected and leave nothing acknowledged."""
    rng = random.Random(name)
    repo = f"kill/{name}"
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(10_000):
            if stop.is_set():
                return
            layer = rng.randbytes(rng.choice([3_000, 300_000, 2_500_000]))
            tag = f"t{n}"
            body = manifest_for(layer)
            try:
                push_blob(client, repo, CONFIG, chunked=False)
                push_blob(client, repo, layer, chunked=rng.random() < 0.5)
                with seen.lock:
                    seen.blobs[digest_of(layer)] = repo
                r = client.put(
                    f"/v2/{repo}/manifests/{tag}",
                    content=body,
                    headers={"Content-Type": OCI_MANIFEST},
                )
                r.raise_for_status()
                with seen.lock:
                    seen.tags[(repo, tag)] = digest_of(body)
            except httpx.HTTPError:
                time.sleep(0.05)


def wait_healthy(server: RegistryProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if server.get("/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"registry not healthy after {timeout}s")


def verify(server: RegistryProcess, seen: Acknowledged) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for (repo, tag), digest in seen.tags.items():
            r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200, f"acknowledged {repo}:{tag} lost: {r.status_code}"
            assert r.headers["Docker-Content-Digest"] == digest
        for digest, repo in seen.blobs.items():
            r = client.get(f"/v2/{repo}/blobs/{digest}")
            assert r.status_code == 200, f"acknowledged blob {digest} lost: {r.status_code}"
            assert digest_of(r.content) == digest, f"blob {digest} corrupt"


@pytest.fixture(params=["sqlite", "postgresql"])
def two_workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryProcess]:
    env = {"REGISTRY_HTTP_WORKERS": "2"}
    pg = None
    if request.param == "postgresql":
        pg = PostgresServer(private=True)
        pg.execute("CREATE DATABASE registry")
        env["REGISTRY_DATABASE_URL"] = pg.url_for("registry")
    server = RegistryProcess(tmp_path / "data", env).start()
    wait_healthy(server)
    yield server
    server.stop()
    if pg is not None:
        pg.stop()


def test_kill_9_of_a_worker_or_the_server_loses_no_acknowledged_write(
    two_workers: RegistryProcess,
) -> None:
    server = two_workers
    seen = Acknowledged()
    for round_ in range(4):
        stop = threading.Event()
        threads = [
            threading.Thread(target=pusher, args=(server.url, f"r{round_}p{i}", stop, seen))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        time.sleep(random.uniform(1.0, 2.5))
        assert server.process is not None
        if round_ % 2 == 0:
            victim = random.choice(workers_of(server.process.pid))
            os.kill(victim, signal.SIGKILL)
        else:
            server.kill()
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(60)
        if server.process is None:
            server.start()
        wait_for_port(server.port)
        wait_healthy(server)
        verify(server, seen)
    # Pushes were acknowledged in every round, not only refused.
    assert len(seen.tags) >= 20, len(seen.tags)


def test_the_database_goes_away_and_comes_back(tmp_path: Path) -> None:
    """PostgreSQL stopped and started under load: 503 meanwhile, in bounded time, and
    the pools recover by themselves."""
    pg = PostgresServer(private=True)
    pg.execute("CREATE DATABASE registry")
    server = RegistryProcess(
        tmp_path / "data",
        {
            "REGISTRY_HTTP_WORKERS": "2",
            "REGISTRY_DATABASE_URL": pg.url_for("registry"),
            "REGISTRY_DATABASE_TIMEOUT_SECONDS": "3",
        },
    ).start()
    results: list[tuple[float, str, int, float]] = []
    try:
        wait_healthy(server)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            push_blob(client, "db/app", CONFIG, chunked=False)
            layer = os.urandom(5000)
            push_blob(client, "db/app", layer, chunked=True)
            r = client.put(
                "/v2/db/app/manifests/v1",
                content=manifest_for(layer),
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert r.status_code == 201

        stop = threading.Event()
        started = time.monotonic()

        def load(kind: str) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    began = time.monotonic()
                    if kind == "manifest":
                        r = client.get("/v2/db/app/manifests/v1")
                    elif kind == "blob":
                        r = client.head(f"/v2/db/app/blobs/{digest_of(layer)}")
                    elif kind == "push":
                        data = f"{kind}-{n}-{began}".encode()
                        r = client.post(
                            "/v2/db/app/blobs/uploads/",
                            params={"digest": digest_of(data)},
                            content=data,
                        )
                    else:
                        r = client.get("/ready")  # readiness: the database answers
                    ended = time.monotonic()
                    results.append((began - started, kind, r.status_code, ended - began))
                    if r.status_code >= 500 and kind != "blob":
                        assert "database" in r.json()["errors"][0]["message"], r.text
                    time.sleep(0.02)

        threads = [
            threading.Thread(target=load, args=(kind,))
            for kind in ("manifest", "blob", "push", "ready")
        ]
        for thread in threads:
            thread.start()
        time.sleep(2)
        pg.halt()
        down_at = time.monotonic() - started
        time.sleep(4)
        pg.start()
        up_at = time.monotonic() - started
        time.sleep(6)
        stop.set()
        for thread in threads:
            thread.join(60)
    finally:
        server.stop()
        pg.stop()

    statuses = {status for _, _, status, _ in results}
    assert statuses <= {200, 201, 503}, statuses
    during = [s for t, _, s, _ in results if down_at + 0.5 < t < up_at - 0.5]
    assert during and set(during) == {503}, during
    # Recovered by itself within a few seconds of the restart, on every kind of request.
    after = [(kind, s) for t, kind, s, _ in results if t > up_at + 3]
    assert after and all(s < 300 for _, s in after), after
    assert {kind for kind, _ in after} == {"manifest", "blob", "push", "ready"}
    slowest = max(duration for *_, duration in results)
    assert slowest < 10, f"a request took {slowest:.1f} s during the outage"
